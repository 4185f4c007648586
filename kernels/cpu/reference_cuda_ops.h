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

// The tensor-core prefill kernel's arithmetic (kernels/cuda/attention.cu), its CPU twin: as
// reference.h's attention (n_new queries at positions start.., keys [0, start + n_new), q already
// scaled, grouped-query heads), but each query meets the keys in tiles of kPrefillTileKeys
// aligned to multiples of it, with an online softmax in fp32, and the probabilities are rounded
// to fp16 before they weight the values and sum to the normaliser, as the kernel's P operand
// is. Keys below first_key are masked (left padding); a query that sees none gets zeros.
inline constexpr int64_t kPrefillTileKeys = 64;
void attention_tiled(const float* q, int64_t ld_q, const float* k, const float* v, int64_t ld_kv,
                     float* out, int64_t start, int64_t n_new, int64_t n_heads, int64_t n_kv_heads,
                     int64_t head_dim, int64_t first_key);

// Cumulative softmax(logits / temperature) in double, normalised so the last entry is 1.
std::vector<double> softmax_cdf(const float* logits, int64_t n, float temperature);

}  // namespace strata::cpu::ref
