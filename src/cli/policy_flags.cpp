#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/flag_values.h"
#include "core/error.h"
#include "core/units.h"
#include "planner/planner.h"

namespace strata::cli {

void add_policy_flags(cxxopts::Options& options, const std::string& default_gpu_batch_size) {
  options.add_options("policy")(
      "policy",
      "policy JSON file (strata plan --json writes one), or 'auto': plan it for this "
      "node (or --hardware FILE)",
      cxxopts::value<std::string>())(
      "hardware",
      "hardware profile (strata profile writes one) for --policy auto and "
      "predictions",
      cxxopts::value<std::string>())(
      "percent",
      "WG WC CG CC HG HC: weight, cache and activation percent on GPU and CPU "
      "(the rest on disk)",
      number_value())("gpu-batch-size", "sequences computed together",
                      number_value(default_gpu_batch_size))(
      "num-gpu-batches", "GPU batches in one block (effective batch = both multiplied)",
      number_value())("offload-dir", "directory for the disk tier", cxxopts::value<std::string>())(
      "cpu-cache-compute", "decode attention on the CPU, where the cache lives")(
      "no-overlap", "run loads, compute and stores in plain order (for comparison)")(
      "compress-weight", "hold weights in 4-bit groups on every tier (FlexGen's compression)")(
      "compress-cache", "hold the KV cache in 4-bit groups")(
      "compress-bits", "bits of --compress-weight / --compress-cache: 4 or 8", number_value())(
      "gpu-mem", "cap on the GPU tier, e.g. 16GiB", cxxopts::value<std::string>())(
      "cpu-mem", "cap on the CPU tier", cxxopts::value<std::string>())(
      "disk-mem", "cap on the disk tier", cxxopts::value<std::string>())(
      "trace", "write a Chrome trace (Perfetto) of every load, store and compute",
      cxxopts::value<std::string>())(
      "hetegen",
      "with --policy auto: split linear layers with CPU-tier weights between CPU and GPU "
      "(HeteGen), the planner choosing alpha")(
      "alpha", "HeteGen's alpha for every linear layer: the CPU's share of output columns, [0, 1)",
      number_value())("device",
                      "cpu, cuda or auto (CUDA when a GPU is present and runs the policy)",
                      cxxopts::value<std::string>()->default_value("auto"));
}

double parse_alpha_flag(const cxxopts::ParseResult& flags) {
  const double inf = std::numeric_limits<double>::infinity();
  const double a = real_flag(flags, "alpha", -inf, inf);  // finite; the range is said below
  STRATA_INPUT_CHECK(a >= 0 && a < 1, "--alpha ", flags["alpha"].as<std::string>(),
                     " must be in [0, 1) (the CPU's share of each linear layer's output columns)");
  return a;
}

bool wants_offloading(const cxxopts::ParseResult& flags) {
  for (const char* name :
       {"policy", "hardware", "percent", "num-gpu-batches", "offload-dir", "cpu-cache-compute",
        "no-overlap", "compress-weight", "compress-cache", "compress-bits", "gpu-mem", "cpu-mem",
        "disk-mem", "trace", "hetegen", "alpha", "device"}) {
    if (flags.count(name)) return true;
  }
  return false;
}

EngineOptions engine_options_from_flags(const cxxopts::ParseResult& flags) {
  EngineOptions o;
  Policy& p = o.policy;
  const bool automatic = wants_auto_policy(flags);
  STRATA_INPUT_CHECK(!(automatic && flags.count("percent")),
                     "--policy auto chooses the percentages: "
                     "drop --percent");
  if (flags.count("policy") && !automatic) p = Policy::load(flags["policy"].as<std::string>());
  if (flags.count("percent")) {
    const auto v = real_list_flag(flags, "percent", 0, 100);
    STRATA_INPUT_CHECK(v.size() == 6, "--percent takes six numbers: WG WC CG CC HG HC (got ",
                       v.size(), ")");
    p.weights = {v[0], v[1]};
    p.cache = {v[2], v[3]};
    p.activations = {v[4], v[5]};
  }
  if (flags.count("gpu-batch-size") || (!flags.count("policy") && !automatic)) {
    p.gpu_batch_size = int_flag(flags, "gpu-batch-size", 1, kMaxBatchFlag);
  }
  if (flags.count("num-gpu-batches"))
    p.num_gpu_batches = int_flag(flags, "num-gpu-batches", 1, kMaxBatchFlag);
  if (flags.count("cpu-cache-compute")) p.cpu_cache_compute = true;
  if (flags.count("no-overlap")) p.overlap = false;
  if (flags.count("compress-weight")) p.compress_weight = true;
  if (flags.count("compress-cache")) p.compress_cache = true;
  if (flags.count("compress-bits"))
    p.compress_bits = static_cast<int>(int_flag(flags, "compress-bits", 4, 8));
  STRATA_INPUT_CHECK(!flags.count("hetegen") || automatic,
                     "--hetegen lets the planner choose alpha: it needs --policy auto (or give "
                     "--alpha A)");
  STRATA_INPUT_CHECK(!(flags.count("hetegen") && flags.count("alpha")),
                     "--hetegen lets the planner choose alpha: drop --alpha");
  if (flags.count("alpha")) p.hetegen_alpha = HeteGenAlpha::all(parse_alpha_flag(flags));
  p.validate();
  o.device = parse_device(flags["device"].as<std::string>(), "--device");
  if (o.device == Device::kCuda) {
    const std::string why = cuda_unsupported(p);
    STRATA_INPUT_CHECK(why.empty(), why);
  }
  if (flags.count("offload-dir")) o.offload_dir = flags["offload-dir"].as<std::string>();
  if (flags.count("gpu-mem")) o.caps.gpu_bytes = cap_flag(flags, "gpu-mem");
  if (flags.count("cpu-mem")) o.caps.cpu_bytes = cap_flag(flags, "cpu-mem");
  if (flags.count("disk-mem")) o.caps.disk_bytes = cap_flag(flags, "disk-mem");
  return o;
}

bool wants_auto_policy(const cxxopts::ParseResult& flags) {
  return flags.count("policy") && flags["policy"].as<std::string>() == "auto";
}

std::optional<Prediction> plan_from_flags(const cxxopts::ParseResult& flags,
                                          const ModelConfig& config, EngineOptions& options,
                                          int64_t max_sequences) {
  const bool automatic = wants_auto_policy(flags);
  if (!automatic && !flags.count("hardware")) return std::nullopt;
  HardwareProfile hw;
  if (flags.count("hardware")) {
    hw = HardwareProfile::load(flags["hardware"].as<std::string>());
  } else {
    ProfileOptions po;
    po.offload_dir = options.offload_dir;
    po.quick = true;
    po.gpu_index = options.device == Device::kCpu ? -1 : options.gpu_index;  // plan what runs
    hw = measure_hardware(po);
  }
  if (!automatic) {
    return predict_policy(hw, config, options.policy, options.max_prompt_len, options.gen_len);
  }
  PlanRequest request;
  request.prompt_len = options.max_prompt_len;
  request.gen_len = options.gen_len;
  request.caps = options.caps;
  // Fixed only when given: the flags' defaults are for hand-written policies.
  if (flags.count("gpu-batch-size"))
    request.gpu_batch_size = int_flag(flags, "gpu-batch-size", 1, kMaxBatchFlag);
  if (flags.count("num-gpu-batches"))
    request.num_gpu_batches = int_flag(flags, "num-gpu-batches", 1, kMaxBatchFlag);
  request.allow_disk = !options.offload_dir.empty();
  request.max_block = max_sequences;
  request.compress_weight = options.policy.compress_weight;
  request.compress_cache = options.policy.compress_cache;
  request.hetegen = flags.count("hetegen") > 0;
  if (flags.count("alpha")) request.alpha = parse_alpha_flag(flags);
  const Plan plan = make_plan(hw, config, request);
  const Policy& given = options.policy;
  Policy p = plan.policy;
  p.overlap = given.overlap;
  p.compress_bits = given.compress_bits;
  options.policy = p;
  std::fprintf(stderr, "strata: --policy auto: %s (binding: %s; %lld LPs in %.3f s)\n",
               p.to_json().dump().c_str(), plan.binding.c_str(),
               static_cast<long long>(plan.lp_count), plan.solve_s);
  return plan.predicted;
}

}  // namespace strata::cli
