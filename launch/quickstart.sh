#!/usr/bin/env bash
# Installs dependencies, builds the strata binary (only it), and tells stories from
# tests/data/stories260K, a real pretrained Llama-2-architecture model, with its weights, cache
# and activations on the disk tier. Prints each story's text and the throughput line.
set -euo pipefail
cd "$(dirname "$0")/.."
./launch/install-deps.sh
build_dir=${BUILD_DIR:-build}
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" ${CMAKE_ARGS:-} >/dev/null
cmake --build "$build_dir" -j "${JOBS:-$(nproc)}" --target strata
# On the build's own disk: O_DIRECT needs a real file system (tmpfs refuses it on older kernels).
offload=$(mktemp -d "$build_dir/quickstart-offload.XXXXXX")
out=$(mktemp)
trap 'rm -rf "$offload" "$out" "$out.log" "$out.job.json"' EXIT
prompts=("Once upon a time" "Lily and Ben went to the park." "")
args=()
for p in "${prompts[@]}"; do args+=(--prompt "$p"); done
echo "== strata generate --model tests/data/stories260K --percent 0 0 0 0 0 0 (weights, cache and"
echo "   activations on the disk tier), greedy, 120 new tokens per prompt"
"$build_dir/strata" generate --model tests/data/stories260K "${args[@]}" --gen-len 120 \
  --percent 0 0 0 0 0 0 --offload-dir "$offload" --output "$out" 2>"$out.log"
python3 - "$out" "${prompts[@]}" <<'PY'
import json, sys
prompts = sys.argv[2:]
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(f"\n[{r['id']}] {prompts[int(r['id'])]}{r['text']}")
PY
echo
cat "$out.log"
