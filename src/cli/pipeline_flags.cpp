#include "cli/pipeline_flags.h"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/flag_values.h"
#include "core/error.h"
#include "parallel/pipeline.h"
#include "planner/cluster.h"
#include "planner/cluster_planner.h"
#include "runtime/machine_fit.h"

namespace strata::cli {

namespace {

// Each rank's part of the cluster plan, as the JSON text scatter_text sends. The MILP has a
// time limit, so only rank 0 plans and the others receive their part.
std::vector<std::string> plan_ranks(const cxxopts::ParseResult& flags, const Cluster& cluster,
                                    const ModelConfig& config, const EngineOptions& base,
                                    const std::vector<int64_t>& split) {
  ClusterPlanRequest request;
  request.prompt_len = base.max_prompt_len;
  request.gen_len = base.gen_len;
  request.n_ranks = cluster.n_ranks();
  request.compress_weight = base.policy.compress_weight;
  request.compress_cache = base.policy.compress_cache;
  if (flags.count("gpu-batch-size")) request.gpu_batch_size = base.policy.gpu_batch_size;
  if (flags.count("num-gpu-batches")) request.num_gpu_batches = base.policy.num_gpu_batches;
  if (flags.count("layers-per-rank")) request.layers_per_rank = split;
  const ClusterPlan plan = plan_cluster(cluster, config, request);
  std::fprintf(stderr, "strata: --cluster %s: layers per rank %s, predicted %.3f tok/s\n",
               cluster.source.c_str(), plan.split_text().c_str(), plan.generation_tokens_per_s);
  std::vector<std::string> texts;
  for (const RankPlan& r : plan.ranks) {
    Policy p = r.policy;
    // The plan's GPU batches are the pipeline's micro-batches: one group per rank in flight,
    // each a share of them, so the ranks hold what the plan sized.
    p.num_gpu_batches = std::max<int64_t>(1, p.num_gpu_batches / cluster.n_ranks());
    p.overlap = base.policy.overlap;
    p.compress_bits = base.policy.compress_bits;
    texts.push_back(nlohmann::json{{"first_layer", r.first_layer},
                                   {"n_layers", r.n_layers},
                                   {"split", plan.layers_per_rank()},
                                   {"policy", p.to_json()},
                                   {"caps", {r.cap_bytes[0], r.cap_bytes[1], r.cap_bytes[2]}}}
                        .dump());
  }
  return texts;
}

}  // namespace

void add_pipeline_flags(cxxopts::Options& options) {
  options.add_options("pipeline (under mpirun / srun)")(
      "layers-per-rank", "decoder layers of each rank, e.g. 10,14 (default: even)",
      cxxopts::value<std::string>())(
      "cluster", "cluster file: the planner picks each rank's layers and placement",
      cxxopts::value<std::string>())("transport", "mpi, nccl or auto",
                                     cxxopts::value<std::string>()->default_value("auto"))(
      "pipeline-groups", "groups of GPU batches in flight (default: the number of ranks)",
      number_value());
}

std::optional<PipelineRank> pipeline_rank_from_flags(const cxxopts::ParseResult& flags,
                                                     const ModelConfig& config,
                                                     EngineOptions& base) {
  const parallel::World& w = parallel::world();
  const std::string choice = flags["transport"].as<std::string>();
  STRATA_INPUT_CHECK(choice == "mpi" || choice == "nccl" || choice == "auto",
                     "--transport must be mpi, nccl or auto, not '", choice, "'");
  STRATA_INPUT_CHECK(!(flags.count("cluster") && wants_auto_policy(flags)),
                     "--cluster plans every rank's policy: drop --policy auto");
  std::optional<Cluster> cluster;
  if (flags.count("cluster")) {
    cluster = Cluster::load(flags["cluster"].as<std::string>());
    check_rank_count(*cluster, w.size);
  }
  std::vector<int64_t> split;
  if (flags.count("layers-per-rank")) {
    split = parse_layer_split(flags["layers-per-rank"].as<std::string>(), config.n_layers, w.size);
  } else {
    split = parallel::even_split(config.n_layers, w.size);
  }
  int64_t groups = w.size;
  if (flags.count("pipeline-groups")) {
    groups = int_flag(flags, "pipeline-groups", 1, kMaxBatchFlag);
  }
  if (w.size == 1) {
    // One rank is the single-node engine, under the cluster's caps and planned policy.
    if (cluster) {
      const auto mine = nlohmann::json::parse(plan_ranks(flags, *cluster, config, base, split)[0]);
      base.policy = Policy::from_json(mine["policy"], "the cluster plan");
      base.caps = {mine["caps"][0].get<uint64_t>(), mine["caps"][1].get<uint64_t>(),
                   mine["caps"][2].get<uint64_t>()};
    }
    return std::nullopt;
  }

  STRATA_INPUT_CHECK(!wants_auto_policy(flags),
                     "--policy auto plans one node; for several ranks give --cluster FILE");
  PipelineRank rank;
  rank.transport = parallel::choose_transport(choice, w, -1);
  rank.options = base;
  rank.options.n_groups = groups;
  // Ranks sharing a node take its GPUs in turn.
  if (const int gpus = cuda_device_count(); gpus > 0) rank.options.gpu_index = w.local_rank % gpus;
  if (cluster) {
    // Rank 0 plans (the MILP has a time limit, so ranks could disagree) and sends each rank
    // its part.
    std::vector<std::string> texts;
    if (w.rank == 0) texts = plan_ranks(flags, *cluster, config, rank.options, split);
    const auto mine = nlohmann::json::parse(parallel::scatter_text(*rank.transport, texts));
    rank.options.first_layer = mine["first_layer"].get<int64_t>();
    rank.options.n_layers = mine["n_layers"].get<int64_t>();
    rank.options.policy = Policy::from_json(mine["policy"], "the cluster plan");
    rank.options.caps = {mine["caps"][0].get<uint64_t>(), mine["caps"][1].get<uint64_t>(),
                         mine["caps"][2].get<uint64_t>()};
    split = mine["split"].get<std::vector<int64_t>>();
  } else {
    rank.options.first_layer = 0;
    for (int r = 0; r < w.rank; ++r) rank.options.first_layer += split[static_cast<size_t>(r)];
    rank.options.n_layers = split[static_cast<size_t>(w.rank)];
  }
  rank.layers_per_rank = split;
  // Ranks sharing a node write their own files in the offload dir (the store names its file).
  // The slice and this rank's caps, checked before any weight is read.
  const MemoryPlan plan = plan_memory(config, rank.options);
  check_caps(plan, rank.options.caps);
  check_fits_machine(config, rank.options, plan, resolved_device(rank.options));
  return rank;
}

}  // namespace strata::cli
