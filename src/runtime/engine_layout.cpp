#include "runtime/engine_layout.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"
#include "kernels/quant_format.h"
#include "runtime/packed_stage.h"

namespace strata {

StoredFormat weight_format(const ModelConfig& c, const Policy& p, Device device) {
  if (p.compress_weight) return StoredFormat::bytes();
  return device == Device::kCuda ? StoredFormat::plain(DType::kF16, DType::kF16)
                                 : StoredFormat::plain(c.dtype);
}
int64_t cache_group_len(const ModelConfig& c) {
  const int64_t head = c.head_dim(), row = c.kv_dim();
  for (int64_t len = std::min<int64_t>(row, kQuantGroup); len > 1; --len) {
    if (row % len == 0 && (head % len == 0 || len % head == 0)) return len;
  }
  return 1;
}
StoredFormat cache_format(const ModelConfig& c, const Policy& p, Device device) {
  if (p.compress_cache) return StoredFormat::quantized(p.compress_bits, cache_group_len(c));
  return device == Device::kCuda ? StoredFormat::plain(DType::kF16, DType::kF16)
                                 : StoredFormat::plain(DType::kF32);
}
StoredFormat activation_format(Device device) {
  return device == Device::kCuda ? StoredFormat::plain(DType::kF16, DType::kF16)
                                 : StoredFormat::plain(DType::kF32);
}
int64_t stage_numel(const StageLayout& l, const Policy& p) {
  return p.compress_weight ? static_cast<int64_t>(PackedStage::of(l, p.compress_bits).bytes)
                           : l.numel;
}
bool weights_resident(const Policy& p) {
  return p.weights.gpu_percent >= 100 && !p.compress_weight;
}
bool cache_resident(const Policy& p) {
  return p.cache.gpu_percent >= 100 && !p.compress_cache;
}

Shapes shapes_of(const ModelConfig& c, const EngineOptions& o,
                 const std::vector<StageLayout>& layouts) {
  Shapes s;
  const int64_t gbs = o.policy.gpu_batch_size;
  s.capacity = o.max_prompt_len + o.gen_len;
  s.act_rows = gbs * o.max_prompt_len;
  s.kv_numel = KvBlock::numel(gbs, s.capacity, c.kv_dim());
  s.act_numel = s.act_rows * c.hidden_size;
  s.max_stage_numel = 0;
  for (const auto& l : layouts) s.max_stage_numel = std::max(s.max_stage_numel, l.numel);
  // Workspace: x, q, k, v, attn, mid and words per row; last and projected per sequence.
  s.workspace_numel = s.act_rows * (c.hidden_size + 2 * c.q_dim() + 2 * c.kv_dim() + c.mlp_width() +
                                    c.word_embed_proj_dim) +
                      gbs * (c.hidden_size + c.word_embed_proj_dim);
  return s;
}

std::vector<StageLayout> slice_layouts(const ModelConfig& c, const EngineOptions& o) {
  const int64_t first = o.first_layer;
  const int64_t n = o.n_layers < 0 ? c.n_layers - first : o.n_layers;
  STRATA_CHECK(first >= 0 && n >= 1 && first + n <= c.n_layers, "layer slice [", first, ", ",
               first + n, ") outside the model's ", c.n_layers, " layers");
  std::vector<StageLayout> out;
  for (auto& l : stage_layouts(c, o.policy.sep_layer)) {
    const bool keep = l.kind == StageKind::kEmbed  ? first == 0
                      : l.kind == StageKind::kHead ? first + n == c.n_layers
                                                   : l.layer >= first && l.layer < first + n;
    if (keep) out.push_back(std::move(l));
  }
  return out;
}

int64_t slice_layer_count(const ModelConfig& c, const EngineOptions& o) {
  return o.n_layers < 0 ? c.n_layers - o.first_layer : o.n_layers;
}

}  // namespace strata
