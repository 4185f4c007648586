#include "runtime/opt_model.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kernels/cpu/ops.h"

namespace strata {
namespace {

// OPT's learned positions start at index 2 (fairseq's padding offset).
constexpr int64_t kPositionOffset = 2;

std::vector<float> read_f32(const WeightSource& source, const std::string& name, int64_t numel) {
  std::vector<float> data(static_cast<size_t>(numel));
  source.read(name, DType::kF32, data.data());
  return data;
}

Linear read_linear(const WeightSource& source, const std::string& name, int64_t out, int64_t in,
                   bool bias) {
  Linear l;
  l.out = out;
  l.in = in;
  l.weight = read_f32(source, name + ".weight", out * in);
  if (bias) l.bias = read_f32(source, name + ".bias", out);
  return l;
}

Norm read_norm(const WeightSource& source, const std::string& name, int64_t dim, bool affine) {
  if (!affine) return {};
  return {read_f32(source, name + ".weight", dim), read_f32(source, name + ".bias", dim)};
}

void apply_linear(const Linear& l, const float* x, float* y, int64_t rows) {
  cpu::linear(x, l.weight.data(), l.bias.empty() ? nullptr : l.bias.data(), y, rows, l.out, l.in);
}

void apply_norm(const Norm& n, const float* x, float* y, int64_t rows, int64_t dim) {
  cpu::layer_norm(x, n.gamma.empty() ? nullptr : n.gamma.data(),
                  n.beta.empty() ? nullptr : n.beta.data(), y, rows, dim);
}

}  // namespace

KvCache::KvCache(const OptConfig& config, int64_t n_slots, int64_t capacity)
    : hidden_(config.hidden_size),
      capacity_(capacity),
      lengths_(static_cast<size_t>(n_slots), 0),
      storage_(static_cast<size_t>(config.n_layers * n_slots * 2 * capacity * config.hidden_size)) {
}

float* KvCache::data(int64_t layer, int64_t slot, int kv) {
  const int64_t n_slots = static_cast<int64_t>(lengths_.size());
  return storage_.data() + (((layer * n_slots + slot) * 2 + kv) * capacity_) * hidden_;
}

OptModel::OptModel(const WeightSource& source) : config_(source.config()) {
  const OptConfig& c = config_;
  const int64_t h = c.hidden_size;
  embed_tokens_ = read_f32(source, "embed_tokens.weight", c.vocab_size * c.word_embed_proj_dim);
  embed_positions_ = read_f32(source, "embed_positions.weight", (c.max_positions + 2) * h);
  if (c.has_projection()) {
    project_in_ = read_linear(source, "project_in", h, c.word_embed_proj_dim, false);
    project_out_ = read_linear(source, "project_out", c.word_embed_proj_dim, h, false);
  }
  if (c.final_layer_norm) final_norm_ = read_norm(source, "final_layer_norm", h, c.layer_norm_affine);
  if (source.has_separate_lm_head()) {
    lm_head_ = read_f32(source, "lm_head.weight", c.vocab_size * c.word_embed_proj_dim);
  }
  layers_.resize(static_cast<size_t>(c.n_layers));
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    DecoderLayer& l = layers_[static_cast<size_t>(i)];
    l.attn_norm = read_norm(source, p + "self_attn_layer_norm", h, c.layer_norm_affine);
    l.q = read_linear(source, p + "self_attn.q_proj", h, h, c.enable_bias);
    l.k = read_linear(source, p + "self_attn.k_proj", h, h, c.enable_bias);
    l.v = read_linear(source, p + "self_attn.v_proj", h, h, c.enable_bias);
    l.o = read_linear(source, p + "self_attn.out_proj", h, h, c.enable_bias);
    l.ffn_norm = read_norm(source, p + "final_layer_norm", h, c.layer_norm_affine);
    l.fc1 = read_linear(source, p + "fc1", c.ffn_dim, h, c.enable_bias);
    l.fc2 = read_linear(source, p + "fc2", h, c.ffn_dim, c.enable_bias);
  }
}

float* OptModel::reserve(std::vector<float>& buffer, int64_t n) {
  if (buffer.size() < static_cast<size_t>(n)) buffer.resize(static_cast<size_t>(n));
  return buffer.data();
}

void OptModel::forward(std::span<const SequenceStep> steps, KvCache& cache, float* logits) const {
  const OptConfig& c = config_;
  const int64_t h = c.hidden_size;
  const int64_t e = c.word_embed_proj_dim;
  std::vector<int64_t> row_offsets(steps.size() + 1, 0);
  for (size_t s = 0; s < steps.size(); ++s) {
    const int64_t start = cache.length(steps[s].slot);
    const int64_t n = static_cast<int64_t>(steps[s].tokens.size());
    STRATA_CHECK(n > 0, "a sequence step needs at least one token");
    STRATA_CHECK(start + n <= cache.capacity(), "KV cache slot overflow");
    STRATA_CHECK(start + n <= c.max_positions, "position past max_position_embeddings");
    row_offsets[s + 1] = row_offsets[s] + n;
  }
  const int64_t rows = row_offsets.back();

  // Token embeddings (through project_in when the widths differ) plus learned positions.
  float* hidden = reserve(ws_.hidden, rows * h);
  float* words = c.has_projection() ? reserve(ws_.words, rows * e) : hidden;
  for (size_t s = 0; s < steps.size(); ++s) {
    for (size_t i = 0; i < steps[s].tokens.size(); ++i) {
      const int32_t token = steps[s].tokens[i];
      STRATA_CHECK(token >= 0 && token < c.vocab_size, "token id ", token, " out of range");
      std::memcpy(words + (row_offsets[s] + static_cast<int64_t>(i)) * e,
                  &embed_tokens_[static_cast<size_t>(token * e)], static_cast<size_t>(e) * 4);
    }
  }
  if (c.has_projection()) apply_linear(project_in_, words, hidden, rows);
  for (size_t s = 0; s < steps.size(); ++s) {
    const int64_t start = cache.length(steps[s].slot);
    for (size_t i = 0; i < steps[s].tokens.size(); ++i) {
      const int64_t pos = start + static_cast<int64_t>(i) + kPositionOffset;
      cpu::add_inplace(hidden + (row_offsets[s] + static_cast<int64_t>(i)) * h,
                       &embed_positions_[static_cast<size_t>(pos * h)], h);
    }
  }

  for (int64_t l = 0; l < c.n_layers; ++l) {
    run_layer(layers_[static_cast<size_t>(l)], l, steps, row_offsets, cache, hidden, rows);
  }
  for (const auto& step : steps) {
    cache.set_length(step.slot, cache.length(step.slot) + static_cast<int64_t>(step.tokens.size()));
  }

  // Only each sequence's last row needs logits.
  const int64_t n_seq = static_cast<int64_t>(steps.size());
  float* last = reserve(ws_.last, n_seq * h);
  for (int64_t s = 0; s < n_seq; ++s) {
    std::memcpy(last + s * h, hidden + (row_offsets[s + 1] - 1) * h, static_cast<size_t>(h) * 4);
  }
  if (c.final_layer_norm) apply_norm(final_norm_, last, last, n_seq, h);
  const float* head_in = last;
  if (c.has_projection()) {
    float* projected = reserve(ws_.projected, n_seq * e);
    apply_linear(project_out_, last, projected, n_seq);
    head_in = projected;
  }
  const float* head = lm_head_.empty() ? embed_tokens_.data() : lm_head_.data();
  cpu::linear(head_in, head, nullptr, logits, n_seq, c.vocab_size, e);
}

void OptModel::run_layer(const DecoderLayer& layer, int64_t index,
                         std::span<const SequenceStep> steps, std::span<const int64_t> row_offsets,
                         KvCache& cache, float* hidden, int64_t rows) const {
  const OptConfig& c = config_;
  const int64_t h = c.hidden_size;
  float* x = reserve(ws_.x, rows * h);
  float* q = reserve(ws_.q, rows * h);
  float* k = reserve(ws_.k, rows * h);
  float* v = reserve(ws_.v, rows * h);
  float* attn = reserve(ws_.attn, rows * h);
  float* mid = reserve(ws_.mid, rows * c.ffn_dim);

  // Self-attention block.
  const float* attn_in = hidden;
  if (c.pre_layer_norm) {
    apply_norm(layer.attn_norm, hidden, x, rows, h);
    attn_in = x;
  }
  apply_linear(layer.q, attn_in, q, rows);
  cpu::scale_inplace(q, 1.0f / std::sqrt(static_cast<float>(c.head_dim())), rows * h);
  apply_linear(layer.k, attn_in, k, rows);
  apply_linear(layer.v, attn_in, v, rows);
  for (size_t s = 0; s < steps.size(); ++s) {
    const int64_t slot = steps[s].slot;
    const int64_t start = cache.length(slot);
    const int64_t n_new = row_offsets[s + 1] - row_offsets[s];
    float* keys = cache.keys(index, slot);
    float* values = cache.values(index, slot);
    const int64_t row0 = row_offsets[s] * h;
    std::memcpy(keys + start * h, k + row0, static_cast<size_t>(n_new * h) * 4);
    std::memcpy(values + start * h, v + row0, static_cast<size_t>(n_new * h) * 4);
    cpu::attention(q + row0, h, keys, values, h, attn + row0, start, n_new, c.n_heads,
                   c.head_dim());
  }
  apply_linear(layer.o, attn, x, rows);
  cpu::add_inplace(hidden, x, rows * h);
  if (!c.pre_layer_norm) apply_norm(layer.attn_norm, hidden, hidden, rows, h);

  // Feed-forward block.
  const float* ffn_in = hidden;
  if (c.pre_layer_norm) {
    apply_norm(layer.ffn_norm, hidden, x, rows, h);
    ffn_in = x;
  }
  apply_linear(layer.fc1, ffn_in, mid, rows);
  if (c.activation == Activation::kRelu) {
    cpu::relu(mid, rows * c.ffn_dim);
  } else {
    cpu::gelu(mid, rows * c.ffn_dim);
  }
  apply_linear(layer.fc2, mid, x, rows);
  cpu::add_inplace(hidden, x, rows * h);
  if (!c.pre_layer_norm) apply_norm(layer.ffn_norm, hidden, hidden, rows, h);
}

double OptModel::forward_flops(std::span<const int64_t> n_new,
                               std::span<const int64_t> n_cached) const {
  const OptConfig& c = config_;
  const double h = static_cast<double>(c.hidden_size);
  double rows = 0, attn = 0;
  for (size_t s = 0; s < n_new.size(); ++s) {
    const double nn = static_cast<double>(n_new[s]);
    const double start = static_cast<double>(n_cached[s]);
    rows += nn;
    // Scores and weighted values over the causal keys: 2 GEMMs of h columns each.
    attn += 2.0 * 2.0 * h * (nn * start + nn * (nn + 1) / 2);
  }
  const double per_row_layer = 2.0 * (4 * h * h + 2 * h * static_cast<double>(c.ffn_dim));
  double flops = static_cast<double>(c.n_layers) * (rows * per_row_layer + attn);
  const double e = static_cast<double>(c.word_embed_proj_dim);
  const double seqs = static_cast<double>(n_new.size());
  flops += seqs * 2.0 * e * static_cast<double>(c.vocab_size);  // lm_head on the last rows
  if (c.has_projection()) flops += 2.0 * h * e * (rows + seqs);
  return flops;
}

}  // namespace strata
