#include "cli/commands.h"
#include "core/error.h"
#include "core/units.h"

namespace strata::cli {

void add_policy_flags(cxxopts::Options& options, const std::string& default_gpu_batch_size) {
  options.add_options("policy")
      ("policy", "policy JSON file (strata plan --json writes one)", cxxopts::value<std::string>())
      ("percent", "WG WC CG CC HG HC: weight, cache and activation percent on GPU and CPU "
                  "(the rest on disk)", cxxopts::value<std::vector<double>>())
      ("gpu-batch-size", "sequences computed together",
       cxxopts::value<int64_t>()->default_value(default_gpu_batch_size))
      ("num-gpu-batches", "GPU batches in one block (effective batch = both multiplied)",
       cxxopts::value<int64_t>())
      ("offload-dir", "directory for the disk tier", cxxopts::value<std::string>())
      ("cpu-cache-compute", "decode attention on the CPU, where the cache lives")
      ("no-overlap", "run loads, compute and stores in plain order (for comparison)")
      ("gpu-mem", "cap on the GPU tier, e.g. 16GiB", cxxopts::value<std::string>())
      ("cpu-mem", "cap on the CPU tier", cxxopts::value<std::string>())
      ("disk-mem", "cap on the disk tier", cxxopts::value<std::string>())
      ("trace", "write a Chrome trace (Perfetto) of every load, store and compute",
       cxxopts::value<std::string>());
}

bool wants_offloading(const cxxopts::ParseResult& flags) {
  for (const char* name : {"policy", "percent", "num-gpu-batches", "offload-dir",
                           "cpu-cache-compute", "no-overlap", "gpu-mem", "cpu-mem", "disk-mem",
                           "trace"}) {
    if (flags.count(name)) return true;
  }
  return false;
}

EngineOptions engine_options_from_flags(const cxxopts::ParseResult& flags) {
  EngineOptions o;
  Policy& p = o.policy;
  if (flags.count("policy")) p = Policy::load(flags["policy"].as<std::string>());
  if (flags.count("percent")) {
    const auto v = flags["percent"].as<std::vector<double>>();
    STRATA_INPUT_CHECK(v.size() == 6, "--percent takes six numbers: WG WC CG CC HG HC (got ",
                       v.size(), ")");
    p.weights = {v[0], v[1]};
    p.cache = {v[2], v[3]};
    p.activations = {v[4], v[5]};
  }
  if (flags.count("gpu-batch-size") || !flags.count("policy")) {
    p.gpu_batch_size = flags["gpu-batch-size"].as<int64_t>();
  }
  if (flags.count("num-gpu-batches")) p.num_gpu_batches = flags["num-gpu-batches"].as<int64_t>();
  if (flags.count("cpu-cache-compute")) p.cpu_cache_compute = true;
  if (flags.count("no-overlap")) p.overlap = false;
  p.validate();
  if (flags.count("offload-dir")) o.offload_dir = flags["offload-dir"].as<std::string>();
  if (flags.count("gpu-mem")) o.caps.gpu_bytes = parse_bytes(flags["gpu-mem"].as<std::string>(), "--gpu-mem");
  if (flags.count("cpu-mem")) o.caps.cpu_bytes = parse_bytes(flags["cpu-mem"].as<std::string>(), "--cpu-mem");
  if (flags.count("disk-mem")) o.caps.disk_bytes = parse_bytes(flags["disk-mem"].as<std::string>(), "--disk-mem");
  return o;
}

}  // namespace strata::cli
