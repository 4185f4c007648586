// Group-wise quantisation on the CPU (layout in kernels/quant_format.h). Groups cover
// contiguous runs of group_len <= kQuantGroup values; a shorter last group is padded.
#pragma once

#include <cstdint>

#include "kernels/quant_format.h"

namespace strata {

// Groups needed for n values in groups of group_len.
inline int64_t quant_groups(int64_t n, int64_t group_len) {
  return (n + group_len - 1) / group_len;
}

// n contiguous values, groups of group_len, into quant_groups(n, group_len) packed groups.
void quantize(int bits, const float* src, int64_t n, int64_t group_len, void* dst);
void dequantize(int bits, const void* src, int64_t n, int64_t group_len, float* dst);

// A row-major matrix [rows, cols] (a linear layer's [out, in] weight), grouped along rows: for
// each column c, groups over rows [0, 64), [64, 128), ...; group (c, j) is packed group
// c * quant_groups(rows, 64) + j.
uint64_t quantized_matrix_bytes(int bits, int64_t rows, int64_t cols);
void quantize_matrix(int bits, const float* src, int64_t rows, int64_t cols, void* dst);
void dequantize_matrix(int bits, const void* src, int64_t rows, int64_t cols, float* dst);

}  // namespace strata
