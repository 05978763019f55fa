#!/usr/bin/env bash
# Prints, one a line, the Debian packages that hold the shared libraries the given ELF
# binaries link directly (their NEEDED entries, resolved by ldd, owners found by dpkg -S).
# apt pulls in the rest through the packages' Depends. The single source of the runtime
# package list: scripts/build_image.sh and deploy/container/Containerfile.cpu both call it.
#   scripts/runtime_packages.sh build/coordinator/sweepd build/worker/sweep-worker ...
# Needs readelf (binutils) and dpkg; run on the Debian machine that built the binaries.
set -euo pipefail
(($# > 0)) || { echo "usage: $0 BINARY..." >&2; exit 2; }

declare -A lib_of  # resolved library path -> "BINARY needs LIB", for messages
status=0
for bin in "$@"; do
  [[ -f "$bin" ]] || { echo "runtime_packages: no such binary: $bin" >&2; exit 1; }
  needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  resolved=$(ldd "$bin")
  for lib in $needed; do
    path=$(awk -v lib="$lib" '$1 == lib && $2 == "=>" {print $3; exit} $1 ~ "/" lib "$" {print $1; exit}' \
      <<<"$resolved")
    if [[ -z "$path" || "$path" == "not" ]]; then
      echo "runtime_packages: $bin needs $lib, which ldd does not find" >&2
      status=1
      continue
    fi
    lib_of[$path]="$bin needs $lib"
  done
done

# dpkg records a library under the path its package ships it at; with merged /usr, ldd may
# report it under /lib or /usr/lib, either side of a symlink: try each spelling, in this order.
spellings() {
  local path=$1 real
  real=$(realpath "$path")
  printf '%s\n' "$path" "$real" "/usr${path}" "${path#/usr}" "/usr${real}" "${real#/usr}"
}
declare -A owner_of  # path as dpkg records it -> package
mapfile -t all < <(for path in "${!lib_of[@]}"; do spellings "$path"; done | sort -u)
# One dpkg-query for every spelling (each call reads the whole file database); it exits 1 when
# some spelling is unknown, which most are. Lines: "pkg[:arch][, pkg2...]: /path".
while IFS= read -r line; do
  [[ $line == "diversion by"* || $line != *": /"* ]] && continue
  pkg=${line%%: /*}
  pkg=${pkg%%,*}
  owner_of[${line#*: }]=${pkg%%:*}
done < <(if ((${#all[@]})); then dpkg-query -S "${all[@]}" 2>/dev/null || true; fi)

packages=()
for path in "${!lib_of[@]}"; do
  pkg=
  while IFS= read -r candidate; do
    if [[ -n "${owner_of[$candidate]:-}" ]]; then pkg=${owner_of[$candidate]}; break; fi
  done < <(spellings "$path")
  if [[ -z "$pkg" ]]; then
    echo "runtime_packages: no Debian package owns $path (${lib_of[$path]})" >&2
    status=1
    continue
  fi
  packages+=("$pkg")
done
((status == 0)) || exit "$status"
printf '%s\n' "${packages[@]}" | sort -u
