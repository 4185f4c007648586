#!/usr/bin/env bash
# Runs one MPI case and checks its exit status and how long it took.
#   run_case.sh MPIEXEC NP BINARY MODE ok|fail MAX_SECONDS [TEXT]
# fail: the job must end with a non-zero status within MAX_SECONDS, and stderr must hold TEXT
# when given. NP 0 runs BINARY without mpirun.
set -u
mpiexec=$1 np=$2 binary=$3 mode=$4 expect=$5 max_s=$6 text=${7:-}
flags=(--oversubscribe)
[ "$(id -u)" = 0 ] && flags+=(--allow-run-as-root)
err=$(mktemp)
trap 'rm -f "$err"' EXIT
start_ns=$(date +%s%N)
if [ "$np" = 0 ]; then
  timeout $((max_s + 30)) "$binary" "$mode" 2>"$err"
else
  # The outer timeout only stops a hung job from hanging ctest; the check below is the test.
  timeout -s KILL $((max_s + 30)) "$mpiexec" "${flags[@]}" -np "$np" "$binary" "$mode" 2>"$err"
fi
status=$?
elapsed_ms=$((($(date +%s%N) - start_ns) / 1000000))
elapsed=$(printf '%d.%03d' $((elapsed_ms / 1000)) $((elapsed_ms % 1000)))
cat "$err" >&2
echo "run_case: np=$np mode=$mode status=$status elapsed=${elapsed}s (limit ${max_s}s)"
if [ "$elapsed_ms" -gt $((max_s * 1000)) ]; then
  echo "run_case: FAIL: took ${elapsed}s, more than ${max_s}s"; exit 1
fi
if [ "$expect" = ok ]; then
  [ "$status" = 0 ] || { echo "run_case: FAIL: status $status, expected 0"; exit 1; }
else
  [ "$status" != 0 ] || { echo "run_case: FAIL: status 0, expected the job to fail"; exit 1; }
  if [ -n "$text" ] && ! grep -qF -- "$text" "$err"; then
    echo "run_case: FAIL: stderr lacks '$text'"; exit 1
  fi
fi
echo "run_case: PASS"
