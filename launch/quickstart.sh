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
trap 'rm -rf "$offload" "$out"' EXIT
echo "== strata generate --model tests/data/stories260K --percent 0 0 0 0 0 0 (all on disk)"
"$build_dir/strata" generate --model tests/data/stories260K \
  --prompt "Once upon a time" --prompt "Lily and Ben went to the park." --prompt "" \
  --gen-len 120 --percent 0 0 0 0 0 0 --offload-dir "$offload" --output "$out"
python3 - "$out" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(f"\n[{r['id']}] {r.get('prompt', '')}{r['text']}")
PY
