#!/usr/bin/env bash
# strata's CPU engine beside the PyTorch eager peer (launch/bench-torch.py), back to back on the
# same workload: synthetic OPT weights, all in memory, greedy. Needs Debian's python3-torch.
#
# Usage: launch/bench-vs-torch.sh [ARCH [PROMPTS [PROMPT_LEN [GEN_LEN [THREADS]]]]]
#   defaults: opt-1.3b 32 128 32 0 (0: one thread per core)
# Writes strata.json and torch.json under ${OUT_DIR:-build/bench-vs-torch} and prints the ratios.
# On a shared machine run it as root under `chrt -f 10` so both runs get the cores.
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:-opt-1.3b} prompts=${2:-32} prompt_len=${3:-128} gen_len=${4:-32} threads=${5:-0}
config=configs/models/$arch.json
[ -f "$config" ] || { echo "bench-vs-torch: no $config" >&2; exit 2; }
/usr/bin/python3 -c "import torch" 2>/dev/null ||
  { echo "bench-vs-torch: /usr/bin/python3 has no torch (apt-get install python3-torch)" >&2; exit 2; }
out=${OUT_DIR:-build/bench-vs-torch}
mkdir -p "$out"
strata=${STRATA:-build/strata}
"$strata" bench --model "synthetic:$arch" --num-prompts "$prompts" --gpu-batch-size "$prompts" \
  --prompt-len "$prompt_len" --gen-len "$gen_len" --threads "$threads" --json "$out/strata.json"
torch_threads=$threads
[ "$torch_threads" -gt 0 ] || torch_threads=$(nproc)
/usr/bin/python3 launch/bench-torch.py "$config" --prompts "$prompts" --prompt-len "$prompt_len" \
  --gen-len "$gen_len" --threads "$torch_threads" | tee "$out/torch.json"
/usr/bin/python3 - "$out/strata.json" "$out/torch.json" <<'PY'
import json, sys
s, t = (json.load(open(p)) for p in sys.argv[1:3])
for key in ("prefill_s", "decode_s"):
    print(f"{key}: strata {s[key]:.2f} s, pytorch {t[key]:.2f} s: strata {t[key] / s[key]:.2f}x")
g = "generation_tokens_per_s"
print(f"generation: strata {s[g]:.2f} tok/s, pytorch {t[g]:.2f} tok/s: strata {s[g] / t[g]:.2f}x; "
      f"strata at {s.get('compute_bound_fraction', 0):.2f} of its compute bound")
PY
