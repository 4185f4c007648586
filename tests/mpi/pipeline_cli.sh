#!/usr/bin/env bash
# `strata generate` as a pipeline under mpirun against the one-rank run of the same input.
#   pipeline_cli.sh MPIEXEC STRATA DATA_DIR CASE
# same: 2 and 3 ranks (hand and even splits, offloading on the ranks) write byte-identical output
#   (sequences of equal length finish in input order); --trace writes one file per rank.
# one-line: an error all ranks meet (a bad flag; more ranks than layers) is one line, rank 0's.
# too-many-ranks: more ranks than layers fails before loading, naming the counts.
# killed: a rank killed mid-run ends the job with a non-zero status (30 s: a hang guard).
# logprobs: top_logprobs (generated and echoed, both formats) on 2 ranks equal one rank's.
# families: stories260K on 2 ranks gives llama2.c's 200 golden ids; the tiny Llama-3, Qwen2
#   and Mistral models on 2 ranks write what one rank writes.
set -euo pipefail
mpiexec=$1 strata=$2 data=$3 case=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
flags=(--oversubscribe)
[ "$(id -u)" = 0 ] && flags+=(--allow-run-as-root)
run() { timeout -s KILL 120 "$mpiexec" "${flags[@]}" "$@"; }
# OpenBLAS's thread count changes the order of sums, so every run uses one thread per rank.
common=(--gen-len 10 --threads 1 --gpu-batch-size 3 --ignore-eos)
# A reference model's prompts as JSONL requests.
requests() {
  python3 - "$1" <<'PY'
import json, sys
n = 0
for case in json.load(open(sys.argv[1]))["cases"]:
    for ids in case["input_ids"]:
        print(json.dumps({"id": f"p{n}", "input_ids": ids})); n += 1
PY
}
requests "$data/opt-pub-350m-style/cases.json" >"$work/in.jsonl"
model=$data/opt-pub-gelu-nobias  # 3 layers
case $case in
  same)
    "$strata" generate --model "$model" --input "$work/in.jsonl" --output "$work/one.jsonl" "${common[@]}"
    run -np 2 "$strata" generate --model "$model" --input "$work/in.jsonl" \
      --output "$work/two.jsonl" "${common[@]}" --layers-per-rank 2,1 --transport mpi \
      --trace "$work/trace.json"
    cmp "$work/one.jsonl" "$work/two.jsonl"
    # A Chrome trace per rank.
    for f in "$work/trace.json" "$work/trace.json.rank1"; do
      python3 -c 'import json, sys; assert json.load(open(sys.argv[1]))["traceEvents"]' "$f"
    done
    mkdir -p "$work/off"
    run -np 3 "$strata" generate --model "$model" --input "$work/in.jsonl" \
      --output "$work/three.jsonl" "${common[@]}" --percent 0 50 0 50 100 0 \
      --offload-dir "$work/off"
    cmp "$work/one.jsonl" "$work/three.jsonl"
    [ "$(wc -l <"$work/one.jsonl")" = 8 ]
    echo "pipeline_cli: 2 and 3 ranks match one rank"
    ;;
  one-line)
    # An error every rank meets is said once, by rank 0 with its host; the status is non-zero.
    # --quiet as launch/strata-mpirun passes it: mpirun's own boxes stay out of stderr.
    for ranks_and_flag in "3 --gen-len=abc" "4 --gen-len=2"; do
      set -- $ranks_and_flag
      set +e
      run --quiet -np "$1" "$strata" generate --model "$model" --input "$work/in.jsonl" "$2" \
        2>"$work/err"
      status=$?
      set -e
      cat "$work/err"
      [ "$status" = 2 ] || { echo "status $status, not 2"; exit 1; }
      [ "$(wc -l <"$work/err")" = 1 ] || { echo "not one line"; exit 1; }
      grep -q "rank 0" "$work/err"
      grep -q "on $(hostname)" "$work/err"
    done
    grep -q "ranks but the model has only 3 layers" "$work/err"
    ;;
  too-many-ranks)
    set +e
    run -np 4 "$strata" generate --model "$model" --input "$work/in.jsonl" "${common[@]}" \
      2>"$work/err"
    status=$?
    set -e
    cat "$work/err"
    [ "$status" != 0 ] && grep -q "4 ranks but the model has only 3 layers" "$work/err"
    ;;
  killed)
    # A long run on a synthetic model; rank 1 is killed once rank 0 has created its --output,
    # which it does after the ranks' MPI world is up and before the engine runs. The poll waits
    # for that state, not for a time; its 60 s and the 30 s after the kill only catch a hang.
    echo '{"id": "long", "input_ids": [2, 100, 200, 300]}' >"$work/long.jsonl"
    set +e
    run -np 2 "$strata" generate --model synthetic:opt-125m --input "$work/long.jsonl" \
      --output "$work/long.out" --gen-len 2000 --threads 1 --ignore-eos 2>"$work/err" &
    job=$!
    for _ in $(seq 600); do
      [ -e "$work/long.out" ] || ! kill -0 "$job" 2>/dev/null && break
      sleep 0.1
    done
    # The ranks are the children of the mpiexec that runs this input.
    launcher=$(pgrep -f "^$mpiexec .*$work/long.jsonl" | head -1)
    victims=$(pgrep -P "$launcher" | sort -n)
    if [ ! -e "$work/long.out" ] || [ "$(echo "$victims" | wc -l)" != 2 ]; then
      echo "expected rank 0's output and 2 running ranks, found: $victims"; cat "$work/err"
      kill -9 "$job"; exit 1
    fi
    kill -9 "$(echo "$victims" | tail -1)" || exit 1
    killed_at=$(date +%s)
    wait "$job"
    status=$?
    elapsed=$(($(date +%s) - killed_at))
    set -e
    tail -3 "$work/err"
    echo "pipeline_cli: status $status, ended ${elapsed}s after the kill"
    [ "$status" != 0 ] && [ "$elapsed" -le 30 ]
    ;;
  logprobs)
    # top_logprobs cross ranks with the sampled token: requests asking 0..5 alternatives, some
    # echoed, in shared batches; both formats (the batch output less its "created" time).
    python3 - "$work/in.jsonl" "$work/lp.jsonl" "$work/lp-batch.jsonl" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
with open(sys.argv[2], "w") as native, open(sys.argv[3], "w") as batch:
    for i, r in enumerate(lines):
        echo = i % 2 == 1
        native.write(json.dumps({**r, "top_logprobs": i % 6, "echo": echo, "max_tokens": 3 + i % 4}) + "\n")
        body = {"prompt": r["input_ids"], "logprobs": (i + 3) % 6, "echo": echo,
                "max_tokens": 0 if echo else 4}
        batch.write(json.dumps({"custom_id": r["id"], "method": "POST",
                                "url": "/v1/completions", "body": body}) + "\n")
PY
    for f in lp lp-batch; do
      "$strata" generate --model "$model" --input "$work/$f.jsonl" --output "$work/$f-one.jsonl" \
        "${common[@]}"
      run -np 2 "$strata" generate --model "$model" --input "$work/$f.jsonl" \
        --output "$work/$f-two.jsonl" "${common[@]}" --layers-per-rank 2,1 --transport mpi
    done
    # Lines of different lengths may finish in another order on 2 ranks.
    cmp <(sort "$work/lp-one.jsonl") <(sort "$work/lp-two.jsonl")
    grep -q '"top_logprobs":\[\[{"id"' "$work/lp-one.jsonl"
    python3 - "$work/lp-batch-one.jsonl" "$work/lp-batch-two.jsonl" <<'PY'
import json, sys
def lines(path):
    out = []
    for l in open(path):
        j = json.loads(l)
        j["response"]["body"].pop("created")
        out.append(j)
    return sorted(out, key=lambda j: j["custom_id"])
one, two = lines(sys.argv[1]), lines(sys.argv[2])
assert one == two, "2 ranks' batch output differs from one rank's"
tops = [j["response"]["body"]["choices"][0]["logprobs"]["top_logprobs"] for j in one]
assert any(t and len(t) > 1 and t[1] for t in tops), "no alternatives in the output"
PY
    echo "pipeline_cli: top_logprobs on 2 ranks match one rank"
    ;;
  families)
    echo '{"id": "bos", "input_ids": [1]}' >"$work/bos.jsonl"
    run -np 2 "$strata" generate --model "$data/stories260K" --input "$work/bos.jsonl" \
      --output "$work/stories.jsonl" --gen-len 200 --threads 1 --ignore-eos --transport mpi
    python3 - "$data/stories260K/golden.json" "$work/stories.jsonl" <<'PY'
import json, sys
want = json.load(open(sys.argv[1]))["output_ids"]
got = json.loads(open(sys.argv[2]).readline())["output_ids"]
assert got == want, f"2 ranks: {got[:10]}... against llama2.c's {want[:10]}..."
PY
    for m in llama3-tiny qwen2-tiny mistral-tiny; do
      requests "$data/families/$m/cases.json" >"$work/$m.jsonl"
      "$strata" generate --model "$data/families/$m" --input "$work/$m.jsonl" \
        --output "$work/$m-one.jsonl" "${common[@]}"
      run -np 2 "$strata" generate --model "$data/families/$m" --input "$work/$m.jsonl" \
        --output "$work/$m-two.jsonl" "${common[@]}" --percent 0 50 0 50 100 0 \
        --offload-dir "$work"
      cmp "$work/$m-one.jsonl" "$work/$m-two.jsonl"
    done
    echo "pipeline_cli: stories260K on 2 ranks equals llama2.c; families on 2 ranks match one"
    ;;
  *) echo "unknown case $case"; exit 2 ;;
esac
