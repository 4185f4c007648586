#include "runtime/stages.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/ops.h"

namespace strata {
namespace {

// OPT's learned positions start at index 2 (fairseq's padding offset).
constexpr int64_t kPositionOffset = 2;

float* reserve(std::vector<float>& buffer, int64_t n) {
  if (buffer.size() < static_cast<size_t>(n)) buffer.resize(static_cast<size_t>(n));
  return buffer.data();
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Pointers into a stage buffer by tensor name suffix; null where the model has no such tensor.
struct StageView {
  const StageLayout& layout;
  const float* base;
  bool blocked = false;  // block_linear_weights has rewritten the linear weights
  const float* get(const std::string& suffix) const {
    const StageTensor* t = layout.find(suffix);
    return t ? base + t->offset : nullptr;
  }
};

void linear(const StageView& w, const std::string& name, const float* x, float* y, int64_t rows,
            int64_t out, int64_t in, double alpha = 0) {
  const float* weight = w.get(name + ".weight");
  STRATA_CHECK(weight != nullptr, "stage has no ", name);
  const float* bias = w.get(name + ".bias");
  if (w.blocked && cpu::can_block_weight(out, in)) {
    STRATA_CHECK(cpu::split_column(alpha, out) == 0, name, " is blocked and cannot be split");
    cpu::linear_blocked(x, weight, bias, y, rows, out, in);
    return;
  }
  cpu::linear_split(x, weight, bias, y, rows, out, in, alpha);
}

void norm(const ModelConfig& c, const StageView& w, const std::string& name, const float* x,
          float* y, int64_t rows) {
  const float eps = static_cast<float>(c.norm_eps);
  if (c.rms_norm) {
    const float* weight = w.get(name + ".weight");
    STRATA_CHECK(weight != nullptr, "stage has no ", name);
    cpu::rms_norm(x, weight, y, rows, c.hidden_size, eps);
  } else {
    cpu::layer_norm(x, w.get(name + ".weight"), w.get(name + ".bias"), y, rows, c.hidden_size, eps);
  }
}

// Each packed row's position: its sequence's cached length plus its index among the new tokens.
const int64_t* row_positions(std::span<const SequenceStep> steps,
                             std::span<const int64_t> row_offsets, const KvBlock& kv,
                             Workspace& ws) {
  ws.positions.resize(static_cast<size_t>(row_offsets.back()));
  for (size_t s = 0; s < steps.size(); ++s) {
    const int64_t start = kv.lengths[static_cast<size_t>(steps[s].slot)];
    for (int64_t r = row_offsets[s]; r < row_offsets[s + 1]; ++r) {
      ws.positions[static_cast<size_t>(r)] = start + r - row_offsets[s];
    }
  }
  return ws.positions.data();
}

// Self-attention of the packed rows: appends their keys and values to kv, writes [rows, q_dim].
void attend(const ModelConfig& c, const StageView& w, const LayerNames& n, const std::string& p,
            const float* in, std::span<const SequenceStep> steps,
            std::span<const int64_t> row_offsets, const KvBlock& kv, float* attn, Workspace& ws,
            double alpha) {
  const int64_t h = c.hidden_size, qd = c.q_dim(), kvd = c.kv_dim();
  const int64_t rows = row_offsets.back();
  STRATA_CHECK(kv.hidden == kvd, "KV block of width ", kv.hidden, " for a cache of ", kvd);
  float* q = reserve(ws.q, rows * qd);
  float* k = reserve(ws.k, rows * kvd);
  float* v = reserve(ws.v, rows * kvd);
  linear(w, p + n.q, in, q, rows, qd, h, alpha);
  linear(w, p + n.k, in, k, rows, kvd, h, alpha);
  linear(w, p + n.v, in, v, rows, kvd, h, alpha);
  if (c.rotary) {
    if (ws.inv_freq.empty()) ws.inv_freq = rope_inv_freq(c);
    const int64_t* pos = row_positions(steps, row_offsets, kv, ws);
    cpu::rotary(q, qd, rows, pos, c.n_heads, c.head_dim(), ws.inv_freq.data());
    cpu::rotary(k, kvd, rows, pos, c.kv_heads(), c.head_dim(), ws.inv_freq.data());
  }
  cpu::scale_inplace(q, 1.0f / std::sqrt(static_cast<float>(c.head_dim())), rows * qd);
  int64_t max_new = 0;
  for (size_t s = 0; s + 1 < row_offsets.size(); ++s) {
    max_new = std::max(max_new, row_offsets[s + 1] - row_offsets[s]);
  }
  cpu::for_sequences(static_cast<int64_t>(steps.size()), max_new, [&](int64_t s) {
    const int64_t slot = steps[static_cast<size_t>(s)].slot;
    const int64_t start = kv.lengths[static_cast<size_t>(slot)];
    const int64_t r0 = row_offsets[static_cast<size_t>(s)];
    const int64_t n_new = row_offsets[static_cast<size_t>(s) + 1] - r0;
    float* keys = kv.keys(slot);
    float* values = kv.values(slot);
    std::memcpy(keys + start * kvd, k + r0 * kvd, static_cast<size_t>(n_new * kvd) * 4);
    std::memcpy(values + start * kvd, v + r0 * kvd, static_cast<size_t>(n_new * kvd) * 4);
    cpu::attention(q + r0 * qd, qd, keys, values, kvd, attn + r0 * qd, start, n_new, c.n_heads,
                   c.kv_heads(), c.head_dim());
  });
}

// The MLP of the packed rows into out [rows, hidden].
void feed_forward(const ModelConfig& c, const StageView& w, const LayerNames& n,
                  const std::string& p, const float* in, int64_t rows, float* out, Workspace& ws,
                  const LinearAlphas& a) {
  const int64_t h = c.hidden_size, f = c.ffn_dim;
  float* mid = reserve(ws.mid, rows * c.mlp_width());
  linear(w, p + n.up, in, mid, rows, f, h, a.fc1);
  if (c.gated_mlp) {
    float* gate = mid + rows * f;
    linear(w, p + n.gate, in, gate, rows, f, h, a.fc1);
    cpu::silu_mul(gate, mid, rows * f);
    mid = gate;
  } else if (c.activation == Activation::kRelu) {
    cpu::relu(mid, rows * f);
  } else {
    cpu::gelu(mid, rows * f);
  }
  linear(w, p + n.down, mid, out, rows, h, f, a.fc2);
}

}  // namespace

const StageTensor* StageLayout::find(const std::string& suffix) const {
  for (const auto& t : tensors) {
    if (ends_with(t.name, suffix) &&
        (t.name.size() == suffix.size() || t.name[t.name.size() - suffix.size() - 1] == '.')) {
      return &t;
    }
  }
  return nullptr;
}

bool block_linear_weights(const StageLayout& layout, float* weights) {
  if (layout.kind == StageKind::kEmbed) return false;  // its tables are read by row
  for (const auto& t : layout.tensors) {
    if (t.shape.size() == 2 && cpu::can_block_weight(t.shape[0], t.shape[1])) {
      cpu::block_weight(weights + t.offset, t.shape[0], t.shape[1]);
    }
  }
  return true;
}

std::vector<StageLayout> stage_layouts(const ModelConfig& c, bool sep_layer) {
  auto make = [](StageKind kind, int64_t layer, const std::vector<TensorSpec>& specs) {
    StageLayout s{kind, layer, {}, 0};
    for (const auto& spec : specs) {
      const int64_t n = shape_numel(spec.shape);
      s.tensors.push_back({spec.name, s.numel, n, spec.shape});
      s.numel += n;
    }
    return s;
  };
  const int64_t h = c.hidden_size, e = c.word_embed_proj_dim;
  std::vector<TensorSpec> embed = {{"embed_tokens.weight", {c.vocab_size, e}}};
  if (!c.rotary) embed.push_back({"embed_positions.weight", {c.max_positions + 2, h}});
  if (c.has_projection()) embed.push_back({"project_in.weight", {h, e}});
  std::vector<TensorSpec> head;
  if (c.final_layer_norm && c.layer_norm_affine) {
    head.push_back({c.final_norm_name() + ".weight", {h}});
    if (!c.rms_norm) head.push_back({c.final_norm_name() + ".bias", {h}});
  }
  if (c.has_projection()) head.push_back({"project_out.weight", {e, h}});
  head.push_back({"lm_head.weight", {c.vocab_size, e}});

  const std::string attn_norm = c.layer_names().attn_norm;
  std::vector<StageLayout> stages = {make(StageKind::kEmbed, -1, embed)};
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const auto specs = layer_tensor_specs(c, l);
    if (!sep_layer) {
      stages.push_back(make(StageKind::kDecoder, l, specs));
      continue;
    }
    std::vector<TensorSpec> attention, mlp;
    for (const auto& spec : specs) {
      const bool is_attention = spec.name.find("self_attn") != std::string::npos ||
                                spec.name.find(attn_norm) != std::string::npos;
      (is_attention ? attention : mlp).push_back(spec);
    }
    stages.push_back(make(StageKind::kAttention, l, attention));
    stages.push_back(make(StageKind::kMlp, l, mlp));
  }
  stages.push_back(make(StageKind::kHead, -1, head));
  return stages;
}

void read_stage(const WeightSource& source, const StageLayout& layout, DType dtype, void* dst) {
  auto* bytes = static_cast<uint8_t*>(dst);
  for (const auto& t : layout.tensors) {
    source.read(t.name, dtype, bytes + t.offset * static_cast<int64_t>(dtype_size(dtype)));
  }
}

int64_t pack_rows(const ModelConfig& c, std::span<const SequenceStep> steps,
                  std::span<const int64_t> lengths, int64_t capacity,
                  std::vector<int64_t>& row_offsets) {
  row_offsets.assign(steps.size() + 1, 0);
  for (size_t s = 0; s < steps.size(); ++s) {
    const int64_t start = lengths[static_cast<size_t>(steps[s].slot)];
    const int64_t n = static_cast<int64_t>(steps[s].tokens.size());
    STRATA_CHECK(n > 0, "a sequence step needs at least one token");
    STRATA_CHECK(start + n <= capacity, "KV cache slot overflow");
    STRATA_CHECK(start + n <= c.max_positions, "position past max_position_embeddings");
    row_offsets[s + 1] = row_offsets[s] + n;
  }
  return row_offsets.back();
}

void embed_forward(const ModelConfig& c, const float* weights, std::span<const SequenceStep> steps,
                   std::span<const int64_t> lengths, std::span<const int64_t> row_offsets,
                   float* hidden, Workspace& ws) {
  const int64_t h = c.hidden_size, e = c.word_embed_proj_dim;
  const int64_t rows = row_offsets.back();
  const float* tokens_table = weights;
  const float* positions = weights + c.vocab_size * e;
  float* words = c.has_projection() ? reserve(ws.words, rows * e) : hidden;
  for (size_t s = 0; s < steps.size(); ++s) {
    for (size_t i = 0; i < steps[s].tokens.size(); ++i) {
      const int32_t token = steps[s].tokens[i];
      STRATA_CHECK(token >= 0 && token < c.vocab_size, "token id ", token, " out of range");
      std::memcpy(words + (row_offsets[s] + static_cast<int64_t>(i)) * e, tokens_table + token * e,
                  static_cast<size_t>(e) * 4);
    }
  }
  if (c.rotary) return;  // positions enter in each layer's attention
  if (c.has_projection()) {
    const float* project_in = positions + (c.max_positions + 2) * h;
    cpu::linear(words, project_in, nullptr, hidden, rows, h, e);
  }
  for (size_t s = 0; s < steps.size(); ++s) {
    const int64_t start = lengths[static_cast<size_t>(steps[s].slot)];
    for (size_t i = 0; i < steps[s].tokens.size(); ++i) {
      const int64_t pos = start + static_cast<int64_t>(i) + kPositionOffset;
      cpu::add_inplace(hidden + (row_offsets[s] + static_cast<int64_t>(i)) * h, positions + pos * h,
                       h);
    }
  }
}

void decoder_forward(const ModelConfig& c, const StageLayout& layout, const float* weights,
                     std::span<const SequenceStep> steps, std::span<const int64_t> row_offsets,
                     const KvBlock& kv, float* hidden, Workspace& ws, const HeteGenAlpha& alpha,
                     bool blocked) {
  const StageView w{layout, weights, blocked};
  const LayerNames n = c.layer_names();
  const std::string p = "layers." + std::to_string(layout.layer) + ".";
  const int64_t h = c.hidden_size;
  const int64_t rows = row_offsets.back();
  const bool decode = rows == static_cast<int64_t>(steps.size());
  const LinearAlphas& a = decode ? alpha.decode : alpha.prefill;
  float* x = reserve(ws.x, rows * h);

  // Pre-norm blocks normalise their input; OPT's post-norm ones their output.
  if (layout.kind != StageKind::kMlp) {
    float* attn = reserve(ws.attn, rows * c.q_dim());
    if (c.pre_layer_norm) norm(c, w, p + n.attn_norm, hidden, x, rows);
    attend(c, w, n, p, c.pre_layer_norm ? x : hidden, steps, row_offsets, kv, attn, ws,
           a.attention);
    linear(w, p + n.o, attn, x, rows, h, c.q_dim(), a.attention);
    cpu::add_inplace(hidden, x, rows * h);
    if (!c.pre_layer_norm) norm(c, w, p + n.attn_norm, hidden, hidden, rows);
  }
  if (layout.kind == StageKind::kAttention) return;
  const float* ffn_in = hidden;
  if (c.pre_layer_norm) {
    norm(c, w, p + n.mlp_norm, hidden, x, rows);
    ffn_in = x;
  }
  feed_forward(c, w, n, p, ffn_in, rows, x, ws, a);  // x is read before it is written
  cpu::add_inplace(hidden, x, rows * h);
  if (!c.pre_layer_norm) norm(c, w, p + n.mlp_norm, hidden, hidden, rows);
}

void head_forward(const ModelConfig& c, const StageLayout& layout, const float* weights,
                  std::span<const int64_t> row_offsets, const float* hidden, float* logits,
                  Workspace& ws, bool blocked) {
  const StageView w{layout, weights, blocked};
  const int64_t h = c.hidden_size, e = c.word_embed_proj_dim;
  const int64_t n_seq = static_cast<int64_t>(row_offsets.size()) - 1;
  // Only each sequence's last row needs logits.
  float* last = reserve(ws.last, n_seq * h);
  for (int64_t s = 0; s < n_seq; ++s) {
    std::memcpy(last + s * h, hidden + (row_offsets[s + 1] - 1) * h, static_cast<size_t>(h) * 4);
  }
  if (c.final_layer_norm) norm(c, w, c.final_norm_name(), last, last, n_seq);
  const float* head_in = last;
  if (c.has_projection()) {
    float* projected = reserve(ws.projected, n_seq * e);
    linear(w, "project_out", last, projected, n_seq, e, h);
    head_in = projected;
  }
  linear(w, "lm_head", head_in, logits, n_seq, c.vocab_size, e);
}

double forward_flops(const ModelConfig& c, std::span<const int64_t> n_new,
                     std::span<const int64_t> n_cached) {
  const double h = static_cast<double>(c.hidden_size);
  const double qd = static_cast<double>(c.q_dim()), kvd = static_cast<double>(c.kv_dim());
  double rows = 0, attn = 0;
  for (size_t s = 0; s < n_new.size(); ++s) {
    const double nn = static_cast<double>(n_new[s]);
    const double start = static_cast<double>(n_cached[s]);
    rows += nn;
    // Scores and weighted values over the causal keys: 2 GEMMs of q_dim columns each.
    attn += 2.0 * 2.0 * qd * (nn * start + nn * (nn + 1) / 2);
  }
  const double mlp_linears = c.gated_mlp ? 3 : 2;
  const double per_row_layer =
      2.0 * (2 * h * qd + 2 * h * kvd + mlp_linears * h * static_cast<double>(c.ffn_dim));
  double flops = static_cast<double>(c.n_layers) * (rows * per_row_layer + attn);
  const double e = static_cast<double>(c.word_embed_proj_dim);
  const double seqs = static_cast<double>(n_new.size());
  flops += seqs * 2.0 * e * static_cast<double>(c.vocab_size);  // lm_head on the last rows
  if (c.has_projection()) flops += 2.0 * h * e * (rows + seqs);
  return flops;
}

double forward_read_elements(const ModelConfig& c, std::span<const int64_t> n_new,
                             std::span<const int64_t> n_cached) {
  const double h = static_cast<double>(c.hidden_size), f = static_cast<double>(c.ffn_dim);
  const double qd = static_cast<double>(c.q_dim()), kvd = static_cast<double>(c.kv_dim());
  const double mlp_linears = c.gated_mlp ? 3 : 2;
  double keys = 0;  // cache rows each layer reads, the new ones included
  for (size_t s = 0; s < n_new.size(); ++s) keys += static_cast<double>(n_cached[s] + n_new[s]);
  const double layer_weights = 2 * h * qd + 2 * h * kvd + mlp_linears * h * f;
  const double e = static_cast<double>(c.word_embed_proj_dim);
  double elements = static_cast<double>(c.n_layers) * (layer_weights + keys * 2 * kvd);
  elements += e * static_cast<double>(c.vocab_size);  // lm_head
  if (c.has_projection()) elements += 2 * h * e;
  return elements;
}

}  // namespace strata
