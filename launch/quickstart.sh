#!/usr/bin/env bash
# Installs dependencies, builds, and generates for a few prompts on a synthetic OPT-125M.
set -euo pipefail
cd "$(dirname "$0")/.."
./launch/install-deps.sh
./launch/build.sh
input=$(mktemp --suffix=.jsonl)
trap 'rm -f "$input"' EXIT
cat > "$input" <<'JSONL'
{"id": "a", "input_ids": [2, 31414, 232, 328, 19, 5, 2527, 9]}
{"id": "b", "input_ids": [2, 100, 524, 10, 2721]}
{"id": "c", "input_ids": [2, 133, 812, 9, 1470, 16, 2201, 6, 8, 5, 1144, 9]}
{"id": "d", "input_ids": [2, 713]}
JSONL
echo "== strata generate --model synthetic:opt-125m (random weights, greedy, 16 new tokens)"
build/strata generate --model synthetic:opt-125m --input "$input" --gen-len 16 --ignore-eos
