#!/usr/bin/env bash
# On the GPU machine: runs the CUDA tests and the kernel benchmark from a bundle made by
# launch/gpu-bundle.sh, and writes the results to $OUT (if set) or ./gpu-check-results.
# Usage: BUNDLE_DIR/gpu-check.sh [BUNDLE_DIR]   (default: the folder this script is in; from a
#        checkout, launch/gpu-check.sh build/gpu-bundle)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bundle=$(cd "${1:-$here}" && pwd)
out=${OUT:-$PWD/gpu-check-results}
mkdir -p "$out"
run="$bundle/run"
# The bundle's copy of tests/data, for tests that compare against the reference models.
[ -d "$bundle/data" ] && export STRATA_TEST_DATA="${STRATA_TEST_DATA:-$bundle/data}"
[ -x "$run" ] || { echo "gpu-check: no bundle at $bundle (make one with launch/gpu-bundle.sh)" >&2; exit 1; }
# Offload dirs on a real file system: O_DIRECT fails on tmpfs before Linux 6.6.
export STRATA_TEST_TMPDIR="${STRATA_TEST_TMPDIR:-$out/tmp}"
mkdir -p "$STRATA_TEST_TMPDIR"
# CUDA 13's runtime needs an R580 driver or newer: say so before any test reads it as "no GPU".
min_driver=580
if command -v nvidia-smi > /dev/null; then
  driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)
  if [ -n "$driver" ] && [ "${driver%%.*}" -lt "$min_driver" ]; then
    echo "gpu-check: driver $driver is older than the R$min_driver this bundle's CUDA 13 runtime needs" >&2
    exit 1
  fi
fi

{
  echo "== host: $(hostname), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  cat "$bundle/MANIFEST" 2>/dev/null
  if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
  else
    echo "nvidia-smi: not on PATH"
  fi
  echo "== libraries still unresolved (only libcuda may be, and only without a driver):"
  LD_LIBRARY_PATH="$bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ldd "$bundle"/bin/* | grep 'not found' || echo none
} > "$out/environment.txt" 2>&1
cat "$out/environment.txt"

status=0
echo "== CUDA tests"
# The exact comparisons append each difference they find here (placement, sequence, step, values).
export STRATA_TEST_REPORT="${STRATA_TEST_REPORT:-$out/test_report.txt}"
rm -f "$STRATA_TEST_REPORT"
"$run" strata_cuda_tests --gtest_output="json:$out/cuda_tests.json" 2>&1 | tee "$out/cuda_tests.log"
tests_rc=${PIPESTATUS[0]}
echo "strata_cuda_tests exit status $tests_rc (77: no GPU visible)"
if [ -s "$STRATA_TEST_REPORT" ]; then
  echo "== exact comparisons that differed ($STRATA_TEST_REPORT)"
  cat "$STRATA_TEST_REPORT"
fi
[ "$tests_rc" = 0 ] || status=1

echo "== kernel bench"
"$run" strata_cuda_bench > "$out/cuda_bench.json" 2> "$out/cuda_bench.log"
bench_rc=$?
cat "$out/cuda_bench.json" "$out/cuda_bench.log"
echo "strata_cuda_bench exit status $bench_rc"
[ "$bench_rc" = 0 ] || status=1

echo "gpu-check: results in $out (status $status)"
exit $status
