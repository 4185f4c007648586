#include "runtime/resident_model.h"

#include "core/error.h"

namespace strata {

KvCache::KvCache(const ModelConfig& config, int64_t n_slots, int64_t capacity)
    : hidden_(config.kv_dim()),
      capacity_(capacity),
      lengths_(static_cast<size_t>(n_slots), 0),
      storage_(static_cast<size_t>(config.n_layers *
                                   KvBlock::numel(n_slots, capacity, config.kv_dim()))) {}

ResidentModel::ResidentModel(const WeightSource& source)
    : config_(source.config()), layouts_(stage_layouts(config_)) {
  for (const auto& layout : layouts_) {
    weights_.emplace_back(static_cast<size_t>(layout.numel));
    read_stage(source, layout, DType::kF32, weights_.back().data());
  }
}

void ResidentModel::forward(std::span<const SequenceStep> steps, KvCache& cache,
                            float* logits) const {
  const int64_t rows =
      pack_rows(config_, steps, cache.lengths(), cache.capacity(), ws_.row_offsets);
  if (hidden_.size() < static_cast<size_t>(rows * config_.hidden_size)) {
    hidden_.resize(static_cast<size_t>(rows * config_.hidden_size));
  }
  const std::span<const int64_t> offsets = ws_.row_offsets;
  embed_forward(config_, weights_.front().data(), steps, cache.lengths(), offsets, hidden_.data(),
                ws_);
  for (int64_t l = 0; l < config_.n_layers; ++l) {
    const size_t stage = static_cast<size_t>(l + 1);
    decoder_forward(config_, layouts_[stage], weights_[stage].data(), steps, offsets,
                    cache.layer(l), hidden_.data(), ws_);
  }
  for (const auto& step : steps) {
    cache.set_length(step.slot, cache.length(step.slot) + static_cast<int64_t>(step.tokens.size()));
  }
  head_forward(config_, layouts_.back(), weights_.back().data(), offsets, hidden_.data(), logits,
               ws_);
}

}  // namespace strata
