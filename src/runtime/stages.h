// A model as a list of stages (embedding, decoder layers, head), each with its weights in one flat
// buffer: the unit that is placed on tiers, loaded and computed. The compute functions take
// the fp32 form of that buffer, so resident and offloaded runs share every line of math.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "model/model_config.h"
#include "model/weight_source.h"
#include "runtime/policy.h"

namespace strata {

// A decoder layer is one stage, or two (attention, MLP) when the policy's sep_layer asks for
// finer loads, as FlexGen's does.
enum class StageKind { kEmbed, kDecoder, kAttention, kMlp, kHead };
inline bool stage_has_cache(StageKind kind) {
  return kind == StageKind::kDecoder || kind == StageKind::kAttention;
}

struct StageTensor {
  std::string name;  // as WeightSource::read takes it
  int64_t offset;    // in elements, within the stage buffer
  int64_t numel;
  Shape shape;  // [out, in] for a linear layer's weight
};

struct StageLayout {
  StageKind kind;
  int64_t layer = -1;  // decoder index, -1 for embed / head
  std::vector<StageTensor> tensors;
  int64_t numel = 0;
  const StageTensor* find(const std::string& suffix) const;  // by name suffix, or null
};

// Embed, decoder 0 .. n-1 (each split in attention and MLP when sep_layer), head. The head
// carries its own lm_head (a copy of embed_tokens when tied), so each stage can live on its own
// tier.
std::vector<StageLayout> stage_layouts(const ModelConfig& config, bool sep_layer = false);

// Reads a stage's tensors, converted to dtype, into dst (layout.numel elements).
void read_stage(const WeightSource& source, const StageLayout& layout, DType dtype, void* dst);

// The new tokens of one sequence in a forward step: appended after the slot's cached ones.
struct SequenceStep {
  int64_t slot;
  std::span<const int32_t> tokens;
};

// Keys and values of one decoder layer for a block of slots: slot s holds keys then values,
// each [capacity, hidden], positions [0, length(s)) valid; hidden is the config's kv_dim().
// Lengths are owned by the caller.
struct KvBlock {
  float* base = nullptr;
  int64_t capacity = 0;
  int64_t hidden = 0;
  std::span<const int64_t> lengths;
  float* keys(int64_t slot) const { return base + slot * 2 * capacity * hidden; }
  float* values(int64_t slot) const { return keys(slot) + capacity * hidden; }
  static int64_t numel(int64_t n_slots, int64_t capacity, int64_t hidden) {
    return n_slots * 2 * capacity * hidden;
  }
};

// Work buffers kept between steps so the steady state allocates nothing.
struct Workspace {
  std::vector<float> words, x, q, k, v, attn, mid, last, projected;
  std::vector<int64_t> row_offsets, positions;
  std::vector<float> inv_freq;  // rotary frequencies, filled on first use
};

// Row offsets of each sequence in the packed batch; checks capacity and positions.
int64_t pack_rows(const ModelConfig& config, std::span<const SequenceStep> steps,
                  std::span<const int64_t> lengths, int64_t capacity,
                  std::vector<int64_t>& row_offsets);

void embed_forward(const ModelConfig& config, const float* weights,
                   std::span<const SequenceStep> steps, std::span<const int64_t> lengths,
                   std::span<const int64_t> row_offsets, float* hidden, Workspace& ws);
// A decoder, attention or MLP stage, in place on hidden; kv is used by the first two. Linear
// layers with an alpha > 0 run split (cpu::linear_split); a step of one new token per sequence
// takes the decode alphas, any other the prefill ones.
void decoder_forward(const ModelConfig& config, const StageLayout& layout, const float* weights,
                     std::span<const SequenceStep> steps, std::span<const int64_t> row_offsets,
                     const KvBlock& kv, float* hidden, Workspace& ws,
                     const HeteGenAlpha& alpha = {}, bool blocked = false);
// Logits after each sequence's last row into logits[i * vocab_size ...].
void head_forward(const ModelConfig& config, const StageLayout& layout, const float* weights,
                  std::span<const int64_t> row_offsets, const float* hidden, float* logits,
                  Workspace& ws, bool blocked = false);

// Rewrites a stage's linear weights that cpu::can_block_weight allows into the GEMM library's
// layout, in place, for a stage that stays put all run; the forwards above then take
// blocked = true. Returns whether the stage's forward reads blocked weights (not the embedding).
bool block_linear_weights(const StageLayout& layout, float* weights);

// Floating-point operations of a forward step with these new-token counts and cache lengths.
double forward_flops(const ModelConfig& config, std::span<const int64_t> n_new,
                     std::span<const int64_t> n_cached);

// Elements such a step reads at least: every linear weight once and each sequence's cache rows
// in every layer (embedding rows and activations left out). A decode step's weights do not fit
// in a cache, so this over the read rate of memory is a floor on its time.
double forward_read_elements(const ModelConfig& config, std::span<const int64_t> n_new,
                             std::span<const int64_t> n_cached);

}  // namespace strata
