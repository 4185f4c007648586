#include "kernels/cpu/reference_cuda_ops.h"

#include <algorithm>
#include <cmath>

namespace strata::cpu::ref {

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
