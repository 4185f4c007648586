#!/usr/bin/env bash
# `strata generate` killed with SIGKILL at random moments, then re-run with the same command until
# it finishes: every line complete before a re-run is still there unchanged after it, and the
# end is exactly the uninterrupted run's lines (one per id; lines are in finish order).
#   generate_kill.sh MPIEXEC STRATA DATA_DIR RANKS [KILLS]
# RANKS 1: plain processes; 2: a pipeline under mpirun (a kill hits rank 0, or every rank).
# The kill moments are drawn from $STRATA_TEST_SEED (printed), so a failure can be replayed.
set -euo pipefail
mpiexec=$1 strata=$2 data=$3 ranks=$4 kills=${5:-6}
seed=${STRATA_TEST_SEED:-$RANDOM}
echo "generate_kill: seed $seed"
RANDOM=$seed
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
flags=(--oversubscribe)
[ "$(id -u)" = 0 ] && flags+=(--allow-run-as-root)
python3 - "$seed" >"$work/in.jsonl" <<'PY'
import json, random, sys
r = random.Random(int(sys.argv[1]))
for i in range(2000):
    ids = [r.randrange(2, 200) for _ in range(r.randrange(1, 20))]
    print(json.dumps({"id": f"q{i}", "input_ids": ids, "max_tokens": r.randrange(1, 40)}))
PY
model=$data/opt-pub-gelu-nobias
common=(--model "$model" --input "$work/in.jsonl" --threads 1 --gpu-batch-size 4
        --temperature 0.9 --seed 3 --fsync-interval 0.5)
gen() {  # gen OUTPUT: one run, in the background; its pid in $job
  if [ "$ranks" = 1 ]; then
    "$strata" generate "${common[@]}" --output "$1" 2>>"$work/err" &
  else
    timeout -s KILL 120 "$mpiexec" "${flags[@]}" -np "$ranks" "$strata" generate "${common[@]}" \
      --output "$1" 2>>"$work/err" &
  fi
  job=$!
}
# The complete lines of a file (all of it up to its last newline).
complete() { python3 -c 'import sys; b = open(sys.argv[1], "rb").read(); sys.stdout.buffer.write(b[:b.rfind(b"\n") + 1])' "$1"; }

start=$(date +%s%N)
gen "$work/want.jsonl"; wait "$job"
full_ms=$((($(date +%s%N) - start) / 1000000))
echo "generate_kill: uninterrupted run $full_ms ms, $(wc -l <"$work/want.jsonl") lines"

out=$work/out.jsonl
killed=0
for k in $(seq "$kills"); do
  before=""
  [ -e "$out" ] && before=yes && complete "$out" >"$work/before"
  left=$((2000 - $( [ -e "$out" ] && complete "$out" | wc -l || echo 0)))
  [ "$left" = 0 ] && break
  gen "$out"
  # A moment within the time the rest would take (start-up included), at most 0.8 of it so that a
  # run faster than the uninterrupted one is still killed before it finishes.
  sleep "$(awk -v r=$RANDOM -v ms="$full_ms" -v left="$left" \
    'BEGIN { printf "%.3f", 0.8 * r / 32768 * (0.3 + 0.7 * left / 2000) * ms / 1000 }')"
  if [ "$ranks" = 1 ]; then
    kill -9 "$job" 2>/dev/null || true
  else
    # timeout -> mpiexec -> the ranks
    victims=$(pgrep -P "$(pgrep -P "$job" | head -1)" 2>/dev/null || true)
    [ $((RANDOM % 2)) = 0 ] && victims=$(echo "$victims" | sort -n | head -1)
    [ -n "$victims" ] && { kill -9 $victims 2>/dev/null || true; }
  fi
  status=0
  wait "$job" || status=$?
  [ "$status" != 0 ] && killed=$((killed + 1))
  if [ -n "$before" ]; then
    n=$(stat -c %s "$work/before")
    if ! cmp -s -n "$n" "$work/before" "$out"; then
      echo "run $k changed lines that were complete before it"; exit 1
    fi
  fi
  echo "generate_kill: run $k: $( [ -e "$out" ] && complete "$out" | wc -l || echo 0) complete lines"
done
complete "$out" >"$work/before"
gen "$out"; wait "$job"
cmp -s -n "$(stat -c %s "$work/before")" "$work/before" "$out" || { echo "the last run changed complete lines"; exit 1; }
python3 - "$work/want.jsonl" "$out" <<'PY'
import json, sys
want = open(sys.argv[1]).read().splitlines()
got = open(sys.argv[2]).read().splitlines()
ids = [json.loads(l)["id"] for l in got]
assert len(ids) == len(set(ids)) == 2000, f"{len(ids)} lines, {len(set(ids))} ids"
assert sorted(got) == sorted(want), "the resumed output differs from the uninterrupted run"
PY
[ "$killed" -ge 1 ] || { echo "no run was killed before it finished"; exit 1; }
if [ "$ranks" = 1 ]; then
  # SIGTERM: one line with the results safe in the output (all of its lines) and how to resume.
  : >"$work/err"
  gen "$work/term.jsonl"
  for _ in $(seq 600); do [ -s "$work/term.jsonl" ] && break; sleep 0.05; done
  kill -TERM "$job"
  wait "$job" || true
  safe=$(sed -n 's/.*interrupted; \([0-9]*\) results are safe in.*/\1/p' "$work/err")
  # The count follows each append, so a signal between the two may make it one short.
  lines=$(wc -l <"$work/term.jsonl")
  [ -n "$safe" ] && [ "$safe" -le "$lines" ] && [ "$safe" -ge $((lines - 1)) ] &&
    grep -q "resume with" "$work/err" ||
    { echo "SIGTERM: no or a wrong notice"; cat "$work/err"; exit 1; }
fi
echo "generate_kill: $killed kills on $ranks rank(s); the resumed output equals the uninterrupted run"
