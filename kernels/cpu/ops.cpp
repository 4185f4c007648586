#include "kernels/cpu/ops.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/isa.h"

namespace strata::cpu {

void for_ranges(int64_t n, int threads, const std::function<void(int64_t, int64_t)>& f) {
  const int t = static_cast<int>(std::clamp<int64_t>(threads, 1, std::max<int64_t>(n, 1)));
#pragma omp parallel for num_threads(t) schedule(static, 1)
  for (int i = 0; i < t; ++i) f(n * i / t, n * (i + 1) / t);
}

GemmCounters& gemm_counters() {
  static GemmCounters counters;
  return counters;
}

namespace {

// Elementwise work below this many values is not worth waking a second thread for.
constexpr int64_t kParallelMinValues = int64_t{1} << 15;

// The team for `values` of elementwise work: 1 when small.
int team(int64_t values) {
  return values < kParallelMinValues ? 1 : compute_threads();
}

// y[:, 0:cols] (rows of stride ldy) = x * w[0:cols]^T, counted in gemm_counters(); w blocked
// (gemm.h) holds all of its columns.
void gemm_columns(const float* x, const float* w, float* y, int64_t m, int64_t cols, int64_t k,
                  int64_t ldy, bool blocked = false) {
  if (cols == 0) return;
  const auto begin = std::chrono::steady_clock::now();
  if (blocked) {
    gemm_nt_blocked(x, k, w, y, ldy, m, cols, k);
  } else {
    gemm_nt(x, k, w, k, y, ldy, m, cols, k);
  }
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::steady_clock::now() - begin);
  gemm_counters().nanoseconds += static_cast<uint64_t>(ns.count());
  gemm_counters().flops += static_cast<uint64_t>(2 * m * cols * k);
}

void add_bias(float* y, const float* bias, int64_t m, int64_t n) {
#pragma omp parallel for num_threads(team(m* n))
  for (int64_t i = 0; i < m; ++i) {
    float* row = y + i * n;
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) row[j] += bias[j];
  }
}

}  // namespace

void linear(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t n,
            int64_t k) {
  gemm_columns(x, w, y, m, n, k, n);
  if (bias) add_bias(y, bias, m, n);
}

void linear_blocked(const float* x, const float* w, const float* bias, float* y, int64_t m,
                    int64_t n, int64_t k) {
  gemm_counters().blocked += 1;
  gemm_columns(x, w, y, m, n, k, n, true);
  if (bias) add_bias(y, bias, m, n);
}

int64_t split_column(double alpha, int64_t n) {
  STRATA_CHECK(alpha >= 0 && alpha < 1, "HeteGen alpha ", alpha, " outside [0, 1)");
  return std::min<int64_t>(n, std::llround(alpha * static_cast<double>(n)));
}

void linear_split(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t n,
                  int64_t k, double alpha) {
  const int64_t c = split_column(alpha, n);
  if (c == 0) {
    linear(x, w, bias, y, m, n, k);
    return;
  }
  gemm_counters().splits += 1;
  gemm_columns(x, w, y, m, c, k, n);                  // the CPU's columns
  gemm_columns(x, w + c * k, y + c, m, n - c, k, n);  // the GPU's, joined in place
  if (bias) add_bias(y, bias, m, n);
}

void layer_norm(const float* x, const float* gamma, const float* beta, float* y, int64_t rows,
                int64_t dim, float eps) {
#pragma omp parallel for num_threads(team(rows* dim))
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = x + r * dim;
    float* out = y + r * dim;
    double sum = 0;
    for (int64_t i = 0; i < dim; ++i) sum += in[i];
    const float mean = static_cast<float>(sum / static_cast<double>(dim));
    double sq = 0;
    for (int64_t i = 0; i < dim; ++i) {
      const float d = in[i] - mean;
      sq += static_cast<double>(d) * d;
    }
    const float inv = static_cast<float>(1.0 / std::sqrt(sq / static_cast<double>(dim) + eps));
    if (gamma) {
#pragma omp simd
      for (int64_t i = 0; i < dim; ++i) out[i] = (in[i] - mean) * inv * gamma[i] + beta[i];
    } else {
#pragma omp simd
      for (int64_t i = 0; i < dim; ++i) out[i] = (in[i] - mean) * inv;
    }
  }
}

void rms_norm(const float* x, const float* weight, float* y, int64_t rows, int64_t dim, float eps) {
#pragma omp parallel for num_threads(team(rows* dim))
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = x + r * dim;
    float* out = y + r * dim;
    double sq = 0;
    for (int64_t i = 0; i < dim; ++i) sq += static_cast<double>(in[i]) * in[i];
    const float inv = static_cast<float>(1.0 / std::sqrt(sq / static_cast<double>(dim) + eps));
#pragma omp simd
    for (int64_t i = 0; i < dim; ++i) out[i] = weight[i] * (in[i] * inv);
  }
}

void rotary(float* x, int64_t ld, int64_t rows, const int64_t* positions, int64_t n_heads,
            int64_t head_dim, const float* inv_freq) {
  const int64_t half = head_dim / 2;
  std::vector<float> cos(static_cast<size_t>(half)), sin(static_cast<size_t>(half));
  for (int64_t r = 0; r < rows; ++r) {
    // The angle is formed in fp32 as Hugging Face does; its cosine and sine are exact to a ulp.
    const float pos = static_cast<float>(positions[r]);
    for (int64_t i = 0; i < half; ++i) {
      const double angle = static_cast<double>(pos * inv_freq[i]);
      cos[static_cast<size_t>(i)] = static_cast<float>(std::cos(angle));
      sin[static_cast<size_t>(i)] = static_cast<float>(std::sin(angle));
    }
    for (int64_t h = 0; h < n_heads; ++h) {
      float* a = x + r * ld + h * head_dim;
      float* b = a + half;
#pragma omp simd
      for (int64_t i = 0; i < half; ++i) {
        const float a0 = a[i], b0 = b[i];
        a[i] = a0 * cos[static_cast<size_t>(i)] - b0 * sin[static_cast<size_t>(i)];
        b[i] = b0 * cos[static_cast<size_t>(i)] + a0 * sin[static_cast<size_t>(i)];
      }
    }
  }
}

void silu_mul(float* gate, const float* up, int64_t n) {
#pragma omp parallel for num_threads(team(n))
  for (int64_t i = 0; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void relu(float* x, int64_t n) {
#pragma omp parallel for simd num_threads(team(n))
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void gelu(float* x, int64_t n) {
  constexpr float kInvSqrt2 = 0.70710678118654752f;
#pragma omp parallel for num_threads(team(n))
  for (int64_t i = 0; i < n; ++i) x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * kInvSqrt2));
}

void add_inplace(float* y, const float* x, int64_t n) {
#pragma omp parallel for simd num_threads(team(n))
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void scale_inplace(float* y, float s, int64_t n) {
#pragma omp parallel for simd num_threads(team(n))
  for (int64_t i = 0; i < n; ++i) y[i] *= s;
}

namespace {

// Turns row i of scores (keys [0, n_valid)) into probabilities in place; the rest become 0.
void causal_softmax_row(float* row, int64_t n_valid, int64_t n_total) {
  float max = row[0];
  for (int64_t j = 1; j < n_valid; ++j) max = std::max(max, row[j]);
  double sum = 0;
  for (int64_t j = 0; j < n_valid; ++j) {
    row[j] = std::exp(row[j] - max);
    sum += row[j];
  }
  const float inv = static_cast<float>(1.0 / sum);
#pragma omp simd
  for (int64_t j = 0; j < n_valid; ++j) row[j] *= inv;
  std::fill(row + n_valid, row + n_total, 0.0f);
}

// One head h of causal attention (query columns col, key / value columns kv_col). scores holds
// n_new x (start + n_new) floats.
void attention_head_gemm(const float* q, int64_t ld_q, const float* k, const float* v,
                         int64_t ld_kv, float* out, int64_t start, int64_t n_new, int64_t col,
                         int64_t kv_col, int64_t head_dim, float* scores) {
  const int64_t n_keys = start + n_new;
  gemm_nt(q + col, ld_q, k + kv_col, ld_kv, scores, n_keys, n_new, n_keys, head_dim);
  for (int64_t i = 0; i < n_new; ++i)
    causal_softmax_row(scores + i * n_keys, start + i + 1, n_keys);
  gemm_nn(scores, n_keys, v + kv_col, ld_kv, out + col, ld_q, n_new, head_dim, n_keys);
}

// sum(a[i] * b[i]) over 16 partial sums added as a tree at the end: vectorises at any width
// into the same order (an `omp simd` reduction ends in 16 dependent scalar adds).
inline float dot(const float* a, const float* b, int64_t n) {
  constexpr int64_t kLanes = 16;
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int64_t l = 0; l < kLanes; ++l) acc[l] += a[i + l] * b[i + l];
  }
  for (int64_t l = 0; i + l < n; ++l) acc[l] += a[i + l] * b[i + l];
  for (int64_t w = kLanes / 2; w > 0; w /= 2) {
    for (int64_t l = 0; l < w; ++l) acc[l] += acc[l + w];
  }
  return acc[0];
}

// The same with a few queries, where dot products beat a GEMM call, for heads [h0, h1) at once:
// each key and value row is read once, front to back, rather than a head's slice at a time at
// the row's stride, and fetched a few rows ahead (the hardware prefetcher alone reaches about
// 0.55 of the read rate here, 0.75 with this). Per head the arithmetic is that head's alone, in
// a fixed order, so the split of heads over threads changes no bit. p holds
// (h1 - h0) * (start + n_new) floats.
STRATA_CPU_CLONES void attention_rows(const float* q, int64_t ld_q, const float* k, const float* v,
                                      int64_t ld_kv, float* out, int64_t start, int64_t n_new,
                                      int64_t h0, int64_t h1, int64_t group, int64_t head_dim,
                                      float* p) {
  constexpr int64_t kAhead = 3;        // rows
  constexpr int64_t kLineFloats = 16;  // a 64-byte cache line
  const int64_t ahead = kAhead * ld_kv;
  for (int64_t i = 0; i < n_new; ++i) {
    const int64_t n_keys = start + i + 1;
    const float* qi = q + i * ld_q;
    for (int64_t j = 0; j < n_keys; ++j) {
      const float* kj = k + j * ld_kv;
      for (int64_t h = h0; h < h1; ++h) {
        const float* kh = kj + h / group * head_dim;
        if (j + kAhead < n_keys) {
          for (int64_t c = 0; c < head_dim; c += kLineFloats) __builtin_prefetch(kh + ahead + c);
        }
        p[(h - h0) * n_keys + j] = dot(qi + h * head_dim, kh, head_dim);
      }
    }
    for (int64_t h = h0; h < h1; ++h) causal_softmax_row(p + (h - h0) * n_keys, n_keys, n_keys);
    float* oi = out + i * ld_q;
    std::fill(oi + h0 * head_dim, oi + h1 * head_dim, 0.0f);
    for (int64_t j = 0; j < n_keys; ++j) {
      const float* vj = v + j * ld_kv;
      for (int64_t h = h0; h < h1; ++h) {
        const float pj = p[(h - h0) * n_keys + j];
        const float* vh = vj + h / group * head_dim;
        if (j + kAhead < n_keys) {
          for (int64_t c = 0; c < head_dim; c += kLineFloats) __builtin_prefetch(vh + ahead + c);
        }
        float* o = oi + h * head_dim;
#pragma omp simd
        for (int64_t d = 0; d < head_dim; ++d) o[d] += pj * vh[d];
      }
    }
  }
}

}  // namespace

void attention(const float* q, int64_t ld_q, const float* k, const float* v, int64_t ld_kv,
               float* out, int64_t start, int64_t n_new, int64_t n_heads, int64_t n_kv_heads,
               int64_t head_dim) {
  STRATA_CHECK(n_kv_heads > 0 && n_heads % n_kv_heads == 0, "attention: ", n_kv_heads,
               " key / value heads for ", n_heads, " query heads");
  const int64_t group = n_heads / n_kv_heads;
  const int64_t n_keys = start + n_new;
  const int64_t work = n_heads * (n_new + 1) * n_keys * head_dim;
  // Heads split over the threads, each head's arithmetic on one of them (a head's GEMMs too:
  // gemm_nests()), so every head's result is the same whatever the thread count.
  if (n_new < kGemmAttentionMinQueries) {
    for_ranges(n_heads, team(work), [&](int64_t h0, int64_t h1) {
      std::vector<float> p(static_cast<size_t>((h1 - h0) * n_keys));
      attention_rows(q, ld_q, k, v, ld_kv, out, start, n_new, h0, h1, group, head_dim, p.data());
    });
    return;
  }
  const int threads = gemm_nests() ? team(work) : 1;
#pragma omp parallel num_threads(threads)
  {
    std::vector<float> scores(static_cast<size_t>(n_new * n_keys));
#pragma omp for schedule(static)
    for (int64_t h = 0; h < n_heads; ++h) {
      attention_head_gemm(q, ld_q, k, v, ld_kv, out, start, n_new, h * head_dim,
                          h / group * head_dim, head_dim, scores.data());
    }
  }
}

void for_sequences(int64_t n, int64_t max_new, const std::function<void(int64_t)>& attend) {
  if (max_new >= kGemmAttentionMinQueries || n == 1) {
    for (int64_t i = 0; i < n; ++i) attend(i);
    return;
  }
  // Inside the team's threads each attention() gets a team of one (no nested parallelism).
  for_ranges(n, compute_threads(), [&](int64_t first, int64_t last) {
    for (int64_t i = first; i < last; ++i) attend(i);
  });
}

void log_softmax(const float* logits, float* out, int64_t n) {
  float max = logits[0];
  for (int64_t i = 1; i < n; ++i) max = std::max(max, logits[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i] - max));
  const float lse = max + static_cast<float>(std::log(sum));
  for (int64_t i = 0; i < n; ++i) out[i] = logits[i] - lse;
}

}  // namespace strata::cpu
