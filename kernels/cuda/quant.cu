// Group-wise dequantisation, decoding with quant_decode() from kernels/quant_format.h so the
// fp32 results match kernels/cpu/quant.cpp bit for bit, and a fused 4-bit GEMV / small GEMM.
#include <cuda_fp16.h>

#include <climits>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/ops.h"
#include "kernels/quant_format.h"

namespace strata::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float load(const float* p, int64_t i) {
  return p[i];
}
__device__ __forceinline__ float load(const Fp16* p, int64_t i) {
  return __half2float(reinterpret_cast<const __half*>(p)[i]);
}
__device__ __forceinline__ void store(float* p, int64_t i, float v) {
  p[i] = v;
}
__device__ __forceinline__ void store(Fp16* p, int64_t i, float v) {
  reinterpret_cast<__half*>(p)[i] = __float2half_rn(v);
}

template <int Bits>
__device__ __forceinline__ float decode(const QuantGroup<Bits>& g, int e) {
  const float scale = __half2float(__ushort_as_half(g.scale));
  const float min = __half2float(__ushort_as_half(g.min));
  return quant_decode(quant_code(g, e), scale, min);
}

// Thread x of row y of a block decodes element x of group blockIdx.x * kGroupsPerBlock + y:
// no division, the element index formed once from the group's.
constexpr int kGroupsPerBlock = kThreads / kQuantGroup;

template <int Bits, typename T>
__global__ void dequantize_kernel(const QuantGroup<Bits>* groups, int64_t n, int group_len,
                                  T* dst) {
  const int e = threadIdx.x;
  const int64_t g = static_cast<int64_t>(blockIdx.x) * kGroupsPerBlock + threadIdx.y;
  const int64_t i = g * group_len + e;
  if (e < group_len && i < n) store(dst, i, decode(groups[g], e));
}

// Element (r, c) lives in group c * per_col + r / 64. A block owns a tile of one group row (64
// rows) by kTileCols columns: it first copies the tile's kTileCols groups (one per column, each
// contiguous) into shared memory in 16-bit words, then writes the tile row by row with threads
// along c, so both the group reads and the element writes coalesce. In shared memory the groups
// are 9 or 17 banks apart, an odd stride, so the decode reads do not conflict.
constexpr int kTileCols = 32;
constexpr int kTileRowsPerPass = kThreads / kTileCols;

template <int Bits, typename T>
__global__ void dequantize_matrix_kernel(const QuantGroup<Bits>* groups, int64_t rows, int cols,
                                         int per_col, T* dst) {
  __shared__ QuantGroup<Bits> tile[kTileCols];
  constexpr int kWords = sizeof(QuantGroup<Bits>) / sizeof(uint16_t);
  const int c0 = blockIdx.x * kTileCols, row_group = blockIdx.y;
  const int width = min(kTileCols, cols - c0);
  const int tid = threadIdx.y * kTileCols + threadIdx.x;
  auto* words = reinterpret_cast<uint16_t*>(tile);
  for (int w = tid; w < width * kWords; w += kThreads) {
    const int c = w / kWords, word = w - c * kWords;
    const auto* group = reinterpret_cast<const uint16_t*>(
        groups + static_cast<int64_t>(c0 + c) * per_col + row_group);
    words[w] = group[word];
  }
  __syncthreads();
  if (static_cast<int>(threadIdx.x) >= width) return;
  const int64_t r0 = static_cast<int64_t>(row_group) * kQuantGroup;
  const int height = rows - r0 < kQuantGroup ? static_cast<int>(rows - r0) : kQuantGroup;
  for (int e = threadIdx.y; e < height; e += kTileRowsPerPass) {
    store(dst, (r0 + e) * cols + c0 + threadIdx.x, decode(tile[threadIdx.x], e));
  }
}

// One warp per group, lane l owning elements 2l and 2l + 1, so a 4-bit lane writes one whole byte.
// Mirrors encode_group in kernels/cpu/quant.cpp step for step (fp16 pair first, codes against the
// stored pair, correctly rounded division, round-half-even), so the bytes match the CPU's.
template <int Bits, typename T>
__global__ void quantize_kernel(const T* src, int64_t n, int64_t group_len, int64_t n_groups,
                                QuantGroup<Bits>* groups) {
  const int lane = threadIdx.x & 31;
  const int64_t g = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) >> 5;
  if (g >= n_groups) return;  // whole warps leave together
  const int64_t begin = g * group_len;
  const int len = static_cast<int>(min(group_len, n - begin));
  float v[2];
  float lo = INFINITY, hi = -INFINITY;
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int e = 2 * lane + i;
    v[i] = e < len ? load(src, begin + e) : 0.0f;
    if (e < len) lo = fminf(lo, v[i]), hi = fmaxf(hi, v[i]);
  }
  for (int o = 16; o > 0; o >>= 1) {
    lo = fminf(lo, __shfl_xor_sync(0xffffffffu, lo, o));
    hi = fmaxf(hi, __shfl_xor_sync(0xffffffffu, hi, o));
  }
  QuantGroup<Bits>& out = groups[g];
  const __half min_h = __float2half_rn(lo);
  const __half scale_h =
      __float2half_rn(__fdiv_rn(__fsub_rn(hi, lo), static_cast<float>(QuantGroup<Bits>::kMaxCode)));
  const float min = __half2float(min_h), scale = __half2float(scale_h);
  const float inv = scale > 0 ? __fdiv_rn(1.0f, scale) : 0.0f;
  uint32_t code[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const float x = rintf(__fmul_rn(__fsub_rn(v[i], min), inv));
    code[i] = 2 * lane + i < len
                  ? static_cast<uint32_t>(
                        fminf(fmaxf(x, 0.0f), static_cast<float>(QuantGroup<Bits>::kMaxCode)))
                  : 0u;
  }
  if (lane == 0) {
    out.min = __half_as_ushort(min_h);
    out.scale = __half_as_ushort(scale_h);
  }
  if constexpr (Bits == 4) {
    out.codes[lane] = static_cast<uint8_t>(code[0] | (code[1] << 4));
  } else {
    out.codes[2 * lane] = static_cast<uint8_t>(code[0]);
    out.codes[2 * lane + 1] = static_cast<uint8_t>(code[1]);
  }
}

template <typename T>
void quantize_t(int bits, const T* src, int64_t n, int64_t group_len, void* groups,
                const Stream& stream) {
  STRATA_CHECK(bits == 4 || bits == 8, "quantisation bits must be 4 or 8, got ", bits);
  STRATA_CHECK(group_len >= 1 && group_len <= kQuantGroup, "quantisation group of ", group_len);
  if (n == 0) return;
  const int64_t n_groups = (n + group_len - 1) / group_len;
  const unsigned grid = blocks_for(n_groups * 32, kThreads);
  if (bits == 4) {
    quantize_kernel<<<grid, kThreads, 0, native(stream)>>>(src, n, group_len, n_groups,
                                                           static_cast<Q4Group*>(groups));
  } else {
    quantize_kernel<<<grid, kThreads, 0, native(stream)>>>(src, n, group_len, n_groups,
                                                           static_cast<Q8Group*>(groups));
  }
  STRATA_CUDA_CHECK_LAUNCH();
}

template <typename T>
void dequantize_t(int bits, const void* groups, int64_t n, int64_t group_len, T* dst,
                  const Stream& stream) {
  STRATA_CHECK(bits == 4 || bits == 8, "quantisation bits must be 4 or 8, got ", bits);
  STRATA_CHECK(group_len >= 1 && group_len <= kQuantGroup, "quantisation group of ", group_len);
  if (n == 0) return;
  const int64_t n_groups = (n + group_len - 1) / group_len;
  STRATA_CHECK(n_groups <= int64_t{INT_MAX} * kGroupsPerBlock, "dequantising ", n_groups,
               " groups");
  const unsigned grid = blocks_for(n_groups, kGroupsPerBlock);
  const dim3 block(kQuantGroup, kGroupsPerBlock);
  const int len = static_cast<int>(group_len);
  if (bits == 4) {
    dequantize_kernel<<<grid, block, 0, native(stream)>>>(static_cast<const Q4Group*>(groups), n,
                                                          len, dst);
  } else {
    dequantize_kernel<<<grid, block, 0, native(stream)>>>(static_cast<const Q8Group*>(groups), n,
                                                          len, dst);
  }
  STRATA_CUDA_CHECK_LAUNCH();
}

template <typename T>
void dequantize_matrix_t(int bits, const void* groups, int64_t rows, int64_t cols, T* dst,
                         const Stream& stream) {
  STRATA_CHECK(bits == 4 || bits == 8, "quantisation bits must be 4 or 8, got ", bits);
  if (rows * cols == 0) return;
  const int64_t per_col = (rows + kQuantGroup - 1) / kQuantGroup;
  STRATA_CHECK(cols <= INT_MAX && per_col <= 65535, "dequantising a ", rows, " x ", cols,
               " matrix");
  const dim3 grid(blocks_for(cols, kTileCols), static_cast<unsigned>(per_col));
  const dim3 block(kTileCols, kTileRowsPerPass);
  const int c = static_cast<int>(cols), p = static_cast<int>(per_col);
  if (bits == 4) {
    dequantize_matrix_kernel<<<grid, block, 0, native(stream)>>>(
        static_cast<const Q4Group*>(groups), rows, c, p, dst);
  } else {
    dequantize_matrix_kernel<<<grid, block, 0, native(stream)>>>(
        static_cast<const Q8Group*>(groups), rows, c, p, dst);
  }
  STRATA_CUDA_CHECK_LAUNCH();
}

// A block owns one group row (64 outputs); its threads are 64 outputs x kSlices strided slices of
// the inputs, reduced through shared memory. Groups (i, j) of one warp are the same 36 bytes.
constexpr int kSlices = kThreads / kQuantGroup;

template <int M>
__global__ void q4_linear_kernel(const Fp16* x, const Q4Group* w, const Fp16* bias, Fp16* y, int m,
                                 int64_t n, int64_t k) {
  __shared__ float partial[kSlices][M][kQuantGroup];
  const int e = threadIdx.x % kQuantGroup, slice = threadIdx.x / kQuantGroup;
  const int64_t j = blockIdx.x, o = j * kQuantGroup + e;
  const int64_t per_col = (n + kQuantGroup - 1) / kQuantGroup;
  const __half* xh = reinterpret_cast<const __half*>(x);
  float acc[M];
#pragma unroll
  for (int r = 0; r < M; ++r) acc[r] = 0;
  for (int64_t i = slice; i < k; i += kSlices) {
    const float wv = decode(w[i * per_col + j], e);
#pragma unroll
    for (int r = 0; r < M; ++r) {
      if (r < m) acc[r] += __half2float(xh[r * k + i]) * wv;
    }
  }
#pragma unroll
  for (int r = 0; r < M; ++r) partial[slice][r][e] = acc[r];
  __syncthreads();
  if (slice != 0 || o >= n) return;
  const float b = bias ? __half2float(reinterpret_cast<const __half*>(bias)[o]) : 0.0f;
  for (int r = 0; r < m; ++r) {
    float sum = b;
#pragma unroll
    for (int s = 0; s < kSlices; ++s) sum += partial[s][r][e];
    store(y, r * n + o, sum);
  }
}

}  // namespace

void quantize(int bits, const float* src, int64_t n, int64_t group_len, void* groups,
              const Stream& stream) {
  quantize_t(bits, src, n, group_len, groups, stream);
}

void quantize(int bits, const Fp16* src, int64_t n, int64_t group_len, void* groups,
              const Stream& stream) {
  quantize_t(bits, src, n, group_len, groups, stream);
}

void dequantize(int bits, const void* groups, int64_t n, int64_t group_len, float* dst,
                const Stream& stream) {
  dequantize_t(bits, groups, n, group_len, dst, stream);
}

void dequantize(int bits, const void* groups, int64_t n, int64_t group_len, Fp16* dst,
                const Stream& stream) {
  dequantize_t(bits, groups, n, group_len, dst, stream);
}

void dequantize_matrix(int bits, const void* groups, int64_t rows, int64_t cols, float* dst,
                       const Stream& stream) {
  dequantize_matrix_t(bits, groups, rows, cols, dst, stream);
}

void dequantize_matrix(int bits, const void* groups, int64_t rows, int64_t cols, Fp16* dst,
                       const Stream& stream) {
  dequantize_matrix_t(bits, groups, rows, cols, dst, stream);
}

void q4_linear(const Fp16* x, const void* w_groups, const Fp16* bias, Fp16* y, int64_t m, int64_t n,
               int64_t k, const Stream& stream) {
  STRATA_CHECK(m >= 0 && m <= kQ4LinearMaxRows, "q4_linear takes at most ", kQ4LinearMaxRows,
               " rows, got ", m);
  if (m == 0 || n == 0) return;
  const auto* w = static_cast<const Q4Group*>(w_groups);
  const unsigned grid = static_cast<unsigned>((n + kQuantGroup - 1) / kQuantGroup);
  const int rows = static_cast<int>(m);
  auto s = native(stream);
  if (m <= 1) {
    q4_linear_kernel<1><<<grid, kThreads, 0, s>>>(x, w, bias, y, rows, n, k);
  } else if (m <= 4) {
    q4_linear_kernel<4><<<grid, kThreads, 0, s>>>(x, w, bias, y, rows, n, k);
  } else if (m <= 8) {
    q4_linear_kernel<8><<<grid, kThreads, 0, s>>>(x, w, bias, y, rows, n, k);
  } else {
    q4_linear_kernel<16><<<grid, kThreads, 0, s>>>(x, w, bias, y, rows, n, k);
  }
  STRATA_CUDA_CHECK_LAUNCH();
}

}  // namespace strata::cuda
