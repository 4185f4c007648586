#include "kernels/cpu/reference_cuda_ops.h"

#include <algorithm>
#include <cmath>

#include "core/dtype.h"

namespace strata::cpu::ref {

void attention_tiled(const float* q, int64_t ld_q, const float* k, const float* v, int64_t ld_kv,
                     float* out, int64_t start, int64_t n_new, int64_t n_heads, int64_t n_kv_heads,
                     int64_t head_dim, int64_t first_key) {
  const auto half = [](float x) { return fp16_to_fp32(fp32_to_fp16(x)); };
  const int64_t t = kPrefillTileKeys;
  std::vector<float> acc(static_cast<size_t>(head_dim)), s(static_cast<size_t>(t));
  for (int64_t h = 0; h < n_heads; ++h) {
    const int64_t kv = h / (n_heads / n_kv_heads) * head_dim;
    for (int64_t i = 0; i < n_new; ++i) {
      const int64_t pos = start + i;
      const float* qi = q + i * ld_q + h * head_dim;
      float m = -INFINITY, l = 0;
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t tile = first_key / t * t; tile <= pos; tile += t) {
        float tile_max = -INFINITY;
        for (int64_t j = 0; j < t; ++j) {
          const int64_t key = tile + j;
          s[j] = -INFINITY;
          if (key < first_key || key > pos) continue;
          float dot = 0;
          for (int64_t d = 0; d < head_dim; ++d) dot += qi[d] * k[key * ld_kv + kv + d];
          s[j] = dot;
          tile_max = std::max(tile_max, dot);
        }
        if (tile_max == -INFINITY) continue;
        const float m_new = std::max(m, tile_max);
        const float alpha = std::exp(m - m_new);  // 0 while m is -inf
        l *= alpha;
        for (auto& a : acc) a *= alpha;
        m = m_new;
        for (int64_t j = 0; j < t; ++j) {
          if (s[j] == -INFINITY) continue;
          const float p = half(std::exp(s[j] - m));
          l += p;
          for (int64_t d = 0; d < head_dim; ++d) acc[d] += p * v[(tile + j) * ld_kv + kv + d];
        }
      }
      float* o = out + i * ld_q + h * head_dim;
      for (int64_t d = 0; d < head_dim; ++d) o[d] = l > 0 ? acc[d] / l : 0.0f;
    }
  }
}

void embed(const float* token_table, const float* position_table, const int32_t* tokens,
           const int32_t* row_offsets, const int32_t* starts, const int32_t* pad_left,
           int64_t n_seqs, int64_t dim, float* out) {
  for (int64_t s = 0; s < n_seqs; ++s) {
    const int64_t pad = pad_left ? pad_left[s] : 0;
    for (int64_t r = row_offsets[s]; r < row_offsets[s + 1]; ++r) {
      const int64_t i = r - row_offsets[s];
      float* dst = out + r * dim;
      if (i < pad) {
        std::fill(dst, dst + dim, 0.0f);
        continue;
      }
      const float* pos = position_table + (starts[s] + (i - pad) + 2) * dim;
      for (int64_t d = 0; d < dim; ++d) {
        const float word = token_table ? token_table[tokens[r] * dim + d] : dst[d];
        dst[d] = word + pos[d];
      }
    }
  }
}

std::vector<double> softmax_cdf(const float* logits, int64_t n, float temperature) {
  const double max = *std::max_element(logits, logits + n);
  std::vector<double> cdf(static_cast<size_t>(n));
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    sum += std::exp((logits[i] - max) / temperature);
    cdf[static_cast<size_t>(i)] = sum;
  }
  for (auto& c : cdf) c /= sum;
  return cdf;
}

}  // namespace strata::cpu::ref
