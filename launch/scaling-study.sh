#!/usr/bin/env bash
# Scaling study over weak nodes: 1, 2 and 4 pipeline ranks on this machine (CPU backend; each rank
# one thread and a capped CPU tier), `strata bench --json` per run into a CSV, beside what the
# planner predicts for the same ranks and what `strata simulate` projects for 8 to 64 nodes;
# throughput against ranks drawn as a PNG with gnuplot.
#
#   launch/scaling-study.sh [--quick] [--out DIR] [--bin PATH] [--ranks "1 2 4"]
#                           [--nodes 1,2,4,8,16,32,64] [--model M] [--cpu-mem 2GiB]
#                           [--sim-model M]
#
# --quick: a small model and a few short prompts (a minute or so), for testing the study itself.
# --sim-model: the model of the weak-nodes-4.json projection (default: the run's model; a node
#   count above the model's layer count is not projected, so 64 nodes needs e.g. opt-66b).
# Writes DIR (default results/scaling): scaling.csv, scaling.png, bench-rN.json, the node profile
# and cluster files the predictions used, and each run's log.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$repo/results/scaling
bin=$repo/build/strata
ranks="1 2 4"
nodes=1,2,4,8,16,32,64
quick=0
model="" cpu_mem=2GiB sim_model=""
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1 ;;
    --out) out=$2; shift ;;
    --bin) bin=$2; shift ;;
    --ranks) ranks=$2; shift ;;
    --nodes) nodes=$2; shift ;;
    --model) model=$2; shift ;;
    --cpu-mem) cpu_mem=$2; shift ;;
    --sim-model) sim_model=$2; shift ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "scaling-study: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

# Batch shape fixed for runs and predictions alike: the prediction is then for the run that was
# made, and 4 GPU batches keep a 4-stage pipeline full.
if [ "$quick" = 1 ]; then
  model=${model:-synthetic:opt-125m} prompt_len=16 gen_len=4 gpu_batch=2 n_batches=4
else
  model=${model:-synthetic:opt-1.3b} prompt_len=128 gen_len=32 gpu_batch=8 n_batches=4
fi
num_prompts=$((gpu_batch * n_batches))
sim_model=${sim_model:-$model}
bin=$(realpath "$bin")
mkdir -p "$out"
out=$(realpath "$out")
for tool in jq gnuplot mpirun; do
  command -v "$tool" >/dev/null || { echo "scaling-study: $tool missing (launch/install-deps.sh)" >&2; exit 1; }
done
cores=$(nproc)
log() { echo "scaling-study: $*" >&2; }

# The weak node: this machine held to one thread, profiled as such so that the planner's
# figures are for the ranks that run (configs/hardware/dev-2core.json was measured with two).
profile=$out/node-1thread.json
if [ ! -s "$profile" ]; then
  log "profiling this node with one thread -> $profile"
  mkdir -p "$out/offload"
  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$bin" profile --quick --disk-probe 256MiB \
    --offload-dir "$out/offload" --out "$profile" >"$out/profile.log" 2>&1
fi
# A cluster file of N such nodes (a run's --cluster must list exactly its ranks).
cluster_file() {
  jq -n --arg hw "$profile" --arg mem "$cpu_mem" --argjson n "$1" \
    '{name: "weak-1thread-\($n)", note: "written by launch/scaling-study.sh",
      nodes: [{name: "weak", hardware: $hw, device: "cpu", cpu_mem: $mem, disk_mem: "16GiB",
               threads: 1, count: $n}]}' >"$out/cluster-$1.json"
  echo "$out/cluster-$1.json"
}

csv=$out/scaling.csv
echo "source,model,ranks,cores,threads_per_rank,prompt_len,gen_len,gpu_batch_size,num_gpu_batches,generation_tokens_per_s,decode_tokens_per_s,prefill_tokens_per_s,note" >"$csv"
shape="$prompt_len,$gen_len"

# Measured: one mpirun per rank count. Until bench takes --cluster, the cap goes as --cpu-mem.
has_cluster=0
"$bin" bench --help 2>/dev/null | grep -q -- '--cluster' && has_cluster=1
mkdir -p "$out/offload"
for r in $ranks; do
  json=$out/bench-r$r.json
  rm -f "$json"
  placement=(--cpu-mem "$cpu_mem")
  # One rank is the plain engine (it takes no --cluster): the cap then goes as --cpu-mem.
  [ "$has_cluster" = 1 ] && [ "$r" -gt 1 ] && placement=(--cluster "$(cluster_file "$r")")
  log "bench with $r rank(s): $model, $num_prompts prompts x $prompt_len + $gen_len"
  note=""
  # A thread cap of one per rank: 4 ranks on a 2-core machine share cores (see the cores column).
  if STRATA_THREADS_PER_RANK=1 "$repo/launch/strata-mpirun" -np "$r" "$bin" bench --model "$model" \
    --prompt-len "$prompt_len" --gen-len "$gen_len" --num-prompts "$num_prompts" \
    --gpu-batch-size "$gpu_batch" --num-gpu-batches "$n_batches" --threads 1 --no-bounds \
    --offload-dir "$out/offload" "${placement[@]}" --json "$json" >"$out/bench-r$r.log" 2>&1 && [ -s "$json" ]; then
    # The split as the run printed it ("layers per rank 7,5"), when planned from --cluster.
    split=$(grep -o 'layers per rank [0-9,]*' "$out/bench-r$r.log" | head -1 | sed 's/,$//' | tr , ' ' || true)
    jq -r --arg r "$r" --arg c "$cores" --arg m "$model" --arg shape "$shape" --arg split "$split" \
      '(.policy // .policy_rank0) as $p
       | ["measured", $m, ($r|tonumber), ($c|tonumber), 1, $shape,
          $p.gpu_batch_size, $p.num_gpu_batches, .generation_tokens_per_s,
          .decode_tokens_per_s, .prefill_tokens_per_s,
          (if (.ranks // ($r|tonumber)) != ($r|tonumber) then "json says \(.ranks) ranks" else $split end)]
       | map(tostring) | join(",")' "$json" >>"$csv"
  else
    log "bench with $r rank(s) failed: $(tail -3 "$out/bench-r$r.log" | tr '\n' ' ')"
    echo "measured,$model,$r,$cores,1,$shape,$gpu_batch,$n_batches,,,,failed (bench-r$r.log)" >>"$csv"
  fi
done

# Predicted and projected: one `strata simulate` per node count (a count that the search cannot
# settle in a minute is recorded, not waited for). GPU batches: 4, or one per node past 4 so that
# every stage has a batch in flight.
simulate() {  # source cluster_file model
  local src=$1 cluster=$2 m=$3 n nb row
  for n in ${nodes//,/ }; do
    nb=$((n > n_batches ? n : n_batches))
    if row=$(timeout 60 "$bin" simulate --cluster "$cluster" --model "$m" --nodes "$n" \
      --prompt-len "$prompt_len" --gen-len "$gen_len" --gpu-batch-size "$gpu_batch" \
      --num-gpu-batches "$nb" 2>"$out/simulate.err" | tail -n +2) && [ -n "$row" ]; then
      # simulate: nodes,layers_per_rank,bottleneck_rank,gpu_batch_size,num_gpu_batches,gen,decode
      IFS=, read -r _ layers _ gbs ngb gen dec <<<"$row"
      echo "$src,$m,$n,,,$shape,$gbs,$ngb,$gen,$dec,,layers per rank $layers" >>"$csv"
    else
      why=$(tr '\n' ' ' <"$out/simulate.err" | sed 's/,/;/g; s/^strata simulate: //; s/ *$//' | cut -c1-160)
      echo "$src,$m,$n,,,$shape,$gpu_batch,$nb,,,,no projection: ${why:-timed out}" >>"$csv"
    fi
  done
}
log "planner: this node (one thread) and configs/clusters/weak-nodes-4.json at $nodes nodes"
simulate planner-1thread "$(cluster_file 1)" "$model"
simulate simulate-weak-nodes-4 "$repo/configs/clusters/weak-nodes-4.json" "$sim_model"

# One .dat per series (gnuplot skips empty fields badly), then the plot.
for s in measured planner-1thread simulate-weak-nodes-4; do
  awk -F, -v s="$s" '$1 == s && $10 != "" { print $3, $10 }' "$csv" >"$out/$s.dat"
done
png=$out/scaling.png
gnuplot <<EOF
set terminal pngcairo size 900,600
set output "$png"
set title "strata pipeline over weak nodes: $model, $num_prompts prompts x ($prompt_len + $gen_len)"
set xlabel "ranks (nodes)"
set ylabel "generation throughput (tokens/s)"
set logscale x 2
set xrange [0.8:80]
set logscale y 10
set key top left
set grid
plot "$out/measured.dat" using 1:2 with linespoints pt 7 ps 1.5 lw 2 title "measured here (1 thread per rank, $cores cores)", \
     "$out/planner-1thread.dat" using 1:2 with linespoints pt 5 dt 2 title "planner: this node, 1 thread", \
     "$out/simulate-weak-nodes-4.dat" using 1:2 with linespoints pt 9 dt 3 title "simulate: weak-nodes-4.json nodes, $sim_model"
EOF
log "wrote $csv and $png"
column -s, -t "$csv" >&2 || cat "$csv" >&2
