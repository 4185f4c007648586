// A model with every stage resident in host memory in fp32: the simplest engine, and the reference
// every offloading policy must reproduce.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "runtime/stages.h"

namespace strata {

// Keys and values of up to n_slots sequences for every layer, each up to capacity tokens,
// stored without padding.
class KvCache {
 public:
  KvCache(const ModelConfig& config, int64_t n_slots, int64_t capacity);
  KvBlock layer(int64_t layer) {
    return {storage_.data() + layer * KvBlock::numel(n_slots(), capacity_, hidden_), capacity_,
            hidden_, lengths_};
  }
  int64_t length(int64_t slot) const { return lengths_[static_cast<size_t>(slot)]; }
  std::span<const int64_t> lengths() const { return lengths_; }
  void set_length(int64_t slot, int64_t length) { lengths_[static_cast<size_t>(slot)] = length; }
  int64_t capacity() const { return capacity_; }
  int64_t n_slots() const { return static_cast<int64_t>(lengths_.size()); }

 private:
  int64_t hidden_;
  int64_t capacity_;
  std::vector<int64_t> lengths_;
  std::vector<float> storage_;
};

class ResidentModel {
 public:
  explicit ResidentModel(const WeightSource& source);

  const ModelConfig& config() const { return config_; }

  // Runs the new tokens of every sequence (one packed batch, no padding), appends their keys
  // and values to the cache and writes the logits after each sequence's last new token into
  // logits[i * vocab_size ...]. Not reentrant: it reuses one workspace.
  void forward(std::span<const SequenceStep> steps, KvCache& cache, float* logits) const;

  double forward_flops(std::span<const int64_t> n_new, std::span<const int64_t> n_cached) const {
    return strata::forward_flops(config_, n_new, n_cached);
  }

 private:
  ModelConfig config_;
  std::vector<StageLayout> layouts_;
  std::vector<std::vector<float>> weights_;  // one fp32 buffer per stage
  mutable Workspace ws_;
  mutable std::vector<float> hidden_;
};

}  // namespace strata
