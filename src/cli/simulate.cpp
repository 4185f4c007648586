// `strata simulate`: the cluster planner's projection for clusters larger than a cluster file
// (its nodes repeated in order), as CSV: how throughput would scale past the machines at hand.
#include <cstdio>
#include <sstream>

#include "cli/cluster_cli.h"
#include "cli/commands.h"
#include "cli/flag_values.h"
#include "core/error.h"

namespace strata::cli {
namespace {

std::vector<int64_t> parse_node_counts(const std::string& text) {
  std::vector<int64_t> counts;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    size_t pos = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &pos);
    } catch (const std::exception&) {
      pos = 0;
    }
    STRATA_INPUT_CHECK(pos > 0 && pos == item.size() && v >= 1, "--nodes '", text, "': '", item,
                       "' is not a node count >= 1");
    counts.push_back(v);
  }
  STRATA_INPUT_CHECK(!counts.empty() && text.back() != ',', "--nodes '", text,
                     "': give node counts such as 8,16,32,64");
  return counts;
}

// "6" when every rank has the same count, else "min-max".
std::string summary(const std::vector<int64_t>& layers) {
  int64_t lo = layers.front(), hi = layers.front();
  for (int64_t v : layers) lo = std::min(lo, v), hi = std::max(hi, v);
  return lo == hi ? std::to_string(lo) : std::to_string(lo) + "-" + std::to_string(hi);
}

}  // namespace

int run_simulate(int argc, char** argv) {
  cxxopts::Options options(
      "strata simulate",
      "Project pipeline throughput from the cost model for clusters built by repeating a cluster "
      "file's nodes; prints CSV (one row per node count).");
  options.add_options()("cluster", "cluster file (configs/clusters/*.json)",
                        cxxopts::value<std::string>())(
      "model", "opt-30b, synthetic:ARCH or a model directory", cxxopts::value<std::string>())(
      "nodes", "node counts to project",
      cxxopts::value<std::string>()->default_value("1,2,4,8,16,32,64"))(
      "prompt-len", "tokens per prompt (default 512)", number_value())(
      "gen-len", "new tokens per prompt (default 32)", number_value())(
      "gpu-batch-size", "fix the GPU batch size (default: enumerated)", number_value())(
      "num-gpu-batches", "fix the number of GPU batches (default: enumerated, >= nodes)",
      number_value())("compress-weight", "plan for 4-bit weights")("compress-cache",
                                                                   "plan for a 4-bit KV cache");
  const auto flags = parse_flags(options, argc, argv);
  for (const char* name : {"cluster", "model"}) {
    STRATA_INPUT_CHECK(flags.count(name), "--", name, " is required");
  }
  const std::vector<int64_t> counts = parse_node_counts(flags["nodes"].as<std::string>());
  const Cluster base = Cluster::load(flags["cluster"].as<std::string>());
  const ModelConfig config = model_config_for(flags["model"].as<std::string>());
  const ClusterPlanRequest request = cluster_request_from_flags(flags);

  std::printf(
      "nodes,layers_per_rank,bottleneck_rank,gpu_batch_size,num_gpu_batches,"
      "generation_tokens_per_s,decode_tokens_per_s\n");
  for (int64_t nodes : counts) {
    if (nodes > config.n_layers) {
      std::fprintf(stderr, "strata simulate: skipping %lld nodes: the model has %lld layers\n",
                   static_cast<long long>(nodes), static_cast<long long>(config.n_layers));
      continue;
    }
    const ClusterPlan plan = plan_cluster(base.replicated(nodes), config, request);
    std::printf(
        "%lld,%s,%lld,%lld,%lld,%.4f,%.4f\n", static_cast<long long>(nodes),
        summary(plan.layers_per_rank()).c_str(), static_cast<long long>(plan.bottleneck_rank),
        static_cast<long long>(plan.gpu_batch_size), static_cast<long long>(plan.num_gpu_batches),
        plan.generation_tokens_per_s, plan.decode_tokens_per_s);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace strata::cli
