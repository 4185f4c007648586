#include "runtime/policy.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_file.h"

namespace strata {

const char* tier_name(Tier tier) {
  switch (tier) {
    case Tier::kGpu:
      return "gpu";
    case Tier::kCpu:
      return "cpu";
    case Tier::kDisk:
      return "disk";
  }
  return "?";
}

namespace {

void validate_split(const TierSplit& s, const char* what) {
  STRATA_INPUT_CHECK(s.gpu_percent >= 0 && s.gpu_percent <= 100, "policy: ", what, " gpu percent ",
                     s.gpu_percent, " is outside 0..100");
  STRATA_INPUT_CHECK(s.cpu_percent >= 0 && s.cpu_percent <= 100, "policy: ", what, " cpu percent ",
                     s.cpu_percent, " is outside 0..100");
  STRATA_INPUT_CHECK(s.gpu_percent + s.cpu_percent <= 100 + 1e-9, "policy: ", what,
                     " gpu + cpu percent is ", s.gpu_percent + s.cpu_percent, ", over 100");
}

}  // namespace

void Policy::validate() const {
  STRATA_INPUT_CHECK(gpu_batch_size >= 1, "policy: gpu_batch_size must be >= 1");
  STRATA_INPUT_CHECK(num_gpu_batches >= 1, "policy: num_gpu_batches must be >= 1");
  validate_split(weights, "weight");
  validate_split(cache, "cache");
  validate_split(activations, "activation");
  STRATA_INPUT_CHECK(attn_sparsity > 0 && attn_sparsity <= 1, "policy: attn_sparsity ",
                     attn_sparsity, " must be in (0, 1]");
  STRATA_INPUT_CHECK(compress_bits == 4 || compress_bits == 8, "policy: compress_bits ",
                     compress_bits, " must be 4 or 8");
}

nlohmann::json Policy::to_json() const {
  return {{"gpu_batch_size", gpu_batch_size},
          {"num_gpu_batches", num_gpu_batches},
          {"w_gpu_percent", weights.gpu_percent},
          {"w_cpu_percent", weights.cpu_percent},
          {"cache_gpu_percent", cache.gpu_percent},
          {"cache_cpu_percent", cache.cpu_percent},
          {"act_gpu_percent", activations.gpu_percent},
          {"act_cpu_percent", activations.cpu_percent},
          {"overlap", overlap},
          {"sep_layer", sep_layer},
          {"pin_weight", pin_weight},
          {"cpu_cache_compute", cpu_cache_compute},
          {"attn_sparsity", attn_sparsity},
          {"compress_weight", compress_weight},
          {"compress_cache", compress_cache},
          {"compress_bits", compress_bits}};
}

Policy Policy::from_json(const nlohmann::json& j, const std::string& source) {
  STRATA_INPUT_CHECK(j.is_object(), source, ": a policy is a JSON object");
  Policy p;
  const Policy defaults;
  const nlohmann::json known = defaults.to_json();
  for (const auto& [key, value] : j.items()) {
    STRATA_INPUT_CHECK(known.contains(key), source, ": unknown policy field '", key, "'");
    STRATA_INPUT_CHECK(
        value.type() == known[key].type() || (value.is_number() && known[key].is_number()), source,
        ": policy field '", key, "' has the wrong type");
    STRATA_INPUT_CHECK(!known[key].is_number_integer() || value.is_number_integer(), source,
                       ": policy field '", key, "' must be an integer");
  }
  auto get = [&](const char* key, auto fallback) {
    return j.contains(key) ? j[key].get<decltype(fallback)>() : fallback;
  };
  p.gpu_batch_size = get("gpu_batch_size", defaults.gpu_batch_size);
  p.num_gpu_batches = get("num_gpu_batches", defaults.num_gpu_batches);
  p.weights = {get("w_gpu_percent", defaults.weights.gpu_percent),
               get("w_cpu_percent", defaults.weights.cpu_percent)};
  p.cache = {get("cache_gpu_percent", defaults.cache.gpu_percent),
             get("cache_cpu_percent", defaults.cache.cpu_percent)};
  p.activations = {get("act_gpu_percent", defaults.activations.gpu_percent),
                   get("act_cpu_percent", defaults.activations.cpu_percent)};
  p.overlap = get("overlap", defaults.overlap);
  p.sep_layer = get("sep_layer", defaults.sep_layer);
  p.pin_weight = get("pin_weight", defaults.pin_weight);
  p.cpu_cache_compute = get("cpu_cache_compute", defaults.cpu_cache_compute);
  p.attn_sparsity = get("attn_sparsity", defaults.attn_sparsity);
  p.compress_weight = get("compress_weight", defaults.compress_weight);
  p.compress_cache = get("compress_cache", defaults.compress_cache);
  p.compress_bits = get("compress_bits", defaults.compress_bits);
  return p;
}

Policy Policy::load(const std::string& path) {
  nlohmann::json j = read_json_file(path, "policy file");
  // `strata plan --json` wraps the policy in {"policy": ...}; accept both.
  if (j.is_object() && j.contains("policy") && j["policy"].is_object()) j = j["policy"];
  return from_json(j, path);
}

}  // namespace strata
