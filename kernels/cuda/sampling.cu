// Log-softmax and token selection over fp32 logits, one block per row.
#include <cuda_runtime.h>

#include <climits>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/reduce.cuh"

namespace strata::cuda {
namespace {

constexpr int kThreads = 512;

__global__ void log_softmax_kernel(const float* logits, float* out, int64_t n) {
  __shared__ float scratch[32];
  const float* in = logits + blockIdx.x * n;
  float m = -INFINITY;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) m = fmaxf(m, in[i]);
  m = block_reduce<true>(m, scratch);
  float sum = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) sum += expf(in[i] - m);
  const float lse = m + logf(block_reduce<false>(sum, scratch));
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) out[blockIdx.x * n + i] = in[i] - lse;
}

// First index of the maximum: reduce (value, -index) pairs.
__global__ void argmax_kernel(const float* logits, int64_t n, int32_t* tokens) {
  __shared__ float best_v[32];
  __shared__ int64_t best_i[32];
  const float* in = logits + blockIdx.x * n;
  float v = -INFINITY;
  int64_t idx = n;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    if (in[i] > v) v = in[i], idx = i;  // strided ascending: keeps the first per thread
  }
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, v, o);
    const int64_t oi = __shfl_xor_sync(0xffffffffu, idx, o);
    if (ov > v || (ov == v && oi < idx)) v = ov, idx = oi;
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) best_v[warp] = v, best_i[warp] = idx;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < static_cast<int>(blockDim.x >> 5); ++w) {
      if (best_v[w] > v || (best_v[w] == v && best_i[w] < idx)) v = best_v[w], idx = best_i[w];
    }
    // An all-NaN row has no maximum: token 0, as the CPU's max_element gives.
    tokens[blockIdx.x] = static_cast<int32_t>(idx == n ? 0 : idx);
  }
}

// Inverse CDF: a block-wide scan in chunks of blockDim.x until the running mass passes u * total.
__global__ void sample_kernel(const float* logits, int64_t n, float inv_t, const float* uniforms,
                              int32_t* tokens) {
  __shared__ float scratch[32];
  __shared__ float warp_prefix[32];
  __shared__ int found, last_positive;
  const float* in = logits + blockIdx.x * n;
  float m = -INFINITY;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) m = fmaxf(m, in[i]);
  m = block_reduce<true>(m, scratch);
  float sum = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) sum += expf((in[i] - m) * inv_t);
  const float target = uniforms[blockIdx.x] * block_reduce<false>(sum, scratch);
  if (threadIdx.x == 0) found = INT_MAX, last_positive = 0;
  __syncthreads();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  float base = 0;
  for (int64_t chunk = 0; chunk < n; chunk += blockDim.x) {
    const int64_t i = chunk + threadIdx.x;
    const float p = i < n ? expf((in[i] - m) * inv_t) : 0.0f;
    float incl = p;  // inclusive scan within the warp
    for (int o = 1; o < 32; o <<= 1) {
      const float t = __shfl_up_sync(0xffffffffu, incl, o);
      if (lane >= o) incl += t;
    }
    if (lane == 31) warp_prefix[warp] = incl;
    __syncthreads();
    float before = base, chunk_total = 0;
    for (int w = 0; w < n_warps; ++w) {
      if (w < warp) before += warp_prefix[w];
      chunk_total += warp_prefix[w];
    }
    // The first index whose cumulative mass exceeds the target.
    if (p > 0) {
      atomicMax(&last_positive, static_cast<int>(i));
      if (before + incl > target) atomicMin(&found, static_cast<int>(i));
    }
    __syncthreads();
    const bool done = found != INT_MAX;
    base += chunk_total;
    __syncthreads();  // warp_prefix and found are read before the next chunk writes them
    if (done) break;
  }
  // Rounding can leave the target past the total: the last token with mass.
  if (threadIdx.x == 0) tokens[blockIdx.x] = found != INT_MAX ? found : last_positive;
}

void check_rows(int64_t rows, int64_t n) {
  STRATA_CHECK(rows <= INT_MAX && n > 0 && n <= INT_MAX, "logits of ", rows, " x ", n);
}

}  // namespace

void log_softmax(const float* logits, float* out, int64_t rows, int64_t n, const Stream& stream) {
  if (rows == 0) return;
  check_rows(rows, n);
  log_softmax_kernel<<<static_cast<unsigned>(rows), kThreads, 0, native(stream)>>>(logits, out, n);
  STRATA_CUDA_CHECK_LAUNCH();
}

void argmax(const float* logits, int64_t rows, int64_t n, int32_t* tokens, const Stream& stream) {
  if (rows == 0) return;
  check_rows(rows, n);
  argmax_kernel<<<static_cast<unsigned>(rows), kThreads, 0, native(stream)>>>(logits, n, tokens);
  STRATA_CUDA_CHECK_LAUNCH();
}

void sample_temperature(const float* logits, int64_t rows, int64_t n, float temperature,
                        const float* uniforms, int32_t* tokens, const Stream& stream) {
  if (rows == 0) return;
  check_rows(rows, n);
  STRATA_CHECK(temperature > 0, "sampling temperature ", temperature);
  sample_kernel<<<static_cast<unsigned>(rows), kThreads, 0, native(stream)>>>(
      logits, n, 1.0f / temperature, uniforms, tokens);
  STRATA_CUDA_CHECK_LAUNCH();
}

}  // namespace strata::cuda
