// Bytes each tier holds for a policy, known before anything is allocated: each engine's plan is
// one function (plan_cpu_memory, plan_cuda_memory) that counts every byte the engine allocates,
// and the engine allocates what it counted. Caps, the planner and bench read the same figures.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/engine.h"

namespace strata {

struct MemoryPlan {
  uint64_t weights[kNumTiers] = {};
  uint64_t cache[kNumTiers] = {};
  uint64_t activations[kNumTiers] = {};
  uint64_t working[kNumTiers] = {};  // rings, workspaces, logits, disk staging, HeteGen rows
  uint64_t pinned_bytes = 0;         // CUDA: the pinned arena (the CPU tier less pageable parts)
  uint64_t total(Tier tier) const;
};

// The plan of the engine make_engine builds for these options.
MemoryPlan plan_memory(const ModelConfig& config, const EngineOptions& options);
MemoryPlan plan_cpu_memory(const ModelConfig& config, const EngineOptions& options);
// Weights, cache and activations on each tier, as every tiered array splits them; no working
// sets.
MemoryPlan plan_data(const ModelConfig& config, const EngineOptions& options, Device device);
// The disk tier the plan needs in `offload_dir` (null when it puts nothing on disk); an input
// error naming --offload-dir when none is given.
std::unique_ptr<DiskStore> make_disk_tier(const MemoryPlan& plan, const std::string& offload_dir);
// Input error naming the tier, the bytes needed and the bytes the cap allows.
void check_caps(const MemoryPlan& plan, const TierCaps& caps);

}  // namespace strata
