// Policy search: for each (gpu_batch_size, num_gpu_batches) tried, a GLPK LP over the nine
// placement fractions minimises the block's generation time under peak-memory constraints per
// tier; the best throughput over the enumeration wins. On the CPU backend the chosen policy is
// then checked against plan_memory (the engine's exact allocation) and re-solved with a tighter
// cap when rounding made it overshoot, so a plan never exceeds a tier.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>

#include "model/model_config.h"
#include "planner/cost_model.h"
#include "planner/hardware_profile.h"
#include "runtime/policy.h"

namespace strata {

struct PlanRequest {
  int64_t prompt_len = 0;
  int64_t gen_len = 0;
  TierCaps caps;                // 0: the profile's size
  int64_t gpu_batch_size = 0;   // 0: enumerated
  int64_t num_gpu_batches = 0;  // 0: enumerated
  bool compress_weight = false;
  bool compress_cache = false;
  bool sep_layer = true;
  bool allow_disk = true;  // false when there is no offload dir
  int64_t max_block = 0;   // > 0: at most this many sequences (what there is to run)
  // HeteGen: `hetegen` lets the planner choose each shape's alphas (the cost model's balance, or
  // 0 where splitting does not pay); alpha >= 0 forces one for every linear layer and phase.
  bool hetegen = false;
  double alpha = -1;
};

struct Plan {
  Policy policy;
  Prediction predicted;
  uint64_t peak_bytes[kNumTiers] = {};
  uint64_t cap_bytes[kNumTiers] = {};
  std::string binding;  // the memory constraint(s) that bind, or why nothing does
  double solve_s = 0;
  int64_t lp_count = 0;
  // {"policy", "predicted", "peak_bytes", "binding", ...}; "policy" loads with --policy.
  nlohmann::json to_json() const;
};

// The caps the planner uses: the user's where given, else what the profile says is usable.
TierCaps effective_caps(const HardwareProfile& hw, const PlanRequest& request);

// Input errors: prompt too long for the model, model larger than every tier together, or no
// policy that fits the caps.
Plan make_plan(const HardwareProfile& hw, const ModelConfig& config, const PlanRequest& request);

// A given policy under the same model and caps: its prediction, peaks and binding constraint
// (the policy is not checked against the caps; `binding` says which it exceeds).
Plan evaluate_policy(const HardwareProfile& hw, const ModelConfig& config, const Policy& policy,
                     const PlanRequest& request);

// The best policy for one (gpu_batch_size, num_gpu_batches) within absolute caps, or none when
// nothing fits; no input checks. host_bytes > 0 bounds the gpu and cpu tiers together (both are
// host memory on the CPU backend). The cluster planner asks this for many slice sizes.
std::optional<Policy> best_policy_for_shape(const HardwareProfile& hw, const ModelConfig& config,
                                            const CostShape& shape, const TierCaps& caps,
                                            uint64_t host_bytes, bool allow_disk);

// The cost model's figures for a given policy.
Prediction predict_policy(const HardwareProfile& hw, const ModelConfig& config,
                          const Policy& policy, int64_t prompt_len, int64_t gen_len);

}  // namespace strata
