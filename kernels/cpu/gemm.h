// The fp32 GEMM every linear layer runs: oneDNN's matmul where the build has it (it keeps its
// rate at the few rows of a decode step, where OpenBLAS packs the whole weight on each call),
// else OpenBLAS. STRATA_GEMM=openblas picks OpenBLAS at run time, for comparisons.
#pragma once

#include <cstdint>
#include <string>

namespace strata::cpu {

// y[m, 0:n] (rows of stride ldy) = x[m, k] (stride ldx) * w[n, k]^T (stride ldw).
void gemm_nt(const float* x, int64_t ldx, const float* w, int64_t ldw, float* y, int64_t ldy,
             int64_t m, int64_t n, int64_t k);

// y[m, 0:n] (stride ldy) = x[m, k] (stride ldx) * v[k, n] (stride ldv).
void gemm_nn(const float* x, int64_t ldx, const float* v, int64_t ldv, float* y, int64_t ldy,
             int64_t m, int64_t n, int64_t k);

// A weight w[n, k] that stays put for a whole run can be rewritten once, in place, into the GEMM
// library's own layout, so decode-sized GEMMs read it as it lies instead of repacking all of it
// on every call (at 32 rows that repacking is about a quarter of the time). Results are the
// same bits as gemm_nt's on the plain weight. False without oneDNN, under STRATA_GEMM=openblas,
// for small weights (they run on OpenBLAS) and where the layout would pad.
bool can_block_weight(int64_t n, int64_t k);
void block_weight(float* w, int64_t n, int64_t k);  // requires can_block_weight
// gemm_nt on a weight block_weight has rewritten (its stride is its own).
void gemm_nt_blocked(const float* x, int64_t ldx, const float* w, float* y, int64_t ldy, int64_t m,
                     int64_t n, int64_t k);

// Whether a GEMM called inside a parallel region runs on that one thread (oneDNN under OpenMP
// does; OpenBLAS would start its own threads), so callers may split work over threads first.
bool gemm_nests();

// Which library gemm_nt runs: "onednn" or "openblas".
std::string gemm_library();

// Threads of every CPU kernel (GEMM libraries and the parallel loops); 0 keeps the default
// (one per core). Takes effect on each thread's next call.
void set_compute_threads(int threads);
int compute_threads();

}  // namespace strata::cpu
