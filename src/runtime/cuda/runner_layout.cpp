#include "runtime/cuda/runner_layout.h"

#include <algorithm>

#include "kernels/cuda/attention_sizes.h"

namespace strata::cuda {

MetaLayout meta_layout(const StageRunnerLimits& l) {
  MetaLayout m{};
  m.tokens = 0;
  m.row_offsets = l.max_rows;
  m.starts = m.row_offsets + l.max_seqs + 1;
  m.slots = m.starts + l.max_seqs;
  m.lengths = m.slots + l.max_seqs;
  m.last_rows = m.lengths + l.max_seqs;
  m.positions = m.last_rows + l.max_seqs;  // each packed row's position (rotary)
  m.total = m.positions + l.max_rows;
  return m;
}

ScratchLayout scratch_layout(const ModelConfig& c, const StageRunnerLimits& l) {
  size_t at = 0;
  const auto take = [&at](size_t bytes) {
    const size_t offset = at;
    at += (bytes + kAlignBytes - 1) / kAlignBytes * kAlignBytes;
    return offset;
  };
  const auto f16 = [](int64_t n) { return static_cast<size_t>(n) * sizeof(Fp16); };
  const int64_t h = c.hidden_size, e = c.word_embed_proj_dim, rows = l.max_rows;
  ScratchLayout s{};
  s.words = take(c.has_projection() ? f16(rows * e) : 0);
  s.x = take(f16(rows * h));
  s.q = take(f16(rows * c.q_dim()));
  s.k = take(f16(rows * c.kv_dim()));
  s.v = take(f16(rows * c.kv_dim()));
  s.attn = take(f16(rows * c.q_dim()));
  s.mid = take(f16(rows * c.mlp_width()));
  s.last = take(f16(l.max_seqs * h));
  s.projected = take(f16(l.max_seqs * e));
  s.decode_bytes =
      attention_decode_workspace_bytes(l.max_seqs, c.n_heads, c.head_dim(), l.capacity);
  s.decode = take(s.decode_bytes);
  s.meta = take(static_cast<size_t>(l.batches * meta_layout(l).total) * sizeof(int32_t));
  s.inv_freq = take(c.rotary ? static_cast<size_t>(c.head_dim() / 2) * sizeof(float) : 0);
  s.total = at;
  return s;
}

size_t widest_linear(const ModelConfig& c) {
  return static_cast<size_t>(std::max({c.hidden_size, c.ffn_dim, c.q_dim()}));
}

size_t StageRunner::host_linear_device_bytes(const ModelConfig& c, const StageRunnerLimits& l) {
  const size_t widest = widest_linear(c);
  return 2 * static_cast<size_t>(l.max_rows) * widest * sizeof(Fp16) + 2 * kAlignBytes;
}

size_t StageRunner::host_linear_pinned_bytes(const ModelConfig& c, const StageRunnerLimits& l) {
  return host_linear_device_bytes(c, l);
}

size_t StageRunner::host_meta_bytes(const ModelConfig& c, const StageRunnerLimits& l) {
  const size_t inv_freq = c.rotary ? static_cast<size_t>(c.head_dim() / 2) * sizeof(float) : 0;
  return static_cast<size_t>(l.batches * meta_layout(l).total) * sizeof(int32_t) + inv_freq;
}

size_t StageRunner::workspace_bytes(const ModelConfig& config, const StageRunnerLimits& limits) {
  return scratch_layout(config, limits).total;
}

}  // namespace strata::cuda
