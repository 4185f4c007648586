#include "cli/cluster_cli.h"

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/flag_values.h"
#include "core/error.h"
#include "core/units.h"
#include "model/weight_source.h"

namespace strata::cli {
namespace {

std::string percents(const TierSplit& s) {
  char text[64];
  std::snprintf(text, sizeof(text), "%.0f/%.0f/%.0f", s.gpu_percent, s.cpu_percent,
                s.disk_percent());
  return text;
}

}  // namespace

ModelConfig model_config_for(const std::string& model) {
  std::string name = model;
  if (name.rfind("facebook/", 0) == 0) name = name.substr(9);
  if (name.rfind("synthetic:", 0) != 0 && !std::filesystem::exists(name)) {
    return parse_model_config(builtin_config_json(name), name);
  }
  return open_weight_source(name)->config();
}

ClusterPlanRequest cluster_request_from_flags(const cxxopts::ParseResult& flags) {
  ClusterPlanRequest r;
  if (flags.count("prompt-len")) r.prompt_len = int_flag(flags, "prompt-len", 1, kMaxLengthFlag);
  if (flags.count("gen-len")) r.gen_len = int_flag(flags, "gen-len", 1, kMaxLengthFlag);
  if (flags.count("gpu-batch-size")) {
    r.gpu_batch_size = int_flag(flags, "gpu-batch-size", 1, kMaxBatchFlag);
  }
  if (flags.count("num-gpu-batches")) {
    r.num_gpu_batches = int_flag(flags, "num-gpu-batches", 1, kMaxBatchFlag);
  }
  r.compress_weight = flags.count("compress-weight") > 0;
  r.compress_cache = flags.count("compress-cache") > 0;
  return r;
}

void print_cluster_plan(const ClusterPlan& plan, const Cluster& cluster, const std::string& model,
                        const ModelConfig& config) {
  std::printf(
      "cluster %s: %lld ranks; model %s (%.2f B parameters, %lld layers); prompt %lld + "
      "%lld generated\n",
      cluster.source.c_str(), static_cast<long long>(cluster.n_ranks()), model.c_str(),
      static_cast<double>(config.n_params()) / 1e9, static_cast<long long>(config.n_layers),
      static_cast<long long>(plan.prompt_len), static_cast<long long>(plan.gen_len));
  std::printf("every rank: gpu batch %lld x %lld batches (effective batch %lld)\n",
              static_cast<long long>(plan.gpu_batch_size),
              static_cast<long long>(plan.num_gpu_batches),
              static_cast<long long>(plan.effective_batch()));
  std::printf("layers per rank: %s (%s)\n", plan.split_text().c_str(),
              plan.hand_split ? "--layers-per-rank" : "MILP");
  std::printf("%4s  %-16s %-4s  %-7s  %-11s %-11s %-11s %10s %10s %10s\n", "rank", "node", "dev",
              "layers", "weights %", "cache %", "acts %", "prefill s", "decode s", "stage s");
  for (const RankPlan& r : plan.ranks) {
    char layers[32];
    std::snprintf(layers, sizeof(layers), "%lld-%lld", static_cast<long long>(r.first_layer),
                  static_cast<long long>(r.first_layer + r.n_layers - 1));
    std::string notes = r.embed ? " +embed" : "";
    if (r.head) notes += " +head";
    if (r.policy.cpu_cache_compute) notes += " cpu-attention";
    std::printf("%4lld  %-16s %-4s  %-7s  %-11s %-11s %-11s %10.3f %10.3f %10.3f%s\n",
                static_cast<long long>(r.rank), r.node.c_str(), node_device_name(r.device), layers,
                percents(r.policy.weights).c_str(), percents(r.policy.cache).c_str(),
                percents(r.policy.activations).c_str(), r.prefill_s, r.decode_s, r.stage_s(),
                notes.c_str());
  }
  std::printf(
      "predicted pipeline: generation %.3f tok/s (prefill %.2f tok/s, decode %.3f "
      "tok/s)\n",
      plan.generation_tokens_per_s, plan.prefill_tokens_per_s, plan.decode_tokens_per_s);
  std::printf("bottleneck: rank %lld in decode, rank %lld in prefill\n",
              static_cast<long long>(plan.bottleneck_rank),
              static_cast<long long>(plan.prefill_bottleneck_rank));
  for (const RankPlan& r : plan.ranks) {
    std::printf("rank %lld peak:", static_cast<long long>(r.rank));
    for (int t = 0; t < kNumTiers; ++t) {
      std::printf("%s %s %s of %s", t ? "," : "", tier_name(static_cast<Tier>(t)),
                  format_bytes(static_cast<double>(r.peak_bytes[t])).c_str(),
                  format_bytes(static_cast<double>(r.cap_bytes[t])).c_str());
    }
    std::printf("\n");
  }
  std::printf("solved %lld MILPs in %.3f s\n", static_cast<long long>(plan.milp_count),
              plan.solve_s);
}

}  // namespace strata::cli
