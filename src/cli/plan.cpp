// `strata plan`: the policy the planner chooses for a model on a hardware profile, with its
// predicted throughput, peak bytes per tier and the constraint that binds.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/cluster_cli.h"
#include "cli/commands.h"
#include "cli/flag_values.h"
#include "core/error.h"
#include "core/units.h"
#include "planner/cluster_planner.h"
#include "planner/planner.h"

namespace strata::cli {
namespace {

std::string split_text(const TierSplit& s) {
  char text[96];
  std::snprintf(text, sizeof(text), "gpu %.1f%% cpu %.1f%% disk %.1f%%", s.gpu_percent,
                s.cpu_percent, s.disk_percent());
  return text;
}

std::string alpha_text(const LinearAlphas& a) {
  char text[96];
  std::snprintf(text, sizeof(text), "attention %.3f fc1 %.3f fc2 %.3f", a.attention, a.fc1, a.fc2);
  return text;
}

// `strata plan --cluster`: the cluster planner; the single-rank flags that have no meaning there
// are refused rather than ignored.
int run_plan_cluster(const cxxopts::ParseResult& flags) {
  for (const char* name :
       {"hardware", "gpu-mem", "cpu-mem", "disk-mem", "offload-dir", "no-disk", "policy"}) {
    STRATA_INPUT_CHECK(!flags.count(name), "--", name,
                       " does not apply with --cluster (each node's hardware and caps come from "
                       "the cluster file)");
  }
  STRATA_INPUT_CHECK(flags.count("model"), "--model is required");
  const std::string model = flags["model"].as<std::string>();
  const Cluster cluster = Cluster::load(flags["cluster"].as<std::string>());
  ClusterPlanRequest request = cluster_request_from_flags(flags);
  if (flags.count("ranks")) {
    request.n_ranks = int_flag(flags, "ranks", 1, 1 << 20);
  }
  const ModelConfig config = model_config_for(model);
  if (flags.count("layers-per-rank")) {
    if (request.n_ranks > 0) check_rank_count(cluster, request.n_ranks);
    request.layers_per_rank = parse_layer_split(flags["layers-per-rank"].as<std::string>(),
                                                config.n_layers, cluster.n_ranks());
  }
  const ClusterPlan plan = plan_cluster(cluster, config, request);
  if (flags.count("json")) {
    std::printf("%s\n", plan.to_json().dump(2).c_str());
  } else {
    print_cluster_plan(plan, cluster, model, config);
  }
  return 0;
}

void add_plan_flags(cxxopts::Options& options) {
  options.add_options()("model", "opt-30b, synthetic:ARCH or a model directory",
                        cxxopts::value<std::string>())(
      "hardware",
      "hardware profile JSON (strata profile writes one; default: profile this "
      "node quickly)",
      cxxopts::value<std::string>())("prompt-len", "tokens per prompt", number_value())(
      "gen-len", "new tokens per prompt", number_value())(
      "compress-weight", "plan for 4-bit weights")("compress-cache", "plan for a 4-bit KV cache")(
      "gpu-batch-size", "fix the GPU batch size (default: enumerated)", number_value())(
      "num-gpu-batches", "fix the number of GPU batches (default: enumerated)", number_value())(
      "gpu-mem", "cap on the GPU tier, e.g. 16GiB", cxxopts::value<std::string>())(
      "cpu-mem", "cap on the CPU tier", cxxopts::value<std::string>())(
      "disk-mem", "cap on the disk tier", cxxopts::value<std::string>())(
      "offload-dir", "directory for the disk tier, when profiling this node",
      cxxopts::value<std::string>())("no-disk", "place nothing on disk")(
      "policy", "evaluate this policy file instead of searching (e.g. FlexGen's published one)",
      cxxopts::value<std::string>())(
      "json", "print one JSON object (its \"policy\" loads with --policy FILE)")(
      "cluster",
      "plan a pipeline over this cluster file (configs/clusters/*.json): the layer split and "
      "each rank's policy; --prompt-len and --gen-len default to 512 and 32",
      cxxopts::value<std::string>())("layers-per-rank",
                                     "with --cluster: evaluate this split (e.g. 10,14) instead",
                                     cxxopts::value<std::string>())(
      "ranks", "with --cluster: the rank count the run will have (checked against the file)",
      number_value())(
      "hetegen",
      "let the planner split linear layers with CPU-tier weights between CPU and GPU "
      "(HeteGen), choosing alpha per batch size")(
      "alpha", "force HeteGen's alpha (CPU share of each linear's output columns) to A in [0, 1)",
      number_value());
}

// The one-node planner's flags: the cluster-only ones refused, the required ones present.
void check_node_flags(const cxxopts::ParseResult& flags) {
  for (const char* name : {"layers-per-rank", "ranks"}) {
    STRATA_INPUT_CHECK(!flags.count(name), "--", name, " needs --cluster FILE");
  }
  STRATA_INPUT_CHECK(!(flags.count("hetegen") && flags.count("policy")),
                     "--hetegen chooses alpha in the search: drop --policy (or give --alpha A)");
  for (const char* name : {"model", "prompt-len", "gen-len"}) {
    STRATA_INPUT_CHECK(flags.count(name), "--", name, " is required");
  }
}

struct NamedHardware {
  HardwareProfile hw;
  std::string name;  // as the report names it
};

// --hardware FILE, or this node profiled quickly.
NamedHardware hardware_from_flags(const cxxopts::ParseResult& flags) {
  NamedHardware h;
  if (flags.count("hardware")) {
    h.name = flags["hardware"].as<std::string>();
    h.hw = HardwareProfile::load(h.name);
  } else {
    ProfileOptions po;
    if (flags.count("offload-dir")) po.offload_dir = flags["offload-dir"].as<std::string>();
    po.quick = true;
    h.hw = measure_hardware(po);
    h.name = "this node (" + h.hw.name + ", quick profile)";
  }
  return h;
}

PlanRequest plan_request_from_flags(const cxxopts::ParseResult& flags) {
  PlanRequest request;
  request.prompt_len = int_flag(flags, "prompt-len", 1, kMaxLengthFlag);
  request.gen_len = int_flag(flags, "gen-len", 1, kMaxLengthFlag);
  request.compress_weight = flags.count("compress-weight") > 0;
  request.compress_cache = flags.count("compress-cache") > 0;
  if (flags.count("gpu-batch-size")) {
    request.gpu_batch_size = int_flag(flags, "gpu-batch-size", 1, kMaxBatchFlag);
  }
  if (flags.count("num-gpu-batches")) {
    request.num_gpu_batches = int_flag(flags, "num-gpu-batches", 1, kMaxBatchFlag);
  }
  if (flags.count("gpu-mem")) request.caps.gpu_bytes = cap_flag(flags, "gpu-mem");
  if (flags.count("cpu-mem")) request.caps.cpu_bytes = cap_flag(flags, "cpu-mem");
  if (flags.count("disk-mem")) request.caps.disk_bytes = cap_flag(flags, "disk-mem");
  request.allow_disk = !flags.count("no-disk");
  request.hetegen = flags.count("hetegen") > 0;
  if (flags.count("alpha")) request.alpha = parse_alpha_flag(flags);
  return request;
}

// What `strata plan` was asked, for the report.
struct PlanQuestion {
  std::string model;
  ModelConfig config;
  NamedHardware hardware;
  PlanRequest request;
  bool searched = true;  // false: --policy FILE, evaluated
};

// The search's plan, or --policy FILE (with --alpha when given) evaluated.
Plan answer(const cxxopts::ParseResult& flags, const PlanQuestion& q) {
  if (q.searched) return make_plan(q.hardware.hw, q.config, q.request);
  Policy given = Policy::load(flags["policy"].as<std::string>());
  if (q.request.alpha >= 0) given.hetegen_alpha = HeteGenAlpha::all(q.request.alpha);
  return evaluate_policy(q.hardware.hw, q.config, given, q.request);
}

void print_policy(const Policy& p, const PlanRequest& request) {
  std::printf("policy: gpu batch %lld x %lld batches (effective batch %lld)%s%s%s\n",
              static_cast<long long>(p.gpu_batch_size), static_cast<long long>(p.num_gpu_batches),
              static_cast<long long>(p.effective_batch()),
              p.cpu_cache_compute ? ", decode attention on the CPU" : "",
              p.compress_weight ? ", 4-bit weights" : "", p.compress_cache ? ", 4-bit cache" : "");
  std::printf("  weights     %s\n  cache       %s\n  activations %s\n",
              split_text(p.weights).c_str(), split_text(p.cache).c_str(),
              split_text(p.activations).c_str());
  std::printf("  --percent %g %g %g %g %g %g\n", p.weights.gpu_percent, p.weights.cpu_percent,
              p.cache.gpu_percent, p.cache.cpu_percent, p.activations.gpu_percent,
              p.activations.cpu_percent);
  if (p.hetegen_alpha.any() || request.hetegen || request.alpha >= 0) {
    std::printf(
        "  hetegen alpha (CPU share of CPU-tier linears' columns)\n"
        "    prefill %s\n    decode  %s\n",
        alpha_text(p.hetegen_alpha.prefill).c_str(), alpha_text(p.hetegen_alpha.decode).c_str());
  }
}

void print_plan(const Plan& plan, const PlanQuestion& q) {
  std::printf("model %s (%.2f B parameters), prompt %lld + %lld generated, hardware %s\n",
              q.model.c_str(), static_cast<double>(q.config.n_params()) / 1e9,
              static_cast<long long>(q.request.prompt_len),
              static_cast<long long>(q.request.gen_len), q.hardware.name.c_str());
  print_policy(plan.policy, q.request);
  const Prediction& pr = plan.predicted;
  std::printf("predicted: prefill %.2f tok/s (%.2f s, bound by %s)\n", pr.prefill_tokens_per_s,
              pr.prefill_s, pr.prefill_bound.c_str());
  std::printf("           decode %.2f tok/s (%.2f s, bound by %s)\n", pr.decode_tokens_per_s,
              pr.decode_s, pr.decode_bound.c_str());
  std::printf("           generation %.2f tok/s\n", pr.generation_tokens_per_s);
  for (int t = 0; t < kNumTiers; ++t) {
    std::printf("peak %-4s %12s of %s\n", tier_name(static_cast<Tier>(t)),
                format_bytes(static_cast<double>(plan.peak_bytes[t])).c_str(),
                format_bytes(static_cast<double>(plan.cap_bytes[t])).c_str());
  }
  std::printf("binding: %s\n", plan.binding.c_str());
  if (q.searched) {
    std::printf("solved %lld LPs in %.3f s\n", static_cast<long long>(plan.lp_count), plan.solve_s);
  }
}

}  // namespace

int run_plan(int argc, char** argv) {
  cxxopts::Options options("strata plan",
                           "Choose an offloading policy by linear programming over a hardware "
                           "profile's cost model (FlexGen's policy search).");
  add_plan_flags(options);
  const auto flags = parse_flags(options, argc, argv);
  if (flags.count("cluster")) return run_plan_cluster(flags);
  check_node_flags(flags);
  PlanQuestion q;
  q.model = flags["model"].as<std::string>();
  q.config = model_config_for(q.model);
  q.hardware = hardware_from_flags(flags);
  q.request = plan_request_from_flags(flags);
  q.searched = !flags.count("policy");
  const Plan plan = answer(flags, q);
  if (flags.count("json")) {
    std::printf("%s\n", plan.to_json().dump(2).c_str());
  } else {
    print_plan(plan, q);
  }
  return 0;
}

}  // namespace strata::cli
