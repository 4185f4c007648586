// Small kernels the stage runner needs around the GEMMs and attention: row gather, the query
// scale and the KV cache append of a packed batch.
#include <cuda_fp16.h>

#include <algorithm>
#include <climits>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/rows.cuh"

namespace strata::cuda {
namespace {

constexpr int kThreads = 256;

unsigned grid_for(int64_t n) {
  return static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, 65536));
}

// One block per row; 16-byte copies would need aligned dims, and these rows are short.
__global__ void gather_rows_kernel(const __half* table, const int32_t* indices, int64_t dim,
                                   __half* out) {
  const __half* src = table + static_cast<int64_t>(indices[blockIdx.x]) * dim;
  __half* dst = out + static_cast<int64_t>(blockIdx.x) * dim;
  for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) dst[d] = src[d];
}

__global__ void scale_kernel(__half* y, int64_t n, float factor) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    y[i] = __float2half_rn(__half2float(y[i]) * factor);
  }
}

// One block per packed row; the row finds its sequence by binary search over row_offsets (as
// embed does), so a mixed batch of prefill and decode sequences is one launch.
__global__ void kv_append_kernel(const __half* k, const __half* v, const int32_t* row_offsets,
                                 const int32_t* starts, const int32_t* slots, int n_seqs,
                                 int64_t hidden, __half* cache, int64_t capacity) {
  const int row = static_cast<int>(blockIdx.x);
  const int seq = sequence_of_row(row_offsets, n_seqs, row);
  const int64_t slot = slots ? slots[seq] : seq;
  const int64_t position = starts[seq] + (row - row_offsets[seq]);
  __half* keys = cache + slot * 2 * capacity * hidden + position * hidden;
  __half* values = keys + capacity * hidden;
  const __half* k_row = k + static_cast<int64_t>(row) * hidden;
  const __half* v_row = v + static_cast<int64_t>(row) * hidden;
  for (int64_t d = threadIdx.x; d < hidden; d += blockDim.x) {
    keys[d] = k_row[d];
    values[d] = v_row[d];
  }
}

}  // namespace

void gather_rows(const Fp16* table, const int32_t* indices, int64_t n, int64_t dim, Fp16* out,
                 const Stream& stream) {
  if (n == 0 || dim == 0) return;
  STRATA_CHECK(n <= INT_MAX, "gather of ", n, " rows");
  gather_rows_kernel<<<static_cast<unsigned>(n), 128, 0, native(stream)>>>(
      reinterpret_cast<const __half*>(table), indices, dim, reinterpret_cast<__half*>(out));
  STRATA_CUDA_CHECK_LAUNCH();
}

void scale_inplace(Fp16* y, int64_t n, float factor, const Stream& stream) {
  if (n == 0) return;
  scale_kernel<<<grid_for(n), kThreads, 0, native(stream)>>>(reinterpret_cast<__half*>(y), n,
                                                             factor);
  STRATA_CUDA_CHECK_LAUNCH();
}

void kv_append(const Fp16* k, const Fp16* v, const int32_t* row_offsets, const int32_t* starts,
               const int32_t* slots, int64_t n_seqs, int64_t rows, int64_t hidden, Fp16* cache,
               int64_t capacity, const Stream& stream) {
  if (rows == 0) return;
  STRATA_CHECK(n_seqs > 0 && n_seqs <= INT_MAX && rows <= INT_MAX, "KV append of ", rows,
               " rows in ", n_seqs, " sequences");
  STRATA_CHECK(row_offsets && starts, "KV append needs row offsets and starts");
  kv_append_kernel<<<static_cast<unsigned>(rows), 128, 0, native(stream)>>>(
      reinterpret_cast<const __half*>(k), reinterpret_cast<const __half*>(v), row_offsets, starts,
      slots, static_cast<int>(n_seqs), hidden, reinterpret_cast<__half*>(cache), capacity);
  STRATA_CUDA_CHECK_LAUNCH();
}

}  // namespace strata::cuda
