// The offloading engine: weights, KV cache and activations placed over the GPU, CPU and disk
// tiers by a Policy, and FlexGen's block schedule over (token, stage, GPU batch) run on three
// streams: loads of stage j+1 and of batch k+1 overlap compute of (j, k) and stores of k-1.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <span>
#include <string>
#include <vector>

#include "runtime/generator.h"
#include "runtime/opt_stages.h"
#include "runtime/policy.h"

namespace strata {

struct EngineOptions {
  Policy policy;
  TierCaps caps;
  std::string offload_dir;     // needed when anything is placed on disk
  int64_t max_prompt_len = 0;  // sizes the KV cache and activations
  int64_t gen_len = 0;
  // A pipeline rank's slice: decoder layers [first_layer, first_layer + n_layers) (-1: all),
  // with the embedding when it starts at 0 and the head when it reaches the last layer.
  int64_t first_layer = 0;
  int64_t n_layers = -1;
  // Blocks of num_gpu_batches GPU batches, each with its own KV cache, in flight together
  // (one per pipeline stage, so every rank has work).
  int64_t n_groups = 1;
};

// The stages a slice runs: opt_stage_layouts cut to the options' layers.
std::vector<StageLayout> slice_layouts(const OptConfig& config, const EngineOptions& options);

// What one tier held and moved.
struct TierStats {
  uint64_t peak_bytes = 0;
  uint64_t weight_bytes = 0;
  uint64_t cache_bytes = 0;
  uint64_t activation_bytes = 0;
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
};

struct EngineStats {
  TierStats tiers[kNumTiers];
  double compute_busy_s = 0;
  double load_busy_s = 0;
  double store_busy_s = 0;
  double disk_busy_s = 0;  // seconds with disk I/O in flight
  double wall_s = 0;
  // max(compute-only, I/O-only time) / wall time: 1 when every transfer hides behind compute.
  double overlap_efficiency() const;
};

// Bytes each tier must hold for a policy, before anything is allocated.
struct MemoryPlan {
  uint64_t weights[kNumTiers] = {};
  uint64_t cache[kNumTiers] = {};
  uint64_t activations[kNumTiers] = {};
  uint64_t working[kNumTiers] = {};  // double buffers, workspaces, disk staging
  uint64_t total(Tier tier) const;
};
MemoryPlan plan_memory(const OptConfig& config, const EngineOptions& options);
// Input error naming the tier, the bytes needed and the bytes the cap allows.
void check_caps(const MemoryPlan& plan, const TierCaps& caps);

class OffloadEngine {
 public:
  OffloadEngine(const WeightSource& source, const EngineOptions& options);
  ~OffloadEngine();

  const OptConfig& config() const;
  const Policy& policy() const;

  // Generates for up to gpu_batch_size * num_gpu_batches prompts as one block; GPU batch k holds
  // prompts [k * gpu_batch_size, (k + 1) * gpu_batch_size).
  std::vector<Generation> generate(std::span<const Prompt> prompts, const GenerateOptions& options,
                                   GenerationStats* stats,
                                   std::vector<std::vector<float>>* prefill_logits = nullptr);

  // The lower-level step a pipeline rank drives: one forward of group g's GPU batches.
  // steps[k] are batch k's sequences (tokens are read only by a slice with the embedding);
  // lengths[k][slot] are their cached tokens, which the caller advances afterwards.
  void forward(int64_t group, const std::vector<std::vector<SequenceStep>>& steps,
               const std::vector<std::vector<int64_t>>& lengths);
  // Hidden rows of group g's batch k in packed row order: set before forward() by a slice
  // without the embedding, read after it by a slice without the head.
  void write_hidden(int64_t group, int64_t k, const float* rows, int64_t n_rows);
  void read_hidden(int64_t group, int64_t k, float* rows, int64_t n_rows);
  // Batch k's logits of the last forward(): [sequences, vocab] (slices with the head).
  std::span<const float> logits(int64_t k) const;
  bool has_embed() const;
  bool has_head() const;

  EngineStats stats() const;
  void clear_stats();
  // Chrome trace-event JSON: one track per stream, a span per load, store and compute.
  nlohmann::json trace() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace strata
