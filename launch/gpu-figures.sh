#!/usr/bin/env bash
# On the GPU machine: the engine figures the CUDA and HeteGen issues ask for, from a bundle made by
# launch/gpu-bundle.sh (with the CLI). Each run writes NAME.json and NAME.log to $OUT (or
# ./gpu-figures-results); every figure sits next to the bound measured in the same run.
# Usage: BUNDLE_DIR/gpu-figures.sh [opt6.7b] [opt30b] [hetegen]   (default: all three)
#   opt6.7b  synthetic OPT-6.7B, everything on the GPU, prompt 512, gen 32
#   opt30b   synthetic OPT-30B, --gpu-mem 16GiB, weights and cache on the CPU, CPU attention
#            (FlexGen's setting for its 7.32 tok/s on a T4), h2d rate against the pinned peak
#   hetegen  synthetic OPT-6.7B, weights on the CPU, batch 1 / 4 / 32, alpha 0 against 0.15 / 0.3
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bundle=${BUNDLE_DIR:-$here}
out=${OUT:-$PWD/gpu-figures-results}
mkdir -p "$out"
run="$bundle/run"
[ -x "$run" ] || { echo "gpu-figures: no bundle at $bundle" >&2; exit 1; }
figures=("$@")
[ ${#figures[@]} -gt 0 ] || figures=(opt6.7b opt30b hetegen)

status=0
bench() {  # NAME ARGS...
  local name=$1
  shift
  echo "== $name: strata bench $*"
  "$run" strata bench --device cuda --json "$out/$name.json" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  cat "$out/$name.log"
  [ "$rc" = 0 ] || { echo "$name: exit status $rc"; status=1; }
}

for f in "${figures[@]}"; do
  case "$f" in
    opt6.7b)
      bench opt6.7b_gpu --model synthetic:opt-6.7b --prompt-len 512 --gen-len 32 \
        --percent 100 0 100 0 100 0 --gpu-batch-size 32 --num-gpu-batches 1 ;;
    opt30b)
      # 60 GB of weights and 24 GB of cache in pinned host memory.
      bench opt30b_cpu_offload --model synthetic:opt-30b --prompt-len 512 --gen-len 32 \
        --gpu-mem 16GiB --percent 0 100 0 100 100 0 --cpu-cache-compute \
        --gpu-batch-size 32 --num-gpu-batches 1 ;;
    hetegen)
      for b in 1 4 32; do
        for a in 0 0.15 0.3; do
          bench "hetegen_b${b}_alpha${a}" --model synthetic:opt-6.7b --prompt-len 128 \
            --gen-len 16 --percent 0 100 100 0 100 0 --gpu-batch-size "$b" --alpha "$a" \
            --no-bounds
        done
      done ;;
    *) echo "gpu-figures: unknown figure $f (opt6.7b, opt30b, hetegen)" >&2; exit 2 ;;
  esac
done
echo "gpu-figures: results in $out (status $status)"
exit $status
