// Where weights, KV cache and activations live and how the block schedule runs (FlexGen's
// policy, with its field names), plus the capacity caps that let a big machine act small.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>

namespace strata {

// Percentages of a kind of data on the GPU (device) and CPU tiers; the rest is on disk.
struct TierSplit {
  double gpu_percent = 100;
  double cpu_percent = 0;
  double disk_percent() const { return 100 - gpu_percent - cpu_percent; }
};

// HeteGen's split of a linear layer whose weights live in host memory: the CPU computes the
// first alpha of its output columns from host memory while the rest of the weights cross PCIe
// and the GPU computes the remainder. One alpha per kind of linear (every layer of a kind has
// the same shape, so the same balance); the attention projections share one, being all [h, h].
struct LinearAlphas {
  double attention = 0;  // q_proj, k_proj, v_proj, out_proj
  double fc1 = 0;
  double fc2 = 0;
  bool any() const { return attention > 0 || fc1 > 0 || fc2 > 0; }
};
// Per phase, because the balance depends on the rows in flight: gpu_batch_size x prompt_len in
// prefill, gpu_batch_size in decode.
struct HeteGenAlpha {
  LinearAlphas prefill;
  LinearAlphas decode;
  bool any() const { return prefill.any() || decode.any(); }
  static HeteGenAlpha all(double alpha) { return {{alpha, alpha, alpha}, {alpha, alpha, alpha}}; }
};

struct Policy {
  int64_t gpu_batch_size = 4;
  int64_t num_gpu_batches = 1;
  TierSplit weights;
  TierSplit cache;
  TierSplit activations;
  bool overlap = true;
  bool sep_layer = true;
  bool pin_weight = true;
  bool cpu_cache_compute = false;
  double attn_sparsity = 1.0;  // fraction of keys attended (top-k); 1 is dense
  bool compress_weight = false;
  bool compress_cache = false;
  int compress_bits = 4;       // 4 (FlexGen's) or 8, for both weights and cache
  HeteGenAlpha hetegen_alpha;  // all 0: no split

  int64_t effective_batch() const { return gpu_batch_size * num_gpu_batches; }
  // Rejects impossible values with a message naming the field; nothing is allocated yet.
  void validate() const;
  nlohmann::json to_json() const;
  // `source` names the file in error messages; fields not given keep their defaults.
  static Policy from_json(const nlohmann::json& json, const std::string& source);
  // What a policy file holds: a policy, or `strata plan --json`'s {"policy": ...}.
  static Policy from_file_json(const nlohmann::json& json, const std::string& source);
  static Policy load(const std::string& path);
};

// Capacity of each tier; 0 means no cap set (the machine's own size).
struct TierCaps {
  uint64_t gpu_bytes = 0;
  uint64_t cpu_bytes = 0;
  uint64_t disk_bytes = 0;
};

enum class Tier : int { kGpu = 0, kCpu = 1, kDisk = 2 };
inline constexpr int kNumTiers = 3;
const char* tier_name(Tier tier);

}  // namespace strata
