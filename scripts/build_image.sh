#!/usr/bin/env bash
# Builds the CPU container image of sweepd offline, from Debian 12's packages only, and runs
# the demo (scripts/demo.sh) inside it. Steps: build sweepd, sweep-worker and sweepctl
# (scripts/build.sh, Release); list the Debian packages their shared libraries come from
# (scripts/runtime_packages.sh, the list deploy/container/Containerfile.cpu installs too);
# make a Debian 12 root filesystem of just those with mmdebstrap; add the binaries, the demo
# script and configs/; import it into podman as an OCI image and save it as an OCI archive;
# run the demo in a container (as nobody, loopback-only network). docs/DEPLOY.md says what
# it takes on these machines and how long. Not part of CI (it takes minutes and ~2 GB).
#   scripts/build_image.sh [--image cpu|coordinator] [--build-dir DIR [--no-build]]
#                          [--out DIR] [--tag NAME] [--runner auto|podman|chroot] [--no-run]
# --image coordinator: sweepd and sweepctl only, for the coordinator's box (neither links
# libtorch, so the image is a fraction of the cpu one); the run starts sweepd in it and
# queries it with sweepctl instead of the demo. Default cpu (all three binaries + the demo).
# --build-dir reuses a configured build directory (any build type; the binaries are
# stripped into the image), default build-image/ (configured Release on first use).
# --no-build takes the binaries in --build-dir as they are and builds nothing there (e.g.
# another checkout's build, used read-only: --build-dir /work/main/build --no-build).
# --runner chroot runs the demo in the same root filesystem with unshare + chroot instead
# of podman; auto (default) falls back to it, saying why, if podman cannot start it.
# Needs root (mmdebstrap's root mode, rootful podman).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${SWEEPD_BUILD_DIR:-$root/build-image}
image=cpu
out=
tag=
runner=auto
run_demo=1
do_build=1
while (($#)); do
  case $1 in
    --image) image=$2; shift 2 ;;
    --build-dir) build=$(realpath "$2"); shift 2 ;;
    --out) out=$(realpath -m "$2"); shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --runner) runner=$2; shift 2 ;;
    --no-run) run_demo=0; shift ;;
    --no-build) do_build=0; shift ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done
case $image in
  cpu) bins=("$build/coordinator/sweepd" "$build/worker/sweep-worker" "$build/client/sweepctl") ;;
  coordinator) bins=("$build/coordinator/sweepd" "$build/client/sweepctl") ;;
  *) echo "build_image: --image cpu|coordinator, not '$image'" >&2; exit 2 ;;
esac
out=${out:-$root/out/image/$image}
tag=${tag:-localhost/sweepd:$image}
archive=$out/sweepd-$image.oci.tar
case $runner in auto | podman | chroot) ;; *) echo "build_image: --runner auto|podman|chroot, not '$runner'" >&2; exit 2 ;; esac
[[ $(id -u) -eq 0 ]] || { echo "build_image: run as root (mmdebstrap root mode, rootful podman)" >&2; exit 1; }

start=$SECONDS
step_start=$SECONDS
step() {
  printf '== [%4ds, previous step %ds] %s\n' $((SECONDS - start)) $((SECONDS - step_start)) "$*"
  step_start=$SECONDS
}

step "host tools: mmdebstrap, podman, runc, binutils (Debian packages)"
tools=(mmdebstrap podman runc binutils)
missing=()
for p in "${tools[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

names=$(for b in "${bins[@]}"; do basename "$b"; done | paste -sd' ')
if ((do_build)); then
  step "binaries: $names in $build"
  "$root/scripts/install_deps.sh"
  # Extra cmake arguments apply on the first configure only (an existing dir keeps its type).
  SWEEPD_BUILD_DIR=$build SWEEPD_TARGETS="$names" \
    nice -n 10 "$root/scripts/build.sh" -DCMAKE_BUILD_TYPE=Release -DSWEEPD_BUILD_TESTS=OFF
else
  step "binaries: $names from $build as they are (--no-build)"
  for b in "${bins[@]}"; do
    [[ -x "$b" ]] || { echo "build_image: --no-build: no binary $b" >&2; exit 1; }
  done
fi

step "runtime packages (scripts/runtime_packages.sh)"
mkdir -p "$out"
"$root/scripts/runtime_packages.sh" "${bins[@]}" >"$out/runtime-packages.txt"
echo "   $(tr '\n' ' ' <"$out/runtime-packages.txt")"

step "Debian 12 root filesystem (mmdebstrap --variant=essential + those packages)"
rootfs=$out/rootfs
rm -rf "$rootfs"
# essential: dpkg, bash, coreutils, grep, sed (what demo.sh uses) and no apt; the packages
# are installed from outside. Documentation, manuals and translations are left out.
# The merged-usr hook (mmdebstrap(1), "MERGED-/USR") makes the /usr symlinks itself and
# installs usr-is-merged, so init-system-helpers does not pull in usrmerge and perl (~55 MB).
nice -n 10 mmdebstrap --variant=essential --quiet \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --include="$(paste -sd, "$out/runtime-packages.txt")" \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  bookworm "$rootfs"
install -d "$rootfs/usr/local/bin"
for b in "${bins[@]}"; do install -m 0755 -s "$b" "$rootfs/usr/local/bin/"; done
if [[ $image == cpu ]]; then
  install -d "$rootfs/opt/sweepd/scripts"
  install -m 0755 "$root/scripts/demo.sh" "$rootfs/opt/sweepd/scripts/"
  cp -r "$root/configs" "$rootfs/opt/sweepd/"
fi

step "OCI image $tag (podman import) and OCI archive"
# podman import gives one layer from the tree; the archive is what `podman load` or
# `skopeo copy oci-archive:...` takes elsewhere (no registry is reachable from here).
podman rmi --force "$tag" >/dev/null 2>&1 || true  # no dangling copy of the last build
tar -C "$rootfs" --numeric-owner -cf - . |
  podman import --change 'ENTRYPOINT ["/usr/local/bin/sweepd"]' --change 'USER 65534' \
    --change 'WORKDIR /' --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' - "$tag" >/dev/null
rm -f "$archive"
podman save --format oci-archive -o "$archive" "$tag"
image_mb=$(($(podman image inspect --format '{{.Size}}' "$tag") / 1048576))
echo "   image $tag: ${image_mb} MiB (podman image inspect), archive $archive:" \
  "$(du -m "$archive" | cut -f1) MiB, root filesystem: $(du -sm "$rootfs" | cut -f1) MiB"

if ((!run_demo)); then
  step "done (--no-run)"
  exit 0
fi

demo=$out/demo
rm -rf "$demo"
install -d -o 65534 -g 65534 "$demo"
# nobody's HOME is /nonexistent: the model fingerprint cache goes under the demo directory.
demo_env=(SWEEPD_BIN_DIR=/usr/local/bin SWEEPD_DEMO_DIR=/demo XDG_CACHE_HOME=/demo/.cache)
if [[ $image == cpu ]]; then
  demo_cmd=(/opt/sweepd/scripts/demo.sh)
  what="demo"
else
  # sweepd on loopback with its ledger in /demo, then sweepctl asks it for sweeps and workers.
  # shellcheck disable=SC2016  # expanded by the shell in the container
  demo_cmd=(/bin/bash -c 'set -euo pipefail
    sweepd --listen 127.0.0.1:0 --port-file /demo/port --ledger /demo/ledger.db \
      >/demo/sweepd.log 2>&1 &
    pid=$!
    for _ in $(seq 100); do [[ -s /demo/port ]] && break; sleep 0.1; done
    export SWEEPD_COORDINATOR=127.0.0.1:$(cat /demo/port)
    echo "sweepd at $SWEEPD_COORDINATOR"
    sweepctl status
    sweepctl workers
    kill -TERM "$pid"
    wait "$pid"')
  what="coordinator check (sweepd + sweepctl status/workers)"
fi

run_podman() {
  # On these machines (Firecracker VM, cgroup v1 controllers beside a cgroup2 mount, rootful):
  # crun refuses "cgroups in hybrid mode", runc takes it; the hard RLIMIT_NOFILE cannot be
  # raised, so podman's default (1048576) is refused: ask for the host's; runc refuses an
  # RLIMIT_NPROC above 32768 (the VM's pid_max) here. --network=none: loopback only (what the demo uses;
  # bridge networking would need iptables).
  local nofile nproc
  nofile=$(ulimit -Hn)
  nproc=$(ulimit -Hu)
  [[ $nofile == unlimited ]] && nofile=1048576
  [[ $nproc == unlimited || $nproc -gt 32768 ]] && nproc=32768
  podman --cgroup-manager=cgroupfs run --rm --runtime runc --network=none \
    --ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc" \
    --user 65534:65534 -v "$demo:/demo" "${demo_env[@]/#/--env=}" \
    --entrypoint "${demo_cmd[0]}" "$tag" "${demo_cmd[@]:1}"
}

run_chroot() {
  # The same root filesystem, in new mount/pid/net/uts/ipc namespaces with only loopback.
  install -d -o 65534 -g 65534 "$rootfs/demo"
  # shellcheck disable=SC2016  # expanded by the inner shell
  unshare --mount --pid --net --uts --ipc --fork --mount-proc="$rootfs/proc" bash -c '
    set -e
    rootfs=$1 demo=$2
    shift 2
    ip link set lo up
    mount --rbind /dev "$rootfs/dev"
    mount --bind "$demo" "$rootfs/demo"
    exec chroot --userspec=65534:65534 "$rootfs" env PATH=/usr/local/bin:/usr/bin:/bin "$@"
  ' chroot-demo "$rootfs" "$demo" "${demo_env[@]}" "${demo_cmd[@]}"
}

if [[ $runner == chroot ]]; then
  step "$what in the root filesystem (unshare + chroot)"
  run_chroot
else
  step "$what in a container (podman run $tag)"
  rc=0
  run_podman 2> >(tee "$out/podman-run.err" >&2) || rc=$?
  # 125-127: podman or the OCI runtime failed; anything else is the command's own status.
  if ((rc != 0)); then
    if [[ $runner == podman ]] || ((rc < 125 || rc > 127)); then exit "$rc"; fi
    echo "build_image: podman could not run the $what: $(tail -n 1 "$out/podman-run.err")" >&2
    step "$what in the root filesystem instead (unshare + chroot)"
    rm -rf "$demo" && install -d -o 65534 -g 65534 "$demo"
    run_chroot
  fi
fi
step "done: $what ran; its files in $demo; image $tag (${image_mb} MiB)"
