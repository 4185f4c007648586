#!/usr/bin/env bash
# The slurm ctest: a real munged, slurmctld and two slurmd "nodes" on localhost, in a temp dir.
#   run_slurm_test.sh STRATA_BINARY REPO_ROOT
# Submits the repository's slurm/multi-node.sbatch (srun) and slurm/multi-node-mpirun.sbatch for a
# 2-rank pipeline on the reference model tests/data/opt-pub-tiny and checks that each output equals
# a single-rank `strata generate` of the same input; a job whose ranks fail must end FAILED, and
# asking for more nodes than exist must be refused at once. Installs nothing:
# exits 77 (skipped) when launch/install-deps.sh has not installed Slurm and munge.
set -euo pipefail

bin=$(realpath "$1")
repo=$(realpath "$2")
for tool in munged slurmctld slurmd sbatch squeue sacct scontrol; do
  if ! command -v "$tool" >/dev/null && [ ! -x "/usr/sbin/$tool" ]; then
    echo "slurm test: SKIP: $tool not installed (launch/install-deps.sh installs slurm-wlm, munge)"
    exit 77
  fi
done
[ "$(id -u)" = 0 ] || { echo "slurm test: SKIP: slurmd must run as root"; exit 77; }
[ -r /etc/munge/munge.key ] || { echo "slurm test: SKIP: no /etc/munge/munge.key"; exit 77; }
PATH=$PATH:/usr/sbin

dir=$(mktemp -d /tmp/strata-slurm.XXXXXX)
chmod 755 "$dir"  # munged (user munge) must reach its socket dir
pids=()
cleanup() {
  # Only the daemons this script started, by pid; then their files.
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${keep:-0}" = 1 ]; then echo "slurm test: left $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT
fail() {
  echo "slurm test: FAIL: $*"
  for f in "$dir"/*.log "$dir"/work/*.out; do [ -f "$f" ] && { echo "== $f"; tail -20 "$f"; }; done
  exit 1
}

# Free ports for slurmctld and the two slurmd (the defaults may be taken by a real Slurm).
read -r p_ctld p_n1 p_n2 < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')

# munged on its own socket, so a system munged (if any) is left alone.
install -d -o munge -g munge -m 0755 "$dir/munge"
# setpriv execs munged itself, so $! is munged's pid (runuser would stay in between).
setpriv --reuid=munge --regid=munge --init-groups munged --foreground --socket="$dir/munge/socket" \
  --pid-file="$dir/munge/pid" --seed-file="$dir/munge/seed" 2>>"$dir/munged.log" &
pids+=($!)

mkdir -p "$dir/state" "$dir/work"
for n in n1 n2; do mkdir -p "$dir/spool/$n" "$dir/tmp/$n"; done
cat >"$dir/slurm.conf" <<EOF
ClusterName=stratatest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$p_ctld
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
TmpFS=$dir/tmp/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd-%n.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=pmix
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
EnforcePartLimits=ALL
ReturnToService=2
SchedulerParameters=sched_interval=1
MessageTimeout=10
NodeName=n1 NodeAddr=127.0.0.1 Port=$p_n1 CPUs=$(nproc) State=UNKNOWN
NodeName=n2 NodeAddr=127.0.0.1 Port=$p_n2 CPUs=$(nproc) State=UNKNOWN
PartitionName=test Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$dir/slurm.conf

for _ in $(seq 50); do [ -S "$dir/munge/socket" ] && break; sleep 0.1; done
[ -S "$dir/munge/socket" ] || fail "munged did not start"
slurmctld -D -c -i >>"$dir/slurmctld.log" 2>&1 &
pids+=($!)
for n in n1 n2; do
  slurmd -D -N "$n" >>"$dir/slurmd-$n.log" 2>&1 &
  pids+=($!)
done
# Both nodes idle before submitting, so the job's wait is the job and not node registration.
for _ in $(seq 100); do
  idle=$(sinfo -h -N -t idle -o %N 2>/dev/null | sort -u | wc -l)
  [ "$idle" = 2 ] && break
  sleep 0.2
done
[ "$idle" = 2 ] || fail "the two nodes did not come up idle: $(sinfo -N 2>&1)"

# Requests: prompt ids valid for the tiny model's 400-token vocabulary, of unequal lengths.
work=$dir/work
cat >"$work/in.jsonl" <<'EOF'
{"id": "p0", "input_ids": [270, 12, 55]}
{"id": "p1", "input_ids": [9, 300, 41, 7, 100, 18]}
{"id": "p2", "input_ids": [2, 17]}
EOF
model=$repo/tests/data/opt-pub-tiny
"$bin" generate --model "$model" --input "$work/in.jsonl" --output "$work/single.jsonl" \
  --gen-len 8 --ignore-eos --threads 1 2>"$work/single.err" || fail "single-rank run: $(cat "$work/single.err")"

# Two fake nodes share one host: Open MPI's shared-memory segment names would collide.
export OMPI_MCA_btl=self,tcp
export STRATA_BIN=$bin STRATA_MODEL=$model STRATA_INPUT=$work/in.jsonl \
  STRATA_OUTPUT=$work/pipeline.jsonl STRATA_GEN_LEN=8 STRATA_THREADS=1

# More nodes than exist: refused at submission (EnforcePartLimits), not left pending.
start=$(date +%s%N)
if sbatch -N 3 --chdir="$work" "$repo/slurm/multi-node.sbatch" --ignore-eos >"$work/too-many.txt" 2>&1; then
  fail "sbatch -N 3 on a 2-node cluster was accepted: $(cat "$work/too-many.txt")"
fi
ms=$((($(date +%s%N) - start) / 1000000))
[ "$ms" -lt 5000 ] || fail "sbatch -N 3 took ${ms} ms to be refused"
echo "slurm test: sbatch -N 3 refused in ${ms} ms: $(cat "$work/too-many.txt")"

# Each multi-node template in turn: srun with PMIx, then mpirun inside the allocation.
run_template() {
  local template=$1 name=$2 job state log
  rm -f "$work/pipeline.jsonl"
  job=$(sbatch --parsable -N 2 --chdir="$work" --time=2 "$repo/slurm/$template" --ignore-eos --threads 1) ||
    fail "sbatch -N 2 $template failed"
  job=${job%%;*}
  echo "slurm test: submitted $template as job $job"
  # Poll squeue: sbatch --wait backs off to 10 s and more between checks.
  for _ in $(seq 400); do
    [ -z "$(squeue -h -j "$job" -o %T 2>/dev/null)" ] && break
    sleep 0.1
  done
  [ -z "$(squeue -h -j "$job" -o %T 2>/dev/null)" ] || fail "job $job still queued or running after 40 s"
  state=$(scontrol show job "$job" 2>/dev/null | grep -o 'JobState=[A-Z_]*' || true)
  log=$work/strata-$name-$job.out
  echo "slurm test: job $job ended: $state"
  [ -f "$log" ] && cat "$log"
  [ "$state" = JobState=COMPLETED ] || fail "job $job ($template): $state"
  # Two one-rank worlds would also write the right output: the ranks must have found each other.
  grep -q 'on 2 rank' "$log" || fail "job $job ($template) did not run as one 2-rank world"
  [ -s "$work/pipeline.jsonl" ] || fail "job $job ($template) wrote no output"
  cmp "$work/single.jsonl" "$work/pipeline.jsonl" ||
    fail "$template: 2-node output differs from the single-rank run: $(diff "$work/single.jsonl" "$work/pipeline.jsonl" | head -5)"
  echo "slurm test: $template: 2-node output equals the single-rank run"
}
# Negative control: ranks that fail (no such model) must end the job as FAILED, not COMPLETED.
bad=$(STRATA_MODEL=$work/no-such-model sbatch --parsable -N 2 --chdir="$work" --time=2 \
  "$repo/slurm/multi-node.sbatch") || fail "sbatch of the failing job was refused"
bad=${bad%%;*}
for _ in $(seq 400); do
  [ -z "$(squeue -h -j "$bad" -o %T 2>/dev/null)" ] && break
  sleep 0.1
done
bad_state=$(scontrol show job "$bad" 2>/dev/null | grep -o 'JobState=[A-Z_]*' || true)
[ "$bad_state" = JobState=FAILED ] || fail "job $bad with a missing model ended $bad_state, expected FAILED"
echo "slurm test: a job with a missing model ended $bad_state"
run_template multi-node.sbatch strata-pipeline
run_template multi-node-mpirun.sbatch strata-mpirun
echo "slurm test: PASS"
