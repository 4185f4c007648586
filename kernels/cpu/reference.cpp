#include "kernels/cpu/reference.h"

#include <cmath>
#include <limits>
#include <vector>

namespace strata::cpu::ref {

void linear(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t n,
            int64_t k) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double acc = bias ? bias[j] : 0.0;
      for (int64_t p = 0; p < k; ++p) acc += static_cast<double>(x[i * k + p]) * w[j * k + p];
      y[i * n + j] = static_cast<float>(acc);
    }
  }
}

void layer_norm(const float* x, const float* gamma, const float* beta, float* y, int64_t rows,
                int64_t dim, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = x + r * dim;
    double mean = 0;
    for (int64_t i = 0; i < dim; ++i) mean += in[i];
    mean /= static_cast<double>(dim);
    double var = 0;
    for (int64_t i = 0; i < dim; ++i) var += (in[i] - mean) * (in[i] - mean);
    var /= static_cast<double>(dim);
    const double inv = 1.0 / std::sqrt(var + eps);
    for (int64_t i = 0; i < dim; ++i) {
      double v = (in[i] - mean) * inv;
      if (gamma) v = v * gamma[i] + beta[i];
      y[r * dim + i] = static_cast<float>(v);
    }
  }
}

void rms_norm(const float* x, const float* weight, float* y, int64_t rows, int64_t dim, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    double sq = 0;
    for (int64_t i = 0; i < dim; ++i) sq += static_cast<double>(x[r * dim + i]) * x[r * dim + i];
    const double inv = 1.0 / std::sqrt(sq / static_cast<double>(dim) + eps);
    for (int64_t i = 0; i < dim; ++i)
      y[r * dim + i] = static_cast<float>(x[r * dim + i] * inv * weight[i]);
  }
}

void rotary(float* x, int64_t ld, int64_t rows, const int64_t* positions, int64_t n_heads,
            int64_t head_dim, const float* inv_freq) {
  const int64_t half = head_dim / 2;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t h = 0; h < n_heads; ++h) {
      float* a = x + r * ld + h * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        // The angle in fp32, as Hugging Face forms it.
        const double angle = static_cast<float>(positions[r]) * inv_freq[i];
        const double a0 = a[i], b0 = a[i + half];
        a[i] = static_cast<float>(a0 * std::cos(angle) - b0 * std::sin(angle));
        a[i + half] = static_cast<float>(b0 * std::cos(angle) + a0 * std::sin(angle));
      }
    }
  }
}

void silu_mul(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i];
    gate[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up[i]);
  }
}

void gelu(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = 0.5 * x[i] * (1.0 + std::erf(x[i] / std::sqrt(2.0)));
}

void attention(const float* q, int64_t ld_q, const float* k, const float* v, int64_t ld_kv,
               float* out, int64_t start, int64_t n_new, int64_t n_heads, int64_t n_kv_heads,
               int64_t head_dim) {
  for (int64_t h = 0; h < n_heads; ++h) {
    const int64_t kv = h / (n_heads / n_kv_heads) * head_dim;
    for (int64_t i = 0; i < n_new; ++i) {
      const int64_t n_keys = start + i + 1;
      std::vector<double> p(n_keys);
      double max = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < n_keys; ++j) {
        double s = 0;
        for (int64_t d = 0; d < head_dim; ++d) {
          s += static_cast<double>(q[i * ld_q + h * head_dim + d]) * k[j * ld_kv + kv + d];
        }
        p[j] = s;
        max = std::max(max, s);
      }
      double sum = 0;
      for (auto& s : p) sum += (s = std::exp(s - max));
      for (int64_t d = 0; d < head_dim; ++d) {
        double acc = 0;
        for (int64_t j = 0; j < n_keys; ++j) acc += p[j] * v[j * ld_kv + kv + d];
        out[i * ld_q + h * head_dim + d] = static_cast<float>(acc / sum);
      }
    }
  }
}

void log_softmax(const float* logits, float* out, int64_t n) {
  double max = logits[0];
  for (int64_t i = 1; i < n; ++i) max = std::max<double>(max, logits[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(logits[i] - max);
  const double lse = max + std::log(sum);
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(logits[i] - lse);
}

}  // namespace strata::cpu::ref
