// The kernels of kernels/cuda/ops.h emulated on the host: each converts its fp16 inputs to fp32,
// runs the CPU kernel (OpenBLAS for GEMMs) and rounds its output to fp16 once, queued on the
// stream like a launch. Accuracy against the real kernels is the GPU tests' business; these run
// the CUDA engine's schedule, tiers and memory plan where there is no GPU.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/quant.h"
#include "kernels/cpu/reference_cuda_ops.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda_host/host_stream.h"

namespace strata::cuda {
namespace {

using host::check_device;
using host::enqueue;

std::vector<float> widen(const Fp16* p, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = fp16_to_fp32(p[i]);
  return out;
}

void narrow(const float* v, Fp16* p, int64_t n) {
  for (int64_t i = 0; i < n; ++i) p[i] = fp32_to_fp16(v[i]);
}

void activate(std::vector<float>& y, Activation act) {
  if (act == Activation::kRelu) cpu::relu(y.data(), static_cast<int64_t>(y.size()));
  if (act == Activation::kGelu) cpu::gelu(y.data(), static_cast<int64_t>(y.size()));
}

std::vector<float> gemm(const Fp16* x, const Fp16* w, const Fp16* bias, int64_t m, int64_t n,
                        int64_t k) {
  const auto xs = widen(x, m * k), ws = widen(w, n * k);
  std::vector<float> bs = bias ? widen(bias, n) : std::vector<float>();
  std::vector<float> y(static_cast<size_t>(m * n));
  cpu::linear(xs.data(), ws.data(), bias ? bs.data() : nullptr, y.data(), m, n, k);
  return y;
}

// One sequence's causal attention over strided fp16 rows, through the CPU kernel.
struct Heads {
  int64_t n, n_kv, dim;
};
// tiled: the tensor-core kernel's arithmetic (its CPU twin), where the GPU would take it.
void attend(const Fp16* q, int64_t ld_q, const Fp16* k, const Fp16* v, int64_t ld_kv, Fp16* out,
            int64_t ld_out, int64_t start, int64_t n_new, Heads heads, bool tiled = false) {
  const int64_t width = heads.n * heads.dim, kv_width = heads.n_kv * heads.dim;
  const int64_t n_keys = start + n_new;
  std::vector<float> qs(static_cast<size_t>(n_new * width)),
      ks(static_cast<size_t>(n_keys * kv_width));
  std::vector<float> vs(ks.size()), os(qs.size());
  for (int64_t r = 0; r < n_new; ++r) {
    for (int64_t c = 0; c < width; ++c) qs[r * width + c] = fp16_to_fp32(q[r * ld_q + c]);
  }
  for (int64_t r = 0; r < n_keys; ++r) {
    for (int64_t c = 0; c < kv_width; ++c) {
      ks[r * kv_width + c] = fp16_to_fp32(k[r * ld_kv + c]);
      vs[r * kv_width + c] = fp16_to_fp32(v[r * ld_kv + c]);
    }
  }
  if (tiled) {
    cpu::ref::attention_tiled(qs.data(), width, ks.data(), vs.data(), kv_width, os.data(), start,
                              n_new, heads.n, heads.n_kv, heads.dim, 0);
  } else {
    cpu::attention(qs.data(), width, ks.data(), vs.data(), kv_width, os.data(), start, n_new,
                   heads.n, heads.n_kv, heads.dim);
  }
  for (int64_t r = 0; r < n_new; ++r) narrow(os.data() + r * width, out + r * ld_out, width);
}

}  // namespace

void linear(Blas& blas, const Fp16* x, const Fp16* w, const Fp16* bias, Fp16* y, int64_t m,
            int64_t n, int64_t k, Activation act, const Stream& stream) {
  check_device(x, static_cast<size_t>(m * k) * 2, "linear input");
  check_device(w, static_cast<size_t>(n * k) * 2, "linear weight");
  check_device(y, static_cast<size_t>(m * n) * 2, "linear output");
  if (m > 0 && n > 0 && (bias || act != Activation::kNone)) {
    linear_block_rows(blas, m, n);  // the GPU's contract: fp32 output through the scratch
    check_device(blas.output_scratch(), blas.output_scratch_size(), "linear output scratch");
  }
  enqueue(stream, [=] {
    auto out = gemm(x, w, bias, m, n, k);
    activate(out, act);
    narrow(out.data(), y, m * n);
  });
}

void linear(Blas&, const Fp16* x, const Fp16* w, const Fp16* bias, float* y, int64_t m, int64_t n,
            int64_t k, const Stream& stream) {
  check_device(x, static_cast<size_t>(m * k) * 2, "linear input");
  check_device(w, static_cast<size_t>(n * k) * 2, "linear weight");
  check_device(y, static_cast<size_t>(m * n) * 4, "linear output");
  enqueue(stream, [=] {
    const auto out = gemm(x, w, bias, m, n, k);
    std::memcpy(y, out.data(), out.size() * 4);
  });
}

void bias_activation(Fp16* y, const Fp16* bias, int64_t m, int64_t n, Activation act,
                     const Stream& stream) {
  enqueue(stream, [=] {
    auto v = widen(y, m * n);
    if (bias) {
      for (int64_t r = 0; r < m; ++r) {
        for (int64_t c = 0; c < n; ++c) v[r * n + c] += fp16_to_fp32(bias[c]);
      }
    }
    activate(v, act);
    narrow(v.data(), y, m * n);
  });
}

void layer_norm(const Fp16* x, const Fp16* gamma, const Fp16* beta, Fp16* y, int64_t rows,
                int64_t dim, float eps, const Stream& stream) {
  check_device(x, static_cast<size_t>(rows * dim) * 2, "layer_norm input");
  check_device(y, static_cast<size_t>(rows * dim) * 2, "layer_norm output");
  enqueue(stream, [=] {
    const auto xs = widen(x, rows * dim);
    const auto g = gamma ? widen(gamma, dim) : std::vector<float>();
    const auto b = beta ? widen(beta, dim) : std::vector<float>();
    std::vector<float> out(xs.size());
    cpu::layer_norm(xs.data(), gamma ? g.data() : nullptr, beta ? b.data() : nullptr, out.data(),
                    rows, dim, eps);
    narrow(out.data(), y, rows * dim);
  });
}

void rms_norm(const Fp16* x, const Fp16* weight, Fp16* y, int64_t rows, int64_t dim, float eps,
              const Stream& stream) {
  check_device(x, static_cast<size_t>(rows * dim) * 2, "rms_norm input");
  check_device(y, static_cast<size_t>(rows * dim) * 2, "rms_norm output");
  enqueue(stream, [=] {
    const auto xs = widen(x, rows * dim), w = widen(weight, dim);
    std::vector<float> out(xs.size());
    cpu::rms_norm(xs.data(), w.data(), out.data(), rows, dim, eps);
    narrow(out.data(), y, rows * dim);
  });
}

void rotary(Fp16* x, int64_t ld, int64_t rows, const int32_t* positions, int64_t n_heads,
            int64_t head_dim, const float* inv_freq, const Stream& stream) {
  check_device(x, static_cast<size_t>(rows * ld) * 2, "rotary rows");
  enqueue(stream, [=] {
    const int64_t width = n_heads * head_dim;
    std::vector<float> row(static_cast<size_t>(width));
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < width; ++c) row[static_cast<size_t>(c)] = fp16_to_fp32(x[r * ld + c]);
      const int64_t pos = positions[r];
      cpu::rotary(row.data(), width, 1, &pos, n_heads, head_dim, inv_freq);
      narrow(row.data(), x + r * ld, width);
    }
  });
}

void silu_mul(Fp16* gate, const Fp16* up, int64_t n, const Stream& stream) {
  check_device(gate, static_cast<size_t>(n) * 2, "silu_mul gate");
  enqueue(stream, [=] {
    auto g = widen(gate, n);
    const auto u = widen(up, n);
    cpu::silu_mul(g.data(), u.data(), n);
    narrow(g.data(), gate, n);
  });
}

void add_inplace(Fp16* y, const Fp16* x, int64_t n, const Stream& stream) {
  check_device(y, static_cast<size_t>(n) * 2, "add_inplace output");
  enqueue(stream, [=] {
    for (int64_t i = 0; i < n; ++i) y[i] = fp32_to_fp16(fp16_to_fp32(y[i]) + fp16_to_fp32(x[i]));
  });
}

void convert(const float* src, Fp16* dst, int64_t n, const Stream& stream) {
  check_device(src, static_cast<size_t>(n) * 4, "convert input");
  check_device(dst, static_cast<size_t>(n) * 2, "convert output");
  enqueue(stream, [=] { narrow(src, dst, n); });
}

void convert(const Fp16* src, float* dst, int64_t n, const Stream& stream) {
  check_device(src, static_cast<size_t>(n) * 2, "convert input");
  check_device(dst, static_cast<size_t>(n) * 4, "convert output");
  enqueue(stream, [=] {
    for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(src[i]);
  });
}

void embed(const Fp16* token_table, const Fp16* position_table, const int32_t* tokens,
           const int32_t* row_offsets, const int32_t* starts, const int32_t* pad_left,
           int64_t n_seqs, int64_t rows, int64_t dim, Fp16* out, const Stream& stream) {
  check_device(out, static_cast<size_t>(rows * dim) * 2, "embed output");
  enqueue(stream, [=] {
    for (int64_t s = 0; s < n_seqs; ++s) {
      const int64_t pad = pad_left ? pad_left[s] : 0;
      for (int64_t i = row_offsets[s]; i < row_offsets[s + 1]; ++i) {
        Fp16* row = out + i * dim;
        const int64_t local = i - row_offsets[s];
        if (local < pad) {
          std::fill(row, row + dim, Fp16{0});
          continue;
        }
        const Fp16* pos = position_table + (starts[s] + local - pad + kPositionOffset) * dim;
        for (int64_t c = 0; c < dim; ++c) {
          const float word = fp16_to_fp32(token_table ? token_table[tokens[i] * dim + c] : row[c]);
          row[c] = fp32_to_fp16(word + fp16_to_fp32(pos[c]));
        }
      }
    }
  });
}

// The emulated device has tensor cores: the same choice as the GPU's launchers.
bool prefill_on_tensor_cores(int64_t head_dim, int64_t ld_q, int64_t ld_kv, int64_t seq_stride_q,
                             int64_t seq_stride_kv, const void* q, const void* k, const void* v,
                             const void* out) {
  return prefill_tensor_core_shapes(head_dim, ld_q, ld_kv, seq_stride_q, seq_stride_kv, q, k, v,
                                    out);
}

void attention_prefill(const Fp16* q, int64_t ld_q, int64_t seq_stride_q, const Fp16* k,
                       const Fp16* v, int64_t ld_kv, int64_t seq_stride_kv, Fp16* out,
                       int64_t start, int64_t n_new, int64_t n_seqs, int64_t n_heads,
                       int64_t n_kv_heads, int64_t head_dim, const int32_t* key_begin,
                       const Stream& stream) {
  STRATA_CHECK(key_begin == nullptr, "emulated CUDA: attention with left padding");
  const bool tiled =
      prefill_on_tensor_cores(head_dim, ld_q, ld_kv, seq_stride_q, seq_stride_kv, q, k, v, out);
  enqueue(stream, [=] {
    for (int64_t s = 0; s < n_seqs; ++s) {
      attend(q + s * seq_stride_q, ld_q, k + s * seq_stride_kv, v + s * seq_stride_kv, ld_kv,
             out + s * seq_stride_q, ld_q, start, n_new, {n_heads, n_kv_heads, head_dim}, tiled);
    }
  });
}

void attention_prefill_packed(const Fp16* q, int64_t ld_q, const int32_t* row_offsets,
                              const int32_t* starts, const int32_t* slots, const Fp16* k,
                              const Fp16* v, int64_t ld_kv, int64_t seq_stride_kv, Fp16* out,
                              int64_t n_seqs, int64_t, int64_t n_heads, int64_t n_kv_heads,
                              int64_t head_dim, const int32_t* key_begin, const Stream& stream) {
  STRATA_CHECK(key_begin == nullptr, "emulated CUDA: attention with left padding");
  const bool tiled = prefill_on_tensor_cores(head_dim, ld_q, ld_kv, 0, seq_stride_kv, q, k, v, out);
  enqueue(stream, [=] {
    for (int64_t s = 0; s < n_seqs; ++s) {
      const int64_t slot = slots ? slots[s] : s, first = row_offsets[s];
      attend(q + first * ld_q, ld_q, k + slot * seq_stride_kv, v + slot * seq_stride_kv, ld_kv,
             out + first * ld_q, ld_q, starts[s], row_offsets[s + 1] - first,
             {n_heads, n_kv_heads, head_dim}, tiled);
    }
  });
}

void attention_decode(const Fp16* q, int64_t ld_q, const Fp16* k_cache, const Fp16* v_cache,
                      int64_t ld_kv, int64_t seq_stride_kv, const int32_t* slots,
                      const int32_t* lengths, const int32_t* key_begin, int64_t, Fp16* out,
                      int64_t ld_out, int64_t n_seqs, int64_t n_heads, int64_t n_kv_heads,
                      int64_t head_dim, void*, size_t, const Stream& stream) {
  STRATA_CHECK(key_begin == nullptr, "emulated CUDA: attention with left padding");
  enqueue(stream, [=] {
    for (int64_t s = 0; s < n_seqs; ++s) {
      const int64_t slot = slots ? slots[s] : s;
      attend(q + s * ld_q, ld_q, k_cache + slot * seq_stride_kv, v_cache + slot * seq_stride_kv,
             ld_kv, out + s * ld_out, ld_out, lengths[s] - 1, 1, {n_heads, n_kv_heads, head_dim});
    }
  });
}

void log_softmax(const float* logits, float* out, int64_t rows, int64_t n, const Stream& stream) {
  enqueue(stream, [=] {
    for (int64_t r = 0; r < rows; ++r) cpu::log_softmax(logits + r * n, out + r * n, n);
  });
}

void argmax(const float* logits, int64_t rows, int64_t n, int32_t* tokens, const Stream& stream) {
  enqueue(stream, [=] {
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = logits + r * n;
      tokens[r] = static_cast<int32_t>(std::max_element(row, row + n) - row);
    }
  });
}

void sample_temperature(const float* logits, int64_t rows, int64_t n, float temperature,
                        const float* uniforms, int32_t* tokens, const Stream& stream) {
  enqueue(stream, [=] {
    for (int64_t r = 0; r < rows; ++r) {
      const auto cdf = cpu::ref::softmax_cdf(logits + r * n, n, temperature);
      const auto it = std::upper_bound(cdf.begin(), cdf.end(), static_cast<double>(uniforms[r]));
      tokens[r] = static_cast<int32_t>(std::min<int64_t>(it - cdf.begin(), n - 1));
    }
  });
}

void quantize(int bits, const float* src, int64_t n, int64_t group_len, void* groups,
              const Stream& stream) {
  enqueue(stream, [=] { strata::quantize(bits, src, n, group_len, groups); });
}

void quantize(int bits, const Fp16* src, int64_t n, int64_t group_len, void* groups,
              const Stream& stream) {
  enqueue(stream, [=] {
    const auto v = widen(src, n);
    strata::quantize(bits, v.data(), n, group_len, groups);
  });
}

void dequantize(int bits, const void* groups, int64_t n, int64_t group_len, float* dst,
                const Stream& stream) {
  enqueue(stream, [=] { strata::dequantize(bits, groups, n, group_len, dst); });
}

void dequantize(int bits, const void* groups, int64_t n, int64_t group_len, Fp16* dst,
                const Stream& stream) {
  enqueue(stream, [=] {
    std::vector<float> v(static_cast<size_t>(n));
    strata::dequantize(bits, groups, n, group_len, v.data());
    narrow(v.data(), dst, n);
  });
}

void dequantize_matrix(int bits, const void* groups, int64_t rows, int64_t cols, float* dst,
                       const Stream& stream) {
  check_device(dst, static_cast<size_t>(rows * cols) * 4, "dequantize_matrix output");
  enqueue(stream, [=] { strata::dequantize_matrix(bits, groups, rows, cols, dst); });
}

void dequantize_matrix(int bits, const void* groups, int64_t rows, int64_t cols, Fp16* dst,
                       const Stream& stream) {
  check_device(groups, quantized_matrix_bytes(bits, rows, cols), "dequantize_matrix input");
  check_device(dst, static_cast<size_t>(rows * cols) * 2, "dequantize_matrix output");
  enqueue(stream, [=] {
    std::vector<float> v(static_cast<size_t>(rows * cols));
    strata::dequantize_matrix(bits, groups, rows, cols, v.data());
    narrow(v.data(), dst, rows * cols);
  });
}

void gather_rows(const Fp16* table, const int32_t* indices, int64_t n, int64_t dim, Fp16* out,
                 const Stream& stream) {
  check_device(out, static_cast<size_t>(n * dim) * 2, "gather_rows output");
  enqueue(stream, [=] {
    for (int64_t i = 0; i < n; ++i) std::memcpy(out + i * dim, table + indices[i] * dim, dim * 2);
  });
}

void scale_inplace(Fp16* y, int64_t n, float factor, const Stream& stream) {
  check_device(y, static_cast<size_t>(n) * 2, "scale_inplace output");
  enqueue(stream, [=] {
    for (int64_t i = 0; i < n; ++i) y[i] = fp32_to_fp16(fp16_to_fp32(y[i]) * factor);
  });
}

void kv_append(const Fp16* k, const Fp16* v, const int32_t* row_offsets, const int32_t* starts,
               const int32_t* slots, int64_t n_seqs, int64_t rows, int64_t hidden, Fp16* cache,
               int64_t capacity, const Stream& stream) {
  check_device(k, static_cast<size_t>(rows * hidden) * 2, "kv_append keys");
  enqueue(stream, [=] {
    for (int64_t s = 0; s < n_seqs; ++s) {
      const int64_t slot = slots ? slots[s] : s;
      Fp16* keys = cache + slot * 2 * capacity * hidden;
      Fp16* values = keys + capacity * hidden;
      for (int64_t i = row_offsets[s]; i < row_offsets[s + 1]; ++i) {
        const int64_t pos = starts[s] + (i - row_offsets[s]);
        STRATA_CHECK(pos < capacity, "emulated CUDA: kv_append past the cache capacity");
        std::memcpy(keys + pos * hidden, k + i * hidden, hidden * 2);
        std::memcpy(values + pos * hidden, v + i * hidden, hidden * 2);
      }
    }
  });
}

void q4_linear(const Fp16* x, const void* w_groups, const Fp16* bias, Fp16* y, int64_t m, int64_t n,
               int64_t k, const Stream& stream) {
  enqueue(stream, [=] {
    std::vector<float> w(static_cast<size_t>(n * k));
    strata::dequantize_matrix(4, w_groups, n, k, w.data());
    const auto xs = widen(x, m * k);
    const auto bs = bias ? widen(bias, n) : std::vector<float>();
    std::vector<float> out(static_cast<size_t>(m * n));
    cpu::linear(xs.data(), w.data(), bias ? bs.data() : nullptr, out.data(), m, n, k);
    narrow(out.data(), y, m * n);
  });
}

}  // namespace strata::cuda
