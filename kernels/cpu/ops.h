// CPU kernels in fp32. Matrices are row-major; a weight is [out, in] as Hugging Face stores it.
// Each kernel has a plain counterpart in reference.h that tests hold it against.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>

namespace strata::cpu {

// What linear() has done since the last reset: lets a benchmark give GEMM's share of the time.
struct GemmCounters {
  std::atomic<uint64_t> flops{0};
  std::atomic<uint64_t> nanoseconds{0};
  std::atomic<uint64_t> splits{0};   // linear_split calls that gave the CPU side columns
  std::atomic<uint64_t> blocked{0};  // linear_blocked calls
  void reset() {
    flops = 0;
    nanoseconds = 0;
    splits = 0;
    blocked = 0;
  }
};
GemmCounters& gemm_counters();

inline constexpr float kLayerNormEps = 1e-5f;

// y[m, n] = x[m, k] * w[n, k]^T + bias[n] (bias may be null). Through gemm_nt (gemm.h).
void linear(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t n,
            int64_t k);

// linear() on a weight cpu::block_weight (gemm.h) has rewritten.
void linear_blocked(const float* x, const float* w, const float* bias, float* y, int64_t m,
                    int64_t n, int64_t k);

// HeteGen's split of a linear layer: output columns [0, split_column(alpha, n)) are the CPU's,
// [split_column, n) the GPU's. On the CPU backend both halves run here, as two GEMMs over row
// ranges of w written into column ranges of y, so the split and join are exercised without a GPU.
int64_t split_column(double alpha, int64_t n);  // round(alpha * n), alpha in [0, 1)
void linear_split(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t n,
                  int64_t k, double alpha);

// Normalises each of `rows` rows of `dim` values; gamma / beta may be null (no affine).
void layer_norm(const float* x, const float* gamma, const float* beta, float* y, int64_t rows,
                int64_t dim, float eps = kLayerNormEps);

// Hugging Face's RMSNorm: x * rsqrt(mean(x^2) + eps) * weight, accumulated in double.
void rms_norm(const float* x, const float* weight, float* y, int64_t rows, int64_t dim, float eps);

// Rotary positions in Hugging Face's rotate_half layout: in each head, element i < head_dim / 2
// pairs with i + head_dim / 2, rotated by positions[r] * inv_freq[i]. Rows have stride ld.
void rotary(float* x, int64_t ld, int64_t rows, const int64_t* positions, int64_t n_heads,
            int64_t head_dim, const float* inv_freq);

void relu(float* x, int64_t n);
void gelu(float* x, int64_t n);  // exact (erf) GELU, as Hugging Face's "gelu"
// SwiGLU's product: gate[i] = silu(gate[i]) * up[i].
void silu_mul(float* gate, const float* up, int64_t n);
void add_inplace(float* y, const float* x, int64_t n);
void scale_inplace(float* y, float s, int64_t n);

// Causal attention of one sequence. Queries are the n_new tokens at positions
// [start, start + n_new); keys and values hold positions [0, start + n_new). Rows of q / out
// have stride ld_q, rows of k / v stride ld_kv; head h is columns [h * head_dim, (h+1) * head_dim)
// of q and out, and reads key / value head h / (n_heads / n_kv_heads) (grouped-query attention).
// q is already scaled by 1 / sqrt(head_dim).
// Calls f(first, last) over [0, n) cut into `threads` contiguous ranges, on the calling thread's
// OpenMP team (kept between calls), not on threads started per call.
void for_ranges(int64_t n, int threads, const std::function<void(int64_t, int64_t)>& f);

void attention(const float* q, int64_t ld_q, const float* k, const float* v, int64_t ld_kv,
               float* out, int64_t start, int64_t n_new, int64_t n_heads, int64_t n_kv_heads,
               int64_t head_dim);

// Calls attend(i) for sequences [0, n), each one attention() call. When every sequence has few
// new tokens (max_new below kGemmAttentionMinQueries: decode) the threads split the sequences,
// so each streams whole cache rows; otherwise sequences run in turn and each splits its heads.
// Either way a sequence's result does not depend on the thread count.
constexpr int64_t kGemmAttentionMinQueries = 8;
void for_sequences(int64_t n, int64_t max_new, const std::function<void(int64_t)>& attend);

// out[i] = log_softmax(logits)[i], accumulated in double.
void log_softmax(const float* logits, float* out, int64_t n);

}  // namespace strata::cpu
