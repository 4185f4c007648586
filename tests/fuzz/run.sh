#!/usr/bin/env bash
# Runs every libFuzzer harness of tests/fuzz for MINUTES minutes each (default 1), in a
# clang-14 build dir (build-fuzz, configured and built here when needed), and prints per harness
# the executions and the findings (crash/leak/timeout/oom inputs, left in build-fuzz/findings/).
#   tests/fuzz/run.sh MINUTES [HARNESS...]     e.g. tests/fuzz/run.sh 5 safetensors llama2c
# A harness stops at its first finding; fix it, copy the input to tests/fuzz/regress/NAME/
# (the fuzz-replay test then runs it in every build) and run again.
set -euo pipefail
minutes=${1:-1}
shift || true
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${STRATA_FUZZ_BUILD:-$root/build-fuzz}
cd "$root"

if [[ $# -gt 0 ]]; then
  names=("$@")
else
  names=()
  for f in tests/fuzz/*_fuzz.cpp; do
    n=$(basename "$f" .cpp)
    names+=("${n%_fuzz}")
  done
fi

if [[ ! -f $build/CMakeCache.txt ]]; then
  launcher=()
  if command -v ccache > /dev/null; then
    launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  fi
  nice -n 19 cmake -S . -B "$build" -DSTRATA_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 -DSTRATA_CUDA=OFF \
    -DSTRATA_NCCL=OFF -DSTRATA_CUDA_EMULATION=OFF -DSTRATA_ONEDNN=OFF "${launcher[@]}" > /dev/null
fi
targets=()
for n in "${names[@]}"; do targets+=("${n}_fuzz"); done
nice -n 19 cmake --build "$build" -j "${STRATA_FUZZ_JOBS:-2}" --target "${targets[@]}" > /dev/null

status=0
for n in "${names[@]}"; do
  work=$build/corpus/$n
  findings=$build/findings/$n
  mkdir -p "$work" "$findings"
  dirs=("$work" "tests/fuzz/corpus/$n")
  [[ -d tests/fuzz/regress/$n ]] && dirs+=("tests/fuzz/regress/$n")
  log=$build/findings/$n.log
  before=$(find "$findings" -type f | wc -l)
  nice -n 19 "$build/tests/fuzz/${n}_fuzz" -max_total_time=$((minutes * 60)) -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$findings/" "${dirs[@]}" \
    > "$log" 2>&1 || true
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
  if [[ -z $execs ]]; then  # stopped by a finding: the last status line's count
    execs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#' || true)
  fi
  after=$(find "$findings" -type f | wc -l)
  found=$((after - before))
  printf '%-18s %4d min  %10s execs  %d findings' "$n" "$minutes" "${execs:-?}" "$found"
  if [[ $found -gt 0 ]]; then
    status=1
    printf '  (%s; log %s)' "$(grep -m1 -oE 'ERROR: [A-Za-z]+: [^ ]+|deadly signal|Timeout|out-of-memory|uncaught' "$log" || echo see log)" "$log"
  fi
  printf '\n'
done
exit $status
