#!/usr/bin/env bash
# Disk full on a real filesystem (docs/DURABILITY.md, "Disk full and I/O errors"). Not run by
# CI: it needs root to mount a small tmpfs. The unit test (tests/coordinator/disk_full_test.cc)
# injects SQLITE_FULL through a VFS shim; this script fills a real filesystem instead.
#
#   scripts/disk_full_check.sh [WORK_DIR] [--size-mb N] [--tasks N]
#
# With the real sweepd, two sweep-workers and sweepctl on loopback, the ledger on a tmpfs of
# --size-mb (default 48):
#   1. a synthetic sweep runs; once tasks are done, a filler file takes every free byte;
#   2. while the disk is full: sweepd stays up and serves reads (status), a submit gets
#      UNAVAILABLE saying the disk is full, no task completes (no lease is granted, no result
#      is acknowledged), and the workers log the same UNAVAILABLE;
#   3. the filler is removed: sweepd commits again by itself (same process), the sweep ends
#      with every task done exactly once, nothing acknowledged before the fill is lost, and
#      PRAGMA integrity_check is ok.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$root/out/disk_full
size_mb=48 tasks=3000
while (($#)); do
  case "$1" in
    --size-mb) size_mb=$2; shift 2 ;;
    --tasks) tasks=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) echo "disk_full_check.sh: unknown flag $1 (see --help)" >&2; exit 2 ;;
    *) work=$1; shift ;;
  esac
done
build=${SWEEPD_BUILD_DIR:-$root/build}
sweepd_bin=$build/coordinator/sweepd
worker_bin=$build/worker/sweep-worker
ctl_bin=$build/client/sweepctl
[[ $(id -u) -eq 0 ]] || { echo "disk_full_check.sh: needs root (it mounts a tmpfs)"; exit 2; }
for b in "$sweepd_bin" "$worker_bin" "$ctl_bin"; do
  [[ -x "$b" ]] || { echo "disk_full_check.sh: $b is missing; run scripts/build.sh first"; exit 2; }
done
command -v sqlite3 >/dev/null || apt-get install -y --no-install-recommends sqlite3 >/dev/null

disk=$work/disk
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  mountpoint -q "$disk" && umount "$disk" || true
}
trap '[[ $BASHPID == "$$" ]] && cleanup' EXIT
mountpoint -q "$disk" 2>/dev/null && umount "$disk"
rm -rf "$work"
mkdir -p "$disk"
mount -t tmpfs -o "size=${size_mb}m" tmpfs "$disk"
echo "ledger filesystem: $(df -h "$disk" | tail -n 1)"

"$sweepd_bin" --listen 127.0.0.1:0 --port-file "$work/port" --ledger "$disk/ledger.db" \
  >"$work/sweepd.log" 2>&1 &
sweepd_pid=$!
pids+=("$sweepd_pid")
for _ in $(seq 100); do [[ -s "$work/port" ]] && break; sleep 0.1; done
export SWEEPD_COORDINATOR=127.0.0.1:$(cat "$work/port")
for i in 1 2; do
  "$worker_bin" run --name "w$i" --max-tasks 4 >"$work/worker$i.log" 2>&1 &
  pids+=($!)
done

cat >"$work/synth.yaml" <<EOF
name: disk-full
synthetic:
  tasks: $tasks
  min_ms: 5
  max_ms: 15
policy:
  lease_seconds: 10
EOF
sweep=$("$ctl_bin" submit "$work/synth.yaml" | grep -o 'sw-[0-9a-f]\{16\}' | head -n 1)
done_tasks() { "$ctl_bin" status "$sweep" | sed -n 's/^tasks: *[0-9]* total, \([0-9]*\) done.*/\1/p'; }
for _ in $(seq 300); do [[ $(done_tasks) -ge $((tasks / 4)) ]] && break; sleep 0.1; done

echo "== 1. fill the disk at $(done_tasks) tasks done"
fallocate -l "$(($(stat -f -c '%a*%S' "$disk")))" "$disk/filler" 2>/dev/null || true
# fallocate may leave a few blocks; dd takes the rest.
dd if=/dev/zero of="$disk/filler2" bs=4k 2>/dev/null || true
echo "free after the fill: $(df -B1 --output=avail "$disk" | tail -n 1) bytes"
# Wait until a commit has failed: the ledger is then not writable.
for _ in $(seq 100); do grep -q "disk full" "$work/sweepd.log" && break; sleep 0.1; done
grep -m 1 "disk full" "$work/sweepd.log" || { echo "FAIL: sweepd never saw the disk full"; exit 1; }

echo "== 2. while the disk is full"
sleep 2  # in-flight tasks settle; their results cannot commit
acked=$(done_tasks)
echo "status still served: $acked tasks done"
sleep 3
again=$(done_tasks)
[[ $again == "$acked" ]] || { echo "FAIL: $acked then $again tasks done while the disk is full"; exit 1; }
echo "no task completed in 3 s of full disk (still $again)"
set +e
sed 's/^name: disk-full/name: disk-full-2/' "$work/synth.yaml" >"$work/synth2.yaml"
submit_out=$("$ctl_bin" submit "$work/synth2.yaml" 2>&1)
submit_rc=$?
set -e
echo "submit: exit $submit_rc: $submit_out" | head -n 2
[[ $submit_rc -ne 0 ]] && grep -q "UNAVAILABLE" <<<"$submit_out" && grep -q "disk full" <<<"$submit_out" ||
  { echo "FAIL: submit on a full disk did not get UNAVAILABLE ... disk full"; exit 1; }
grep -h -m 1 "disk full" "$work"/worker*.log ||
  { echo "FAIL: no worker was told the disk is full"; exit 1; }
kill -0 "$sweepd_pid" || { echo "FAIL: sweepd exited on the full disk"; exit 1; }

echo "== 3. space returns"
# A commit can succeed in the space a rolled-back one freed, so count the recoveries logged
# so far and wait for one more.
recoveries() { grep -c "commits again" "$work/sweepd.log" || true; }
before=$(recoveries)
rm -f "$disk/filler" "$disk/filler2"
for _ in $(seq 100); do (($(recoveries) > before)) && break; sleep 0.1; done
(($(recoveries) > before)) || { echo "FAIL: sweepd did not commit again"; exit 1; }
grep "commits again" "$work/sweepd.log" | tail -n 1
"$ctl_bin" watch "$sweep" >"$work/watch.txt"
kill -0 "$sweepd_pid" || { echo "FAIL: sweepd restarted or exited"; exit 1; }
"$ctl_bin" status "$sweep" | tee "$work/status.txt" | grep '^tasks:'
grep -q "^tasks: *$tasks total, $tasks done" "$work/status.txt" ||
  { echo "FAIL: not every task done"; exit 1; }
"$ctl_bin" results "$sweep" --format csv >"$work/results.csv"
distinct=$(tail -n +2 "$work/results.csv" | cut -d, -f2 | sort -u | wc -l)
echo "distinct tasks in the results: $distinct (acknowledged before the fill: $acked)"
[[ $distinct -eq $tasks ]] || { echo "FAIL: $distinct distinct tasks, want $tasks"; exit 1; }
integrity=$(sqlite3 "file:$disk/ledger.db?mode=ro" "PRAGMA integrity_check;")
echo "integrity_check: $integrity"
[[ $integrity == ok ]] || { echo "FAIL: integrity_check"; exit 1; }
echo "disk_full_check: OK (sweepd pid $sweepd_pid served throughout)"
