// OPT decoder on the CPU in fp32: every weight resident in host memory.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "model/opt_config.h"
#include "model/weight_source.h"

namespace strata {

struct Linear {
  std::vector<float> weight;  // [out, in]
  std::vector<float> bias;    // [out] or empty
  int64_t out = 0;
  int64_t in = 0;
};

struct Norm {
  std::vector<float> gamma;  // empty when not elementwise-affine
  std::vector<float> beta;
};

struct DecoderLayer {
  Norm attn_norm;
  Linear q, k, v, o;
  Norm ffn_norm;
  Linear fc1, fc2;
};

// Keys and values of up to n_slots sequences, each up to capacity tokens, stored without
// padding: slot s holds its own positions [0, length(s)).
class KvCache {
 public:
  KvCache(const OptConfig& config, int64_t n_slots, int64_t capacity);
  float* keys(int64_t layer, int64_t slot) { return data(layer, slot, 0); }
  float* values(int64_t layer, int64_t slot) { return data(layer, slot, 1); }
  int64_t length(int64_t slot) const { return lengths_[slot]; }
  void set_length(int64_t slot, int64_t length) { lengths_[slot] = length; }
  int64_t capacity() const { return capacity_; }
  int64_t n_slots() const { return static_cast<int64_t>(lengths_.size()); }

 private:
  float* data(int64_t layer, int64_t slot, int kv);
  int64_t hidden_;
  int64_t capacity_;
  std::vector<int64_t> lengths_;
  std::vector<float> storage_;  // [layer][slot][k|v][capacity][hidden]
};

// The new tokens of one sequence in a forward step: appended after the slot's cached ones.
struct SequenceStep {
  int64_t slot;
  std::span<const int32_t> tokens;
};

class OptModel {
 public:
  explicit OptModel(const WeightSource& source);

  const OptConfig& config() const { return config_; }

  // Runs the new tokens of every sequence (one packed batch, no padding), appends their keys
  // and values to the cache and writes the logits after each sequence's last new token into
  // logits[i * vocab_size ...].
  void forward(std::span<const SequenceStep> steps, KvCache& cache, float* logits) const;

  // Floating-point operations of a forward step with these new-token counts and cache lengths.
  double forward_flops(std::span<const int64_t> n_new, std::span<const int64_t> n_cached) const;

 private:
  void run_layer(const DecoderLayer& layer, int64_t index, std::span<const SequenceStep> steps,
                 std::span<const int64_t> row_offsets, KvCache& cache, float* hidden,
                 int64_t rows) const;

  // Work buffers kept between steps so the steady state allocates nothing.
  struct Workspace {
    std::vector<float> hidden, words, x, q, k, v, attn, mid, last, projected;
  };
  static float* reserve(std::vector<float>& buffer, int64_t n);

  OptConfig config_;
  mutable Workspace ws_;  // forward() is not reentrant: one model per thread of control
  std::vector<float> embed_tokens_;     // [vocab, word_embed_proj_dim], also the tied lm_head
  std::vector<float> embed_positions_;  // [max_positions + 2, hidden]
  std::vector<float> lm_head_;          // empty when tied
  Linear project_in_, project_out_;     // present when word_embed_proj_dim != hidden_size
  Norm final_norm_;
  std::vector<DecoderLayer> layers_;
};

}  // namespace strata
