// The engine interface every backend implements: weights, KV cache and activations placed over
// the GPU, CPU and disk tiers by a Policy, run one forward step of a block of GPU batches at a
// time. Generation (sampling, stop rules, lengths) is written once over that step.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <span>
#include <string>
#include <vector>

#include "model/weight_source.h"
#include "runtime/generator.h"
#include "runtime/policy.h"
#include "runtime/stages.h"

namespace strata {

class DiskStore;
struct MemoryPlan;
struct TierCounters;

// Where the engine computes. kCpu: the GPU tier is host memory and every stream a host thread,
// so the schedule runs anywhere; kCuda: device memory, CUDA streams and cuBLAS; kAuto: CUDA when
// a GPU is present and it runs the policy, else the CPU.
enum class Device { kAuto, kCpu, kCuda };
const char* device_name(Device device);
// "cpu", "cuda" or "auto"; an input error naming `flag` otherwise, or when CUDA is asked for and
// this build or machine has none.
Device parse_device(const std::string& text, const std::string& flag);
// GPUs this process can use (0 without a CUDA build, a driver or a device).
int cuda_device_count();

struct EngineOptions {
  Policy policy;
  TierCaps caps;
  std::string offload_dir;  // needed when anything is placed on disk
  // The longest prefill (sizes the activations); the KV cache holds max_prompt_len + gen_len
  // tokens per sequence.
  int64_t max_prompt_len = 0;
  int64_t gen_len = 0;
  // A pipeline rank's slice: decoder layers [first_layer, first_layer + n_layers) (-1: all),
  // with the embedding when it starts at 0 and the head when it reaches the last layer.
  int64_t first_layer = 0;
  int64_t n_layers = -1;
  // Blocks of num_gpu_batches GPU batches, each with its own KV cache, in flight together
  // (one per pipeline stage, so every rank has work).
  int64_t n_groups = 1;
  Device device = Device::kCpu;
  int gpu_index = 0;  // which GPU under kCuda (a rank's local rank on a multi-GPU node)
};

// Empty when the CUDA engine runs `policy` (every model family does), else why not (one line
// naming the field or flag).
std::string cuda_unsupported(const Policy& policy);
// kCpu or kCuda: what make_engine builds for these options.
Device resolved_device(const EngineOptions& options);

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

// What every engine's backend has, bound by the engine once made: stats and accessors read them.
struct EngineParts {
  const ModelConfig* config = nullptr;
  const EngineOptions* options = nullptr;
  const std::vector<StageLayout>* layouts = nullptr;
  const MemoryPlan* plan = nullptr;
  TierCounters* counters = nullptr;
  const DiskStore* disk = nullptr;  // null without a disk tier
};

// An engine: one class, ScheduledEngine<Backend> (runtime/scheduled_engine.h), over the CPU or
// the CUDA backend; the block schedule itself is runtime/schedule.h's.
class Engine {
 public:
  virtual ~Engine() = default;

  const ModelConfig& config() const { return *parts_.config; }
  const EngineOptions& options() const { return *parts_.options; }
  const Policy& policy() const { return options().policy; }

  // Generates for up to gpu_batch_size * num_gpu_batches prompts as one block; GPU batch k holds
  // prompts [k * gpu_batch_size, (k + 1) * gpu_batch_size). Needs the embedding and the head.
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
  virtual void write_hidden(int64_t group, int64_t k, const float* rows, int64_t n_rows) = 0;
  virtual void read_hidden(int64_t group, int64_t k, float* rows, int64_t n_rows) = 0;
  // Batch k's logits of the last forward(): [sequences, vocab] (slices with the head).
  virtual std::span<const float> logits(int64_t k) const = 0;
  bool has_embed() const;
  bool has_head() const;

  EngineStats stats() const;
  void clear_stats();
  // Chrome trace-event JSON: one track per stream, a span per load, store and compute.
  virtual nlohmann::json trace() const = 0;

 protected:
  // One forward of GPU batches [first_batch, first_batch + steps.size()) of all the groups'.
  virtual void run_step(const std::vector<std::vector<SequenceStep>>& steps,
                        const std::vector<std::vector<int64_t>>& lengths, int64_t first_batch) = 0;
  void bind(const EngineParts& parts);
  // Busy seconds of the engine's lanes, and their reset.
  virtual void lane_busy(EngineStats& stats) const = 0;
  virtual void clear_lanes() = 0;

 private:
  EngineParts parts_;
  double wall_s_ = 0;          // in forward(), since the stats were cleared
  double disk_busy_base_ = 0;  // disk busy seconds before the stats were cleared
};

// The engine for options.device: the CPU backend's, or the CUDA backend's on a GPU. A policy the
// device cannot run is an input error naming the field.
std::unique_ptr<Engine> make_engine(const WeightSource& source, const EngineOptions& options);

}  // namespace strata
