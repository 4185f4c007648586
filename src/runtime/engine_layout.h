// How the engines lay data out: stored formats and array sizes, shared by the engines and their
// memory plans so what is planned is what gets allocated.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/memory_plan.h"
#include "runtime/schedule.h"
#include "runtime/tiered_array.h"

namespace strata {

// The weight and cache formats a policy asks for. A compressed cache is grouped along each
// token's kv_dim row in the largest groups of at most 64 that hold whole heads or tile one
// head, so no group straddles a head boundary (64 for head_dim 64 or 128).
int64_t cache_group_len(const ModelConfig& c);
// On CUDA plain arrays are fp16 on every tier (the device computes in fp16).
StoredFormat weight_format(const ModelConfig& c, const Policy& p, Device device = Device::kCpu);
StoredFormat cache_format(const ModelConfig& c, const Policy& p, Device device = Device::kCpu);
StoredFormat activation_format(Device device);
// Elements of a stage's array: its packed bytes when compressed.
int64_t stage_numel(const StageLayout& l, const Policy& p);
// Whether the engine computes on the GPU tier's arrays in place.
bool weights_resident(const Policy& p);
bool cache_resident(const Policy& p);
int64_t slice_layer_count(const ModelConfig& c, const EngineOptions& o);
// The stages a slice runs: stage_layouts cut to the options' layers.
std::vector<StageLayout> slice_layouts(const ModelConfig& config, const EngineOptions& options);

struct Shapes {
  int64_t capacity;   // cache tokens per slot
  int64_t act_rows;   // hidden rows per GPU batch
  int64_t kv_numel;   // one (layer, batch) cache block
  int64_t act_numel;  // one batch's hidden
  int64_t max_stage_numel;
  int64_t workspace_numel;
};
Shapes shapes_of(const ModelConfig& c, const EngineOptions& o,
                 const std::vector<StageLayout>& layouts);

}  // namespace strata
