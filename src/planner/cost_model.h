// The planner's cost model: pure functions of the model shape, the workload, the hardware
// profile and the placement fractions. As in FlexGen, a stage's step takes the longest of its
// streams (load, compute, store), each a sum of transfers and computations, and every term is
// affine in the nine placement fractions, so the same terms feed the LP and the predictions.
//
// Two machines are modelled. With a GPU: PCIe and disk links, GPU GEMM and attention, decode
// attention on the CPU when cpu_cache_compute asks. Without one (the CPU backend): the "GPU" tier
// is host memory holding fp32 weights, offloaded weights are read from disk on the load stream and
// expanded fp16 -> fp32 on the compute stream once per stage per token step, and the KV cache and
// activations are fp32 on every tier, moved by memcpy (and O_DIRECT when on disk).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "model/model_config.h"
#include "planner/hardware_profile.h"
#include "runtime/policy.h"

namespace strata {

// The placement fractions, in the LP's column order.
enum PlacementVar : int { kWg, kWc, kWd, kCg, kCc, kCd, kHg, kHc, kHd };
inline constexpr int kNumPlacementVars = 9;

struct Placement {
  std::array<double, kNumPlacementVars> f{};
  static Placement of(const Policy& policy);
  // Writes the fractions as the policy's percentages.
  void apply_to(Policy& policy) const;
};

// constant + sum(coef[i] * f[i]): seconds or bytes.
struct Affine {
  double constant = 0;
  std::array<double, kNumPlacementVars> coef{};
  double at(const Placement& p) const;
  Affine& add(int var, double c) {
    coef[static_cast<size_t>(var)] += c;
    return *this;
  }
  Affine& operator+=(const Affine& o);
};

// One stream's busy time in a stage step, as named parts (to say what binds).
struct CostTerm {
  std::string stream;  // "load", "compute", "store"
  std::vector<std::pair<std::string, Affine>> parts;
  Affine seconds() const;
};

enum class Phase { kPrefill, kDecode };
const char* phase_name(Phase phase);

// A kind of stage in a phase: `repeats` steps (stages of the kind x token steps), each over all
// GPU batches and taking the longest of its terms.
struct StageCost {
  std::string stage;  // "embed", "decoder", "attention", "mlp", "head"
  Phase phase;
  double repeats = 0;
  std::vector<CostTerm> terms;
};

// What besides the placement fractions fixes the costs.
struct CostShape {
  int64_t prompt_len = 0;
  int64_t gen_len = 0;
  int64_t gpu_batch_size = 1;
  int64_t num_gpu_batches = 1;
  bool sep_layer = true;
  bool cpu_cache_compute = false;
  bool compress_weight = false;
  bool compress_cache = false;
  HeteGenAlpha hetegen;  // the split of CPU-tier weights' linear layers (GPU nodes)
  int64_t block() const { return gpu_batch_size * num_gpu_batches; }
  static CostShape of(const Policy& policy, int64_t prompt_len, int64_t gen_len);
};

// FlexGen's 4-bit group-wise format: 4 bits per value and an fp16 (scale, min) pair per 64.
inline constexpr double kCompressedBytesPerElement = 0.5 + 4.0 / 64.0;

// HeteGen's balance for linear layers whose weights live on the CPU tier: the CPU computes alpha
// of the output columns from host memory while the rest cross PCIe and run on the GPU. Seconds
// of the whole layer (all columns) on each side, for one stage step over n_batches GPU batches
// of `rows` rows each: the weights cross once, both sides compute every batch.
struct SplitTimes {
  double cpu_s = 0;   // max(FLOPs / CPU GEMM rate at `rows`, weight bytes / host memory rate)
  double pcie_s = 0;  // weight bytes / h2d bandwidth; 0 when the weights are on the GPU
  double gpu_s = 0;   // FLOPs / GPU GEMM rate of the phase
};
SplitTimes split_times(const HardwareProfile& hw, Phase phase, double rows, double n_batches,
                       double weight_elements, double weight_bytes_per_element,
                       bool weights_on_cpu);
// alpha * cpu = (1 - alpha) * (pcie + gpu), so alpha = (pcie + gpu) / (cpu + pcie + gpu): it
// falls as rows grow (the CPU's share of FLOPs dominates) and rises on slow links. 0 when nothing
// crosses PCIe (weights on the GPU) or the profile has no CPU GEMM rate.
double balanced_alpha(const SplitTimes& t);
// The split layer's time: max(alpha * cpu, (1 - alpha) * (pcie + gpu)).
double split_seconds(const SplitTimes& t, double alpha);
// Balanced alphas of every linear kind and phase for this shape, weights on the CPU tier. All 0
// without a GPU: on the CPU backend both halves share the same cores.
HeteGenAlpha balanced_alphas(const HardwareProfile& hw, const ModelConfig& config,
                             const CostShape& shape);

std::vector<StageCost> stage_costs(const HardwareProfile& hw, const ModelConfig& config,
                                   const CostShape& shape);

// Bytes per tier as affine functions. `resident_*` says the kind is wholly on the GPU tier
// (fraction fixed at 1), so the engine allocates no working buffers to move it.
struct Residency {
  bool weights = false;
  bool cache = false;
  bool activations = false;
};
struct MemoryModel {
  Affine tier[kNumTiers];
};
MemoryModel memory_model(const HardwareProfile& hw, const ModelConfig& config,
                         const CostShape& shape, const Residency& residency);

struct Prediction {
  double prefill_s = 0;
  double decode_s = 0;
  double prefill_tokens_per_s = 0;
  double decode_tokens_per_s = 0;
  double generation_tokens_per_s = 0;
  std::string prefill_bound;  // e.g. "compute: gemm"
  std::string decode_bound;
};
Prediction predict(const std::vector<StageCost>& costs, const Placement& placement,
                   const CostShape& shape);

}  // namespace strata
