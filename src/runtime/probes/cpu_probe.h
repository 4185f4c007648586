// Measurements of this machine's CPU, taken in the same run as what they bound.
#pragma once

#include <cstdint>

namespace strata {

// fp32 GEMM rate on n x n x n, the faster of OpenBLAS and the engine's GEMM (gemm.h), best of a few
// repetitions, in GFLOP/s.
double measure_sgemm_gflops(int n = 2048, int repetitions = 3);

// sgemm rate with `rows` activation rows over a decoder layer's weight shapes (hidden h, MLP
// 4h), cycling through enough copies that the weights stream from memory, in GFLOP/s. blocked:
// the weights rewritten once by cpu::block_weight (0 where they cannot be).
double measure_sgemm_rows_gflops(int64_t rows, int hidden = 1024, bool blocked = false);

// memcpy of `size_bytes` by one thread (cache and activation moves), in GB/s.
double measure_copy_gbps(uint64_t size_bytes = 256ull << 20);
// Reading `size_bytes` (a sum over it) by every compute thread, in GB/s: the rate that bounds
// work which streams from memory, such as decode attention over the cache.
double measure_read_gbps(uint64_t size_bytes = 1ull << 30);
// fp16 -> fp32 conversion of `numel` elements by one thread, in GB/s of fp32 written (the
// expansion of offloaded weights on the compute stream).
double measure_expand_gbps(uint64_t numel = 64ull << 20);
// Decode attention (one query against `context` cached keys per sequence, the engine's kernel)
// in GFLOP/s, counting 4 * hidden * context per sequence.
double measure_decode_attention_gflops(int64_t hidden = 2048, int64_t n_heads = 32,
                                       int64_t context = 512, int64_t sequences = 16);

}  // namespace strata
