// The device stage runner: the launch sequence of runtime/stages.cpp's stage math over the
// kernels of ops.h. A .cpp (not .cu) because it includes the engine's C++20 headers and needs no
// device code; the kernels it adds live in stage_kernels.cu.
#include "runtime/cuda/stage_runner.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <string>

#include "core/error.h"
#include "runtime/cuda/runner_layout.h"

namespace strata::cuda {
namespace {

// StageLayout::find's rule (a whole dotted suffix), kept here so strata_cuda needs nothing from
// strata_core at link time.
const StageTensor* find_tensor(const StageLayout& layout, const std::string& suffix) {
  for (const auto& t : layout.tensors) {
    const size_t n = t.name.size(), m = suffix.size();
    if (n >= m && t.name.compare(n - m, m, suffix) == 0 && (n == m || t.name[n - m - 1] == '.')) {
      return &t;
    }
  }
  return nullptr;
}

// A tensor of the stage buffer on the device, checked against the shape the math assumes; null
// where the model has none (no bias, no affine layer norm) and `required` is false.
const Fp16* tensor(const StageLayout& layout, const Fp16* weights, const std::string& name,
                   const Shape& shape, bool required) {
  const StageTensor* t = find_tensor(layout, name);
  STRATA_CHECK(t || !required, "stage has no ", name);
  if (!t) return nullptr;
  STRATA_CHECK(t->shape == shape, "tensor ", name, " has an unexpected shape");
  return weights + t->offset;
}

// fc1's fused activation; SwiGLU's silu comes after the gate and up GEMMs.
cuda::Activation device_activation(const ModelConfig& c) {
  if (c.gated_mlp) return cuda::Activation::kNone;
  return c.activation == strata::Activation::kRelu ? cuda::Activation::kRelu
                                                   : cuda::Activation::kGelu;
}

}  // namespace

StageRunner::StageRunner(const ModelConfig& config, const StageRunnerLimits& limits,
                         DevicePool& pool, PinnedArena& pinned, Blas& blas)
    : config_(config), limits_(limits), blas_(&blas) {
  STRATA_CHECK(
      limits.max_rows > 0 && limits.max_seqs > 0 && limits.capacity > 0 && limits.batches > 0,
      "stage runner limits must be positive");
  STRATA_CHECK(limits.max_rows <= INT_MAX && limits.capacity <= INT_MAX,
               "stage runner limits past int32 row indices");
  const ScratchLayout s = scratch_layout(config, limits);
  memory_ = pool.allocate(s.total);
  auto* base = memory_.as<char>();
  const auto at = [base](size_t offset) { return reinterpret_cast<Fp16*>(base + offset); };
  words_ = config.has_projection() ? at(s.words) : nullptr;
  x_ = at(s.x);
  q_ = at(s.q);
  k_ = at(s.k);
  v_ = at(s.v);
  attn_ = at(s.attn);
  mid_ = at(s.mid);
  last_ = at(s.last);
  projected_ = at(s.projected);
  decode_workspace_ = base + s.decode;
  decode_workspace_bytes_ = s.decode_bytes;
  const int64_t meta_total = meta_layout(limits).total;
  host_meta_ = pinned.allocate(host_meta_bytes(config, limits));
  batches_.resize(static_cast<size_t>(limits.batches));
  for (int64_t k = 0; k < limits.batches; ++k) {
    batches_[static_cast<size_t>(k)].device =
        reinterpret_cast<int32_t*>(base + s.meta) + k * meta_total;
    batches_[static_cast<size_t>(k)].host = host_meta_.as<int32_t>() + k * meta_total;
  }
  if (config.rotary) {
    inv_freq_ = reinterpret_cast<float*>(base + s.inv_freq);
    host_inv_freq_ = rope_inv_freq(config);
  }
}

int64_t StageRunner::begin_step(int64_t k, std::span<const SequenceStep> steps,
                                std::span<const int64_t> lengths, const Stream& stream) {
  const MetaLayout m = meta_layout(limits_);
  const int64_t n_seqs = static_cast<int64_t>(steps.size());
  STRATA_CHECK(k >= 0 && k < limits_.batches, "GPU batch ", k, " (runner sized for ",
               limits_.batches, ")");
  STRATA_CHECK(n_seqs > 0 && n_seqs <= limits_.max_seqs, "a step of ", n_seqs,
               " sequences (runner sized for ", limits_.max_seqs, ")");
  BatchStep& b = batches_[static_cast<size_t>(k)];
  b.uploaded.synchronize();  // the last step's copy out of this pinned slot
  int32_t* meta = b.host;
  int64_t rows = 0, max_new = 0, max_len = 0;
  bool decode_only = true;
  meta[m.row_offsets] = 0;
  for (int64_t s = 0; s < n_seqs; ++s) {
    const SequenceStep& step = steps[static_cast<size_t>(s)];
    STRATA_CHECK(step.slot >= 0 && step.slot < static_cast<int64_t>(lengths.size()), "slot ",
                 step.slot, " has no cached length");
    const int64_t start = lengths[static_cast<size_t>(step.slot)];
    const int64_t n = static_cast<int64_t>(step.tokens.size());
    STRATA_CHECK(n > 0, "a sequence step needs at least one token");
    STRATA_CHECK(start + n <= limits_.capacity, "KV cache slot overflow");
    STRATA_CHECK(start + n <= config_.max_positions, "position past max_position_embeddings");
    STRATA_CHECK(rows + n <= limits_.max_rows, "a step of more than ", limits_.max_rows, " rows");
    for (int64_t i = 0; i < n; ++i) {
      const int32_t token = step.tokens[static_cast<size_t>(i)];
      STRATA_CHECK(token >= 0 && token < config_.vocab_size, "token id ", token, " out of range");
      meta[m.tokens + rows + i] = token;
    }
    rows += n;
    meta[m.row_offsets + s + 1] = static_cast<int32_t>(rows);
    meta[m.starts + s] = static_cast<int32_t>(start);
    meta[m.slots + s] = static_cast<int32_t>(step.slot);
    meta[m.lengths + s] = static_cast<int32_t>(start + n);
    meta[m.last_rows + s] = static_cast<int32_t>(rows - 1);
    for (int64_t i = 0; i < n; ++i)
      meta[m.positions + rows - n + i] = static_cast<int32_t>(start + i);
    max_new = std::max(max_new, n);
    max_len = std::max(max_len, start + n);
    decode_only = decode_only && n == 1;
  }
  copy_h2d(b.device, meta, static_cast<size_t>(m.total) * sizeof(int32_t), stream);
  b.uploaded.record(stream);
  if (inv_freq_ && !inv_freq_uploaded_) {
    // Once, from the pinned slot's tail, which nothing else writes.
    float* staged = reinterpret_cast<float*>(host_meta_.as<int32_t>() + limits_.batches * m.total);
    std::copy(host_inv_freq_.begin(), host_inv_freq_.end(), staged);
    copy_h2d(inv_freq_, staged, host_inv_freq_.size() * sizeof(float), stream);
    inv_freq_uploaded_ = true;
  }
  b.rows = rows;
  b.n_seqs = n_seqs;
  b.max_new = max_new;
  b.max_len = max_len;
  b.decode_only = decode_only;
  use_batch(k);
  return rows;
}

void StageRunner::use_batch(int64_t k) {
  STRATA_CHECK(k >= 0 && k < limits_.batches, "GPU batch ", k, " (runner sized for ",
               limits_.batches, ")");
  const BatchStep& b = batches_[static_cast<size_t>(k)];
  STRATA_CHECK(b.rows > 0, "GPU batch ", k, " was not begun");
  step_ = &b;
}

const StageRunner::BatchStep& StageRunner::step() const {
  STRATA_CHECK(step_, "begin_step before the stages");
  return *step_;
}

void StageRunner::embed(const StageLayout& layout, const Fp16* weights, Fp16* hidden,
                        const Stream& stream) {
  STRATA_CHECK(layout.kind == StageKind::kEmbed, "not an embedding stage");
  const MetaLayout m = meta_layout(limits_);
  const ModelConfig& c = config_;
  const int64_t h = c.hidden_size, e = c.word_embed_proj_dim;
  const Fp16* tokens = tensor(layout, weights, "embed_tokens.weight", {c.vocab_size, e}, true);
  if (c.rotary) {  // positions enter in each layer's attention
    gather_rows(tokens, meta(m.tokens), step().rows, h, hidden, stream);
    return;
  }
  const Fp16* positions =
      tensor(layout, weights, "embed_positions.weight", {c.max_positions + 2, h}, true);
  if (!c.has_projection()) {
    cuda::embed(tokens, positions, meta(m.tokens), meta(m.row_offsets), meta(m.starts), nullptr,
                step().n_seqs, step().rows, h, hidden, stream);
    return;
  }
  // OPT-350m: words are e wide, projected to h, and positions added after the projection.
  const Fp16* project_in = tensor(layout, weights, "project_in.weight", {h, e}, true);
  gather_rows(tokens, meta(m.tokens), step().rows, e, words_, stream);
  linear(*blas_, words_, project_in, nullptr, hidden, step().rows, h, e, Activation::kNone, stream);
  cuda::embed(nullptr, positions, meta(m.tokens), meta(m.row_offsets), meta(m.starts), nullptr,
              step().n_seqs, step().rows, h, hidden, stream);
}

void StageRunner::check_decoder(const StageLayout& layout) const {
  STRATA_CHECK(layout.kind == StageKind::kDecoder || layout.kind == StageKind::kAttention ||
                   layout.kind == StageKind::kMlp,
               "not a decoder stage");
}

void StageRunner::norm(const StageLayout& layout, const Fp16* weights, const std::string& name,
                       const Fp16* in, Fp16* out, const Stream& stream) {
  norm_rows(layout, weights, name, in, out, step().rows, stream);
}

void StageRunner::norm_rows(const StageLayout& layout, const Fp16* weights, const std::string& name,
                            const Fp16* in, Fp16* out, int64_t rows, const Stream& stream) {
  const int64_t h = config_.hidden_size;
  const float eps = static_cast<float>(config_.norm_eps);
  const Fp16* gamma = tensor(layout, weights, name + ".weight", {h}, config_.rms_norm);
  if (config_.rms_norm) {
    rms_norm(in, gamma, out, rows, h, eps, stream);
    return;
  }
  const Fp16* beta = tensor(layout, weights, name + ".bias", {h}, false);
  layer_norm(in, gamma, beta, out, rows, h, eps, stream);
}

void StageRunner::set_host_linears(HostLinearPlan plan, DevicePool& pool, PinnedArena& pinned) {
  const size_t widest = widest_linear(config_);
  const size_t part = static_cast<size_t>(limits_.max_rows) * widest;
  const size_t aligned = (part * sizeof(Fp16) + kAlignBytes - 1) / kAlignBytes * kAlignBytes;
  host_device_ = pool.allocate(2 * aligned);
  host_pinned_ = pinned.allocate(2 * aligned);
  y_host_part_ = host_device_.as<Fp16>();
  y_device_part_ = reinterpret_cast<Fp16*>(host_device_.as<char>() + aligned);
  x_host_ = host_pinned_.as<Fp16>();
  y_host_ = reinterpret_cast<Fp16*>(host_pinned_.as<char>() + aligned);
  host_plan_ = std::move(plan);
}

void StageRunner::lin(const StageLayout& layout, const Fp16* weights, const std::string& name,
                      const Fp16* in, Fp16* out, int64_t n, int64_t k, Activation act,
                      const Stream& stream) {
  const Fp16* w = tensor(layout, weights, name + ".weight", {n, k}, true);
  const Fp16* bias = tensor(layout, weights, name + ".bias", {n}, false);
  const HostLinear host = host_plan_ ? host_plan_(layout, name) : HostLinear{};
  if (host.split == 0) {
    linear(*blas_, in, w, bias, out, step().rows, n, k, act, stream);
    return;
  }
  // Host columns [0, s) on the side stream, device columns [s, n) here, then the join. The side
  // stream's buffers are free again: their last reader was the join of the previous split linear,
  // which this stream ran before x_ready_.
  const int64_t s = host.split, rest = n - s, m = step().rows;
  STRATA_CHECK(s > 0 && s < n, "split column ", s, " of ", name, " outside (0, ", n, ")");
  x_ready_.record(stream);
  x_ready_.wait(side_);
  copy_d2h(x_host_, in, static_cast<size_t>(m * k) * sizeof(Fp16), side_);
  launch_host(side_, [compute = host.compute, x = x_host_, y = y_host_, m] { compute(x, y, m); });
  copy_h2d(y_host_part_, y_host_, static_cast<size_t>(m * s) * sizeof(Fp16), side_);
  host_done_.record(side_);
  linear(*blas_, in, w + s * k, bias ? bias + s : nullptr, y_device_part_, m, rest, k, act, stream);
  host_done_.wait(stream);
  copy_2d(out, n * sizeof(Fp16), y_host_part_, s * sizeof(Fp16), s * sizeof(Fp16), m, stream);
  copy_2d(out + s, n * sizeof(Fp16), y_device_part_, rest * sizeof(Fp16), rest * sizeof(Fp16), m,
          stream);
}

void StageRunner::project_qkv(const StageLayout& layout, const Fp16* weights, const Fp16* hidden,
                              const Stream& stream) {
  check_decoder(layout);
  STRATA_CHECK(layout.kind != StageKind::kMlp, "an MLP stage has no attention");
  const ModelConfig& c = config_;
  const LayerNames n = c.layer_names();
  const std::string p = "layers." + std::to_string(layout.layer) + ".";
  const int64_t h = c.hidden_size, qd = c.q_dim(), kvd = c.kv_dim();
  const Fp16* attn_in = hidden;
  if (c.pre_layer_norm) {
    norm(layout, weights, p + n.attn_norm, hidden, x_, stream);
    attn_in = x_;
  }
  lin(layout, weights, p + n.q, attn_in, q_, qd, h, Activation::kNone, stream);
  lin(layout, weights, p + n.k, attn_in, k_, kvd, h, Activation::kNone, stream);
  lin(layout, weights, p + n.v, attn_in, v_, kvd, h, Activation::kNone, stream);
  if (c.rotary) {
    const MetaLayout m = meta_layout(limits_);
    rotary(q_, qd, step().rows, meta(m.positions), c.n_heads, c.head_dim(), inv_freq_, stream);
    rotary(k_, kvd, step().rows, meta(m.positions), c.kv_heads(), c.head_dim(), inv_freq_, stream);
  }
  scale_inplace(q_, step().rows * qd, 1.0f / std::sqrt(static_cast<float>(c.head_dim())), stream);
}

void StageRunner::finish_decoder(const StageLayout& layout, const Fp16* weights, Fp16* hidden,
                                 const Stream& stream) {
  check_decoder(layout);
  const ModelConfig& c = config_;
  const LayerNames n = c.layer_names();
  const std::string p = "layers." + std::to_string(layout.layer) + ".";
  const int64_t h = c.hidden_size;
  lin(layout, weights, p + n.o, attn_, x_, h, c.q_dim(), Activation::kNone, stream);
  add_inplace(hidden, x_, step().rows * h, stream);
  if (!c.pre_layer_norm) norm(layout, weights, p + n.attn_norm, hidden, hidden, stream);
  if (layout.kind == StageKind::kDecoder) mlp(layout, weights, hidden, stream);
}

void StageRunner::mlp(const StageLayout& layout, const Fp16* weights, Fp16* hidden,
                      const Stream& stream) {
  const ModelConfig& c = config_;
  const LayerNames n = c.layer_names();
  const std::string p = "layers." + std::to_string(layout.layer) + ".";
  const int64_t h = c.hidden_size, f = c.ffn_dim;
  const Fp16* ffn_in = hidden;
  if (c.pre_layer_norm) {
    norm(layout, weights, p + n.mlp_norm, hidden, x_, stream);
    ffn_in = x_;
  }
  Fp16* act = mid_;
  lin(layout, weights, p + n.up, ffn_in, mid_, f, h, device_activation(c), stream);
  if (c.gated_mlp) {
    act = mid_ + step().rows * f;
    lin(layout, weights, p + n.gate, ffn_in, act, f, h, Activation::kNone, stream);
    silu_mul(act, mid_, step().rows * f, stream);
  }
  lin(layout, weights, p + n.down, act, x_, h, f, Activation::kNone, stream);
  add_inplace(hidden, x_, step().rows * h, stream);
  if (!c.pre_layer_norm) norm(layout, weights, p + n.mlp_norm, hidden, hidden, stream);
}

void StageRunner::decoder(const StageLayout& layout, const Fp16* weights, const DeviceKvBlock& kv,
                          Fp16* hidden, const Stream& stream) {
  check_decoder(layout);
  if (layout.kind == StageKind::kMlp) {
    mlp(layout, weights, hidden, stream);
    return;
  }
  const MetaLayout m = meta_layout(limits_);
  const ModelConfig& c = config_;
  const int64_t qd = c.q_dim(), kvd = c.kv_dim();
  STRATA_CHECK(kv.base && kv.hidden == kvd && kv.capacity >= step().max_len,
               "KV block too small for the step");
  project_qkv(layout, weights, hidden, stream);
  kv_append(k_, v_, meta(m.row_offsets), meta(m.starts), meta(m.slots), step().n_seqs, step().rows,
            kvd, kv.base, kv.capacity, stream);
  const Fp16* keys = kv.base;
  const Fp16* values = kv.base + kv.capacity * kvd;
  const int64_t slot_stride = 2 * kv.capacity * kvd;
  if (step().decode_only) {
    attention_decode(q_, qd, keys, values, kvd, slot_stride, meta(m.slots), meta(m.lengths),
                     nullptr, step().max_len, attn_, qd, step().n_seqs, c.n_heads, c.kv_heads(),
                     c.head_dim(), decode_workspace_, decode_workspace_bytes_, stream);
  } else {
    attention_prefill_packed(q_, qd, meta(m.row_offsets), meta(m.starts), meta(m.slots), keys,
                             values, kvd, slot_stride, attn_, step().n_seqs, step().max_new,
                             c.n_heads, c.kv_heads(), c.head_dim(), nullptr, stream);
  }
  finish_decoder(layout, weights, hidden, stream);
}

void StageRunner::head(const StageLayout& layout, const Fp16* weights, const Fp16* hidden,
                       float* logits, const Stream& stream) {
  STRATA_CHECK(layout.kind == StageKind::kHead, "not a head stage");
  const MetaLayout m = meta_layout(limits_);
  const ModelConfig& c = config_;
  const int64_t h = c.hidden_size, e = c.word_embed_proj_dim, n = step().n_seqs;
  // Only each sequence's last row needs logits.
  gather_rows(hidden, meta(m.last_rows), n, h, last_, stream);
  if (c.final_layer_norm) norm_rows(layout, weights, c.final_norm_name(), last_, last_, n, stream);
  const Fp16* head_in = last_;
  if (c.has_projection()) {
    const Fp16* project_out = tensor(layout, weights, "project_out.weight", {e, h}, true);
    linear(*blas_, last_, project_out, nullptr, projected_, n, e, h, Activation::kNone, stream);
    head_in = projected_;
  }
  const Fp16* lm_head = tensor(layout, weights, "lm_head.weight", {c.vocab_size, e}, true);
  linear(*blas_, head_in, lm_head, nullptr, logits, n, c.vocab_size, e, stream);
}

}  // namespace strata::cuda
