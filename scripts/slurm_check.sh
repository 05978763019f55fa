#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine running deploy/slurm/sweep-worker.sbatch
# (docs/DEPLOY.md, "Slurm"). Not run by CI: it needs root, starts munged, slurmctld and slurmd
# (Debian 12's slurm-wlm 22.05, installed if missing), and takes a few minutes.
#
#   scripts/slurm_check.sh [WORK_DIR]
#
# What it checks, with the real sweepd, sweep-worker and sweepctl on loopback:
#   1. two worker jobs submitted with sbatch run the tiny model's layer study to the end;
#   2. scancel --batch --signal=TERM (what --signal=B:TERM@120 and preemption send) makes the
#      batch shell forward SIGTERM, the worker drains and the job ends with exit code 0:0;
#   3. scontrol requeue puts a running worker job back in the queue; it runs again, rejoins,
#      and the synthetic sweep finishes with every task exactly once.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$root/out/slurm}
build=${SWEEPD_BUILD_DIR:-$root/build}
sweepd_bin=$build/coordinator/sweepd
worker_bin=$build/worker/sweep-worker
ctl_bin=$build/client/sweepctl
[[ $(id -u) -eq 0 ]] || { echo "slurm_check.sh: needs root (it starts munged, slurmctld, slurmd)"; exit 2; }
for b in "$sweepd_bin" "$worker_bin" "$ctl_bin"; do
  [[ -x "$b" ]] || { echo "slurm_check.sh: $b is missing; run scripts/build.sh first"; exit 2; }
done
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  apt-get install -y --no-install-recommends slurm-wlm munge >/dev/null
fi

rm -rf "$work"
mkdir -p "$work"/{state,spool,log,models}
host=$(hostname -s)
conf=$work/slurm.conf
cat >"$conf" <<EOF
ClusterName=sweepd-check
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
SlurmctldPort=16817
SlurmdPort=16818
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
NodeName=$host CPUs=$(nproc) RealMemory=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 2048)) State=UNKNOWN
PartitionName=check Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
export SLURM_CONF=$conf

pids=()
cleanup() {
  scancel --quiet --full "--name=sweep-worker" 2>/dev/null || true
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for f in slurmd slurmctld; do
    [[ -s "$work/$f.pid" ]] && kill -TERM "$(cat "$work/$f.pid")" 2>/dev/null || true
  done
}
trap '[[ $BASHPID == "$$" ]] && cleanup' EXIT  # not in $(...) subshells

if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then  # no live munged
  mkdir -p /run/munge /etc/munge
  [[ -f /etc/munge/munge.key ]] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
  chown -R munge:munge /etc/munge /run/munge
  chmod 400 /etc/munge/munge.key
  rm -f /run/munge/munge.socket.2*
  munged --force
fi
slurmctld -f "$conf"
slurmd -f "$conf"
for _ in $(seq 100); do sinfo -h -o %T 2>/dev/null | grep -q idle && break; sleep 0.2; done
sinfo

model=$work/models/gemma4-tiny
"$worker_bin" make-model --config "$root/configs/models/gemma4-tiny.json" --seed 1 --out "$model" >/dev/null
"$sweepd_bin" --listen 127.0.0.1:0 --port-file "$work/port" --ledger "$work/ledger.db" \
  --model-root "$work/models" --data-root "$root/configs/data" >"$work/sweepd.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [[ -s "$work/port" ]] && break; sleep 0.1; done
export SWEEPD_COORDINATOR=127.0.0.1:$(cat "$work/port")

# sbatch_worker NAME: one worker job on the CPU (no GPUs on this node), TP 1.
sbatch_worker() {
  sbatch --parsable --gpus-per-node=0 --cpus-per-task=1 --time=30 --chdir="$work" \
    --output="$work/$1-%j.log" \
    --export=ALL,SWEEPD_MODEL="$model",SWEEPD_DEVICE=cpu,SWEEPD_TP=1,SWEEPD_DRAIN_GRACE_S=5,SWEEPD_WORKER_BIN="$worker_bin",SWEEPD_WORKER_ARGS="--threads 1 --heartbeat-ms 500" \
    "$root/deploy/slurm/sweep-worker.sbatch"
}
job_state() { scontrol show job "$1" | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }
job_exit() { scontrol show job "$1" | grep -o ' ExitCode=[0-9:]*' | cut -d= -f2; }
wait_state() {  # JOB STATE SECONDS
  for _ in $(seq $(($3 * 5))); do [[ $(job_state "$1") == "$2" ]] && return 0; sleep 0.2; done
  echo "job $1 did not reach $2 (state $(job_state "$1"))"; return 1
}

echo "== 1. layer study on two sbatch workers"
sweep=$("$ctl_bin" submit "$root/configs/sweeps/layer_study.yaml" | grep -o 'sw-[0-9a-f]\{16\}' | head -n 1)
j1=$(sbatch_worker study)
j2=$(sbatch_worker study)
squeue
"$ctl_bin" watch "$sweep" >"$work/watch-study.txt"
tail -n 2 "$work/watch-study.txt"
"$ctl_bin" status "$sweep" | tee "$work/status-study.txt" | grep -q "state: *done" ||
  { echo "FAIL: the layer study did not finish DONE"; exit 1; }
"$ctl_bin" workers

echo "== 2. scancel --batch --signal=TERM drains the worker"
for j in "$j1" "$j2"; do scancel --batch --signal=TERM "$j"; done
for j in "$j1" "$j2"; do
  wait_state "$j" COMPLETED 60
  echo "job $j: $(job_state "$j") exit $(job_exit "$j")"
  [[ $(job_exit "$j") == "0:0" ]] || { echo "FAIL: job $j exit $(job_exit "$j")"; exit 1; }
  grep -h "sweep-worker exited with status 0" "$work"/study-"$j".log
done

echo "== 3. scontrol requeue during a synthetic sweep"
# 400 tasks of 100-200 ms on one worker: long enough to requeue it mid-sweep.
cat >"$work/synth.yaml" <<EOF
name: slurm-requeue
synthetic:
  tasks: 400
  min_ms: 100
  max_ms: 200
  failure_rate: 0.0
policy:
  max_attempts: 3
  lease_seconds: 10
EOF
sweep2=$("$ctl_bin" submit "$work/synth.yaml" | grep -o 'sw-[0-9a-f]\{16\}' | head -n 1)
j3=$(sbatch_worker synth)
wait_state "$j3" RUNNING 60
done_tasks() { "$ctl_bin" status "$sweep2" | sed -n 's/^tasks: *[0-9]* total, \([0-9]*\) done.*/\1/p'; }
for _ in $(seq 300); do [[ $(done_tasks) -ge 20 ]] && break; sleep 0.2; done
echo "requeue at $(done_tasks) tasks done"
scontrol requeue "$j3"
echo "job $j3 requeued: $(job_state "$j3")"
# A requeued job is held back (BeginTime = now + 120 s by default): start it now.
wait_state "$j3" PENDING 60
scontrol update "JobId=$j3" StartTime=now
wait_state "$j3" RUNNING 120
echo "job $j3 running again ($(scontrol show job "$j3" | grep -o 'Restarts=[0-9]*'))"
"$ctl_bin" watch "$sweep2" >"$work/watch-synth.txt"
tail -n 2 "$work/watch-synth.txt"
"$ctl_bin" status "$sweep2" | tee "$work/status-synth.txt" | grep -q "state: *done" ||
  { echo "FAIL: the synthetic sweep did not finish DONE"; exit 1; }
grep '^tasks:' "$work/status-synth.txt"
grep -q '^tasks: *400 total, 400 done' "$work/status-synth.txt" ||
  { echo "FAIL: not every task done"; exit 1; }
"$ctl_bin" results "$sweep2" --format csv >"$work/synth.csv"
rows=$(tail -n +2 "$work/synth.csv" | cut -d, -f2 | sort -u | wc -l)
echo "distinct tasks in the results: $rows"
[[ $rows -eq 400 ]] || { echo "FAIL: $rows distinct tasks in the results, want 400"; exit 1; }
scancel --batch --signal=TERM "$j3"
wait_state "$j3" COMPLETED 60
echo "job $j3: exit $(job_exit "$j3")"
echo "slurm_check: OK"
