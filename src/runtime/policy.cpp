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

constexpr const char* kPhases[] = {"prefill", "decode"};
constexpr const char* kLinearKinds[] = {"attention", "fc1", "fc2"};

double* alpha_field(HeteGenAlpha& a, int phase, int kind) {
  LinearAlphas& l = phase == 0 ? a.prefill : a.decode;
  return kind == 0 ? &l.attention : kind == 1 ? &l.fc1 : &l.fc2;
}

nlohmann::json alpha_json(const HeteGenAlpha& a) {
  nlohmann::json j;
  HeteGenAlpha copy = a;
  for (int p = 0; p < 2; ++p) {
    for (int k = 0; k < 3; ++k) j[kPhases[p]][kLinearKinds[k]] = *alpha_field(copy, p, k);
  }
  return j;
}

// "hetegen_alpha": a number (every linear, both phases) or {"prefill"|"decode": {"attention",
// "fc1", "fc2"}} with omitted entries 0.
HeteGenAlpha alpha_from_json(const nlohmann::json& j, const std::string& source) {
  if (j.is_number()) return HeteGenAlpha::all(j.get<double>());
  STRATA_INPUT_CHECK(j.is_object(), source,
                     ": policy field 'hetegen_alpha' must be a number or an object");
  HeteGenAlpha a;
  for (const auto& [phase, kinds] : j.items()) {
    const int p = phase == "prefill" ? 0 : phase == "decode" ? 1 : -1;
    STRATA_INPUT_CHECK(p >= 0, source, ": unknown field 'hetegen_alpha.", phase,
                       "' (prefill or decode)");
    STRATA_INPUT_CHECK(kinds.is_object(), source, ": 'hetegen_alpha.", phase,
                       "' must be an object");
    for (const auto& [kind, value] : kinds.items()) {
      int k = 0;
      while (k < 3 && kind != kLinearKinds[k]) ++k;
      STRATA_INPUT_CHECK(k < 3, source, ": unknown field 'hetegen_alpha.", phase, ".", kind,
                         "' (attention, fc1 or fc2)");
      STRATA_INPUT_CHECK(value.is_number(), source, ": 'hetegen_alpha.", phase, ".", kind,
                         "' must be a number");
      *alpha_field(a, p, k) = value.get<double>();
    }
  }
  return a;
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
  HeteGenAlpha a = hetegen_alpha;
  for (int p = 0; p < 2; ++p) {
    for (int k = 0; k < 3; ++k) {
      const double v = *alpha_field(a, p, k);
      // alpha = 1 would leave the GPU nothing: the layer is then simply on the CPU.
      STRATA_INPUT_CHECK(v >= 0 && v < 1, "policy: hetegen_alpha.", kPhases[p], ".",
                         kLinearKinds[k], " ", v, " must be in [0, 1)");
    }
  }
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
          {"compress_bits", compress_bits},
          {"hetegen_alpha", alpha_json(hetegen_alpha)}};
}

Policy Policy::from_json(const nlohmann::json& j, const std::string& source) {
  STRATA_INPUT_CHECK(j.is_object(), source, ": a policy is a JSON object");
  Policy p;
  const Policy defaults;
  const nlohmann::json known = defaults.to_json();
  for (const auto& [key, value] : j.items()) {
    STRATA_INPUT_CHECK(known.contains(key), source, ": unknown policy field '", key, "'");
    if (key == "hetegen_alpha") continue;  // checked by alpha_from_json
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
  if (j.contains("hetegen_alpha")) p.hetegen_alpha = alpha_from_json(j["hetegen_alpha"], source);
  return p;
}

Policy Policy::from_file_json(const nlohmann::json& j, const std::string& source) {
  // `strata plan --json` wraps the policy in {"policy": ...}; accept both.
  if (j.is_object() && j.contains("policy") && j["policy"].is_object()) {
    return from_json(j["policy"], source);
  }
  return from_json(j, source);
}

Policy Policy::load(const std::string& path) {
  return from_file_json(read_json_file(path, "policy file"), path);
}

}  // namespace strata
