// Plain references for CUDA ops that the CPU path does not have in this form (the CUDA tests hold
// the GPU against these; reference.h covers the rest).
#pragma once

#include <cstdint>
#include <vector>

namespace strata::cpu::ref {

// OPT embedding of a batch laid out as cuda::embed takes it: sequence s owns rows
// [row_offsets[s], row_offsets[s + 1]), its first pad_left[s] rows are zeros (pad_left may be
// null), row i's position id is starts[s] + (i - pad_left[s]) + 2. With token_table null the
// position rows are added to out in place.
void embed(const float* token_table, const float* position_table, const int32_t* tokens,
           const int32_t* row_offsets, const int32_t* starts, const int32_t* pad_left,
           int64_t n_seqs, int64_t dim, float* out);

// Cumulative softmax(logits / temperature) in double, normalised so the last entry is 1.
std::vector<double> softmax_cdf(const float* logits, int64_t n, float temperature);

}  // namespace strata::cpu::ref
