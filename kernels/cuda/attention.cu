// Attention on fp16 q / k / v with fp32 softmax and accumulation. Prefill is flash style: a block
// owns a tile of queries of one head and streams key / value tiles through shared memory with an
// online softmax, so the score matrix never exists. Decode splits each sequence's cache over
// blocks (long contexts still fill the GPU) and combines the partial softmaxes afterwards.
#include <cuda_fp16.h>

#include <climits>

#include "kernels/cpu/reference_cuda_ops.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/reduce.cuh"

namespace strata::cuda {
namespace {

constexpr int kMaxHeadDim = 128;
constexpr int kPerLane = kMaxHeadDim / 32;  // head elements a lane owns: d = lane + 32 t

__device__ __forceinline__ float h2f(const Fp16* p, int64_t i) {
  return __half2float(reinterpret_cast<const __half*>(p)[i]);
}

// ---- prefill ----
constexpr int kWarps = 4;
constexpr int kQueriesPerWarp = 4;
constexpr int kBlockQueries = kWarps * kQueriesPerWarp;
constexpr int kTileKeys = 32;  // one key per lane when scoring

__global__ void __launch_bounds__(kWarps * 32)
    prefill_kernel(const Fp16* q, int64_t ld_q, int64_t seq_stride_q, const Fp16* k, const Fp16* v,
                   int64_t ld_kv, int64_t seq_stride_kv, Fp16* out, int64_t start_all,
                   int64_t n_new_all, int head_dim, int heads_per_kv, const int32_t* key_begin,
                   const int32_t* row_offsets, const int32_t* starts, const int32_t* slots) {
  // K rows padded by one float so lane j reading row j hits distinct banks.
  __shared__ float ks[kTileKeys][kMaxHeadDim + 1];
  __shared__ float vs[kTileKeys][kMaxHeadDim];
  __shared__ float qs[kBlockQueries][kMaxHeadDim];
  __shared__ float ps[kWarps][kTileKeys];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t s = blockIdx.z, h = blockIdx.y,
                q0 = static_cast<int64_t>(blockIdx.x) * kBlockQueries;
  const int d_count = head_dim;
  // Packed batches give each sequence its own rows, start and cache slot.
  const int64_t row0 = row_offsets ? row_offsets[s] : 0;
  const int64_t n_new = row_offsets ? row_offsets[s + 1] - row0 : n_new_all;
  const int64_t start = starts ? starts[s] : start_all;
  const int64_t kv_seq = slots ? slots[s] : s;
  if (q0 >= n_new) return;  // the whole block: this sequence is shorter than the grid
  const Fp16* qb = q + s * seq_stride_q + row0 * ld_q + h * head_dim;
  // Query head h reads key / value head h / heads_per_kv (grouped-query attention).
  const Fp16* kb = k + kv_seq * seq_stride_kv + h / heads_per_kv * head_dim;
  const Fp16* vb = v + kv_seq * seq_stride_kv + h / heads_per_kv * head_dim;
  const int64_t first_key = key_begin ? key_begin[s] : 0;
  const int64_t q_end = min(q0 + kBlockQueries, n_new);
  const int64_t last_key = start + q_end - 1;  // the block's last query sees keys up to here

  for (int i = threadIdx.x; i < kBlockQueries * d_count; i += blockDim.x) {
    const int r = i / d_count, d = i % d_count;
    qs[r][d] = q0 + r < n_new ? h2f(qb, (q0 + r) * ld_q + d) : 0.0f;
  }
  float m[kQueriesPerWarp], l[kQueriesPerWarp], acc[kQueriesPerWarp][kPerLane];
#pragma unroll
  for (int qi = 0; qi < kQueriesPerWarp; ++qi) {
    m[qi] = -INFINITY;
    l[qi] = 0;
#pragma unroll
    for (int t = 0; t < kPerLane; ++t) acc[qi][t] = 0;
  }

  for (int64_t tile = first_key / kTileKeys * kTileKeys; tile <= last_key; tile += kTileKeys) {
    __syncthreads();  // the previous tile (and the q load) are done with shared memory
    for (int i = threadIdx.x; i < kTileKeys * d_count; i += blockDim.x) {
      const int j = i / d_count, d = i % d_count;
      const int64_t key = tile + j;
      const bool in = key <= last_key;
      ks[j][d] = in ? h2f(kb, key * ld_kv + d) : 0.0f;
      vs[j][d] = in ? h2f(vb, key * ld_kv + d) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int qi = 0; qi < kQueriesPerWarp; ++qi) {
      const int r = warp * kQueriesPerWarp + qi;
      const int64_t pos = start + q0 + r;
      if (q0 + r >= n_new) continue;  // warp-uniform
      const int64_t key = tile + lane;
      const bool valid = key >= first_key && key <= pos;
      float score = -INFINITY;
      if (valid) {
        score = 0;
        for (int d = 0; d < d_count; ++d) score += qs[r][d] * ks[lane][d];
      }
      const float tile_max = warp_max(score);
      if (tile_max == -INFINITY) continue;  // no visible key in this tile
      const float m_new = fmaxf(m[qi], tile_max);
      const float alpha = __expf(m[qi] - m_new);  // 0 while m is still -inf
      const float p = valid ? __expf(score - m_new) : 0.0f;
      l[qi] = l[qi] * alpha + warp_sum(p);
      m[qi] = m_new;
      ps[warp][lane] = p;
      __syncwarp();
#pragma unroll
      for (int t = 0; t < kPerLane; ++t) {
        const int d = lane + 32 * t;
        if (d >= d_count) break;
        float a = acc[qi][t] * alpha;
        for (int j = 0; j < kTileKeys; ++j) a += ps[warp][j] * vs[j][d];
        acc[qi][t] = a;
      }
      __syncwarp();
    }
  }
#pragma unroll
  for (int qi = 0; qi < kQueriesPerWarp; ++qi) {
    const int64_t row = q0 + warp * kQueriesPerWarp + qi;
    if (row >= n_new) continue;
    // A left-padding query saw no key: zeros.
    const float inv = l[qi] > 0 ? 1.0f / l[qi] : 0.0f;
    __half* o =
        reinterpret_cast<__half*>(out + s * seq_stride_q + (row0 + row) * ld_q + h * head_dim);
#pragma unroll
    for (int t = 0; t < kPerLane; ++t) {
      const int d = lane + 32 * t;
      if (d < d_count) o[d] = __float2half_rn(acc[qi][t] * inv);
    }
  }
}

// ---- prefill on tensor cores (sm_80+, head_dim 64 or 128, 16-byte aligned rows) ----
// FlashAttention-2's loop on mma.sync m16n8k16 (fp16 in, fp32 accumulate): each of 4 warps owns
// 16 queries of the block's 64 and keeps their Q fragments in registers; per tile of 64 keys the
// warp computes S = Q K^T, masks it, updates the running max and sum of its rows, rounds the
// probabilities to fp16 and adds P V into fp32 accumulators. P never leaves registers: the
// accumulator layout of S is the operand layout P needs. kernels/cpu/reference_cuda_ops.h's
// attention_tiled is the same arithmetic on the CPU.
constexpr int kMmaWarps = 4;
constexpr int kMmaQueries = 16 * kMmaWarps;
constexpr int kMmaKeys = static_cast<int>(cpu::ref::kPrefillTileKeys);
constexpr int kSmemPad = 8;  // halves per shared row past head_dim: fragment loads hit 32 banks
static_assert(kMmaQueries == kMmaKeys, "the query tile is staged in the key buffer");

__device__ __forceinline__ uint32_t lds32(const __half* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

__device__ __forceinline__ uint32_t pack(__half lo, __half hi) {
  const __half2 h = __halves2half2(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// d += a b: a the 16 x 16 row-major A fragment, (b0, b1) the 16 x 8 column-major B fragment.
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                          uint32_t b1) {
#if __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// rows [0, 64) of a tile (rows >= valid are zeros) into shared rows of D + kSmemPad halves.
template <int D>
__device__ __forceinline__ void stage_rows(const __half* src, int64_t ld, int64_t valid,
                                           __half* dst) {
  constexpr int kVecs = D / 8;
  for (int i = threadIdx.x; i < kMmaKeys * kVecs; i += kMmaWarps * 32) {
    const int r = i / kVecs, c = i % kVecs;  // powers of two: shifts
    uint4 val = make_uint4(0, 0, 0, 0);
    if (r < valid) val = *reinterpret_cast<const uint4*>(src + r * ld + c * 8);
    *reinterpret_cast<uint4*>(dst + r * (D + kSmemPad) + c * 8) = val;
  }
}

template <int D>
__global__ void __launch_bounds__(kMmaWarps * 32)
    prefill_mma_kernel(const Fp16* q, int64_t ld_q, int64_t seq_stride_q, const Fp16* k,
                       const Fp16* v, int64_t ld_kv, int64_t seq_stride_kv, Fp16* out,
                       int64_t start_all, int64_t n_new_all, int heads_per_kv,
                       const int32_t* key_begin, const int32_t* row_offsets, const int32_t* starts,
                       const int32_t* slots) {
  constexpr int kRow = D + kSmemPad;
  __shared__ __align__(16) __half ks[kMmaKeys * kRow];  // the query tile first, then each key tile
  __shared__ __align__(16) __half vs[kMmaKeys * kRow];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int64_t s = blockIdx.z, h = blockIdx.y, q0 = static_cast<int64_t>(blockIdx.x) * kMmaQueries;
  const int64_t row0 = row_offsets ? row_offsets[s] : 0;
  const int64_t n_new = row_offsets ? row_offsets[s + 1] - row0 : n_new_all;
  const int64_t start = starts ? starts[s] : start_all;
  const int64_t kv_seq = slots ? slots[s] : s;
  if (q0 >= n_new) return;
  const auto* qb = reinterpret_cast<const __half*>(q) + s * seq_stride_q + row0 * ld_q + h * D;
  const auto* kb =
      reinterpret_cast<const __half*>(k) + kv_seq * seq_stride_kv + h / heads_per_kv * D;
  const auto* vb =
      reinterpret_cast<const __half*>(v) + kv_seq * seq_stride_kv + h / heads_per_kv * D;
  const int64_t first_key = key_begin ? key_begin[s] : 0;
  const int64_t q_end = min(q0 + kMmaQueries, n_new);
  const int64_t last_key = start + q_end - 1;

  // This thread's two query rows of the warp's 16: r and r + 8.
  const int r = warp * 16 + g;
  const int64_t pos[2] = {start + q0 + r, start + q0 + r + 8};
  const bool live[2] = {q0 + r < n_new, q0 + r + 8 < n_new};

  stage_rows<D>(qb + q0 * ld_q, ld_q, n_new - q0, ks);
  __syncthreads();
  uint32_t qf[D / 16][4];
#pragma unroll
  for (int c = 0; c < D / 16; ++c) {
    qf[c][0] = lds32(ks + r * kRow + c * 16 + 2 * t);
    qf[c][1] = lds32(ks + (r + 8) * kRow + c * 16 + 2 * t);
    qf[c][2] = lds32(ks + r * kRow + c * 16 + 8 + 2 * t);
    qf[c][3] = lds32(ks + (r + 8) * kRow + c * 16 + 8 + 2 * t);
  }
  float o[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

  for (int64_t tile = first_key / kMmaKeys * kMmaKeys; tile <= last_key; tile += kMmaKeys) {
    __syncthreads();  // the Q fragments, or the previous tile, are out of shared memory
    const int64_t valid = last_key + 1 - tile;
    stage_rows<D>(kb + tile * ld_kv, ld_kv, valid, ks);
    stage_rows<D>(vb + tile * ld_kv, ld_kv, valid, vs);
    __syncthreads();
    // S = Q K^T: 8 tiles of 8 keys; B[d][key] = K[key][d], a contiguous pair of a key row.
    float sc[kMmaKeys / 8][4];
#pragma unroll
    for (int n = 0; n < kMmaKeys / 8; ++n) {
      sc[n][0] = sc[n][1] = sc[n][2] = sc[n][3] = 0.0f;
#pragma unroll
      for (int c = 0; c < D / 16; ++c) {
        const __half* kr = ks + (n * 8 + g) * kRow + c * 16 + 2 * t;
        mma_16816(sc[n], qf[c], lds32(kr), lds32(kr + 8));
      }
    }
    // Mask (causal, padding, past the sequence) and the running max of each row.
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < kMmaKeys / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int row = e >> 1;
        const int64_t key = tile + n * 8 + 2 * t + (e & 1);
        if (!live[row] || key < first_key || key > pos[row]) sc[n][e] = -INFINITY;
        tile_max[row] = fmaxf(tile_max[row], sc[n][e]);
      }
    }
    float alpha[2];
#pragma unroll
    for (int row = 0; row < 2; ++row) {  // a row's 64 scores sit in the 4 threads of its group
      tile_max[row] = fmaxf(tile_max[row], __shfl_xor_sync(0xffffffffu, tile_max[row], 1));
      tile_max[row] = fmaxf(tile_max[row], __shfl_xor_sync(0xffffffffu, tile_max[row], 2));
      const float m_new = fmaxf(m[row], tile_max[row]);
      alpha[row] = m_new == -INFINITY ? 1.0f : __expf(m[row] - m_new);
      m[row] = m_new;
    }
    // P in fp16, laid out as the A fragments of 4 chunks of 16 keys; the sum from the same values.
    uint32_t pf[kMmaKeys / 16][4];
    float sum[2] = {0.0f, 0.0f};
#pragma unroll
    for (int n = 0; n < kMmaKeys / 8; ++n) {
#pragma unroll
      for (int row = 0; row < 2; ++row) {
        const float a = sc[n][2 * row], b = sc[n][2 * row + 1];
        const __half2 p = __floats2half2_rn(a == -INFINITY ? 0.0f : __expf(a - m[row]),
                                            b == -INFINITY ? 0.0f : __expf(b - m[row]));
        sum[row] += __low2float(p) + __high2float(p);
        pf[n / 2][(n % 2) * 2 + row] = *reinterpret_cast<const uint32_t*>(&p);
      }
    }
#pragma unroll
    for (int row = 0; row < 2; ++row) {
      sum[row] += __shfl_xor_sync(0xffffffffu, sum[row], 1);
      sum[row] += __shfl_xor_sync(0xffffffffu, sum[row], 2);
      l[row] = l[row] * alpha[row] + sum[row];
    }
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      o[n][0] *= alpha[0];
      o[n][1] *= alpha[0];
      o[n][2] *= alpha[1];
      o[n][3] *= alpha[1];
    }
    // O += P V: B[key][d] = V[key][d], two key rows per register.
#pragma unroll
    for (int c = 0; c < kMmaKeys / 16; ++c) {
      const __half* v0 = vs + (c * 16 + 2 * t) * kRow + g;
#pragma unroll
      for (int n = 0; n < D / 8; ++n) {
        const __half* vn = v0 + n * 8;
        mma_16816(o[n], pf[c], pack(vn[0], vn[kRow]), pack(vn[8 * kRow], vn[9 * kRow]));
      }
    }
  }
#pragma unroll
  for (int row = 0; row < 2; ++row) {
    if (!live[row]) continue;
    const float inv = l[row] > 0 ? 1.0f / l[row] : 0.0f;  // a padding query saw no key: zeros
    auto* dst = reinterpret_cast<__half*>(out) + s * seq_stride_q +
                (row0 + q0 + r + 8 * row) * ld_q + h * D;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      *reinterpret_cast<__half2*>(dst + n * 8 + 2 * t) =
          __floats2half2_rn(o[n][2 * row] * inv, o[n][2 * row + 1] * inv);
    }
  }
}

// ---- decode ----
constexpr int kSplitKeys = static_cast<int>(kDecodeSplitKeys);
constexpr int kDecodeWarps = 4;
constexpr int kUnroll = 4;  // keys in flight per warp, for memory-level parallelism

using Partial = DecodePartial;  // in the workspace

// Merges the warps' softmax states (in shared memory, after a barrier) into the block's partial.
__device__ void write_partial(const float* wm, const float* wl, const float (*wacc)[kMaxHeadDim],
                              int head_dim, int64_t slot, Partial* partials, float* partial_acc) {
  float block_m = wm[0];
  for (int w = 1; w < kDecodeWarps; ++w) block_m = fmaxf(block_m, wm[w]);
  float* acc_out = partial_acc + slot * head_dim;
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float a = 0;
    for (int w = 0; w < kDecodeWarps; ++w) {
      if (wm[w] != -INFINITY) a += wacc[w][d] * __expf(wm[w] - block_m);
    }
    acc_out[d] = a;
  }
  if (threadIdx.x == 0) {
    float block_l = 0;
    for (int w = 0; w < kDecodeWarps; ++w) {
      if (wm[w] != -INFINITY) block_l += wl[w] * __expf(wm[w] - block_m);
    }
    partials[slot] = {block_m, block_l};
  }
}

__global__ void __launch_bounds__(kDecodeWarps * 32)
    decode_kernel(const Fp16* q, int64_t ld_q, const Fp16* k_cache, const Fp16* v_cache,
                  int64_t ld_kv, int64_t seq_stride_kv, const int32_t* lengths,
                  const int32_t* key_begin, const int32_t* slots, int head_dim, int heads_per_kv,
                  int n_splits, Partial* partials, float* partial_acc) {
  __shared__ float wm[kDecodeWarps], wl[kDecodeWarps];
  __shared__ float wacc[kDecodeWarps][kMaxHeadDim];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t split = blockIdx.x, h = blockIdx.y, s = blockIdx.z;
  const int64_t len = lengths[s], first = key_begin ? key_begin[s] : 0;
  const int64_t begin = max(split * kSplitKeys, first), end = min((split + 1) * kSplitKeys, len);
  const int64_t kv_seq = slots ? slots[s] : s;
  const Fp16* kb = k_cache + kv_seq * seq_stride_kv + h / heads_per_kv * head_dim;
  const Fp16* vb = v_cache + kv_seq * seq_stride_kv + h / heads_per_kv * head_dim;

  float qr[kPerLane], acc[kPerLane];
#pragma unroll
  for (int t = 0; t < kPerLane; ++t) {
    const int d = lane + 32 * t;
    qr[t] = d < head_dim ? h2f(q, s * ld_q + h * head_dim + d) : 0.0f;
    acc[t] = 0;
  }
  float m = -INFINITY, l = 0;
  for (int64_t j0 = begin + warp; j0 < end; j0 += kDecodeWarps * kUnroll) {
    float kr[kUnroll][kPerLane], vr[kUnroll][kPerLane], score[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t j = j0 + u * kDecodeWarps;
#pragma unroll
      for (int t = 0; t < kPerLane; ++t) {
        const int d = lane + 32 * t;
        const bool in = j < end && d < head_dim;
        kr[u][t] = in ? h2f(kb, j * ld_kv + d) : 0.0f;
        vr[u][t] = in ? h2f(vb, j * ld_kv + d) : 0.0f;
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      float part = 0;
#pragma unroll
      for (int t = 0; t < kPerLane; ++t) part += qr[t] * kr[u][t];
      score[u] = j0 + u * kDecodeWarps < end ? warp_sum(part) : -INFINITY;
    }
    float chunk_max = score[0];
#pragma unroll
    for (int u = 1; u < kUnroll; ++u) chunk_max = fmaxf(chunk_max, score[u]);
    const float m_new = fmaxf(m, chunk_max);  // score[0] is always a real key
    const float alpha = __expf(m - m_new);
    l *= alpha;
#pragma unroll
    for (int t = 0; t < kPerLane; ++t) acc[t] *= alpha;
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const float p = __expf(score[u] - m_new);  // 0 for keys past the end
      l += p;
#pragma unroll
      for (int t = 0; t < kPerLane; ++t) acc[t] += p * vr[u][t];
    }
    m = m_new;
  }
  if (lane == 0) wm[warp] = m, wl[warp] = l;
#pragma unroll
  for (int t = 0; t < kPerLane; ++t) {
    const int d = lane + 32 * t;
    if (d < head_dim) wacc[warp][d] = acc[t];
  }
  __syncthreads();
  write_partial(wm, wl, wacc, head_dim, (s * gridDim.y + h) * n_splits + split, partials,
                partial_acc);
}

// The same over 16-byte loads: kLanes lanes hold one key's head (8 halves each), so a warp reads
// 32 / kLanes keys per instruction. Each lane group keeps its own softmax state, merged at the
// end. Needs head_dim, ld_kv and seq_stride_kv multiples of 8 and 16-byte aligned caches.
template <int kLanes>
__global__ void __launch_bounds__(kDecodeWarps * 32)
    decode_vec_kernel(const Fp16* q, int64_t ld_q, const Fp16* k_cache, const Fp16* v_cache,
                      int64_t ld_kv, int64_t seq_stride_kv, const int32_t* lengths,
                      const int32_t* key_begin, const int32_t* slots, int head_dim,
                      int heads_per_kv, int n_splits, Partial* partials, float* partial_acc) {
  constexpr int kGroups = 32 / kLanes;  // keys per warp per load
  constexpr int kU = 4;                 // loads in flight per lane
  __shared__ float wm[kDecodeWarps], wl[kDecodeWarps];
  __shared__ float wacc[kDecodeWarps][kMaxHeadDim];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int group = lane / kLanes, d0 = (lane % kLanes) * 8;
  const bool active = d0 < head_dim;
  const int64_t split = blockIdx.x, h = blockIdx.y, s = blockIdx.z;
  const int64_t len = lengths[s], first = key_begin ? key_begin[s] : 0;
  const int64_t begin = max(split * kSplitKeys, first), end = min((split + 1) * kSplitKeys, len);
  const int64_t kv_seq = slots ? slots[s] : s;
  const Fp16* kb = k_cache + kv_seq * seq_stride_kv + h / heads_per_kv * head_dim + d0;
  const Fp16* vb = v_cache + kv_seq * seq_stride_kv + h / heads_per_kv * head_dim + d0;

  float qr[8], acc[8];
#pragma unroll
  for (int e = 0; e < 8; ++e) {
    qr[e] = active ? h2f(q, s * ld_q + h * head_dim + d0 + e) : 0.0f;
    acc[e] = 0;
  }
  float m = -INFINITY, l = 0;
  constexpr int64_t kStep = kDecodeWarps * kGroups;
  for (int64_t j0 = begin + warp * kGroups + group; j0 - group < end; j0 += kStep * kU) {
    uint4 kraw[kU], vraw[kU];
    float score[kU];
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int64_t j = j0 + u * kStep;
      const bool in = active && j < end;
      kraw[u] = in ? *reinterpret_cast<const uint4*>(kb + j * ld_kv) : make_uint4(0, 0, 0, 0);
      vraw[u] = in ? *reinterpret_cast<const uint4*>(vb + j * ld_kv) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const __half2* k2 = reinterpret_cast<const __half2*>(&kraw[u]);
      float part = 0;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float2 kf = __half22float2(k2[e]);
        part += qr[2 * e] * kf.x + qr[2 * e + 1] * kf.y;
      }
#pragma unroll
      for (int o = kLanes / 2; o > 0; o >>= 1) part += __shfl_xor_sync(0xffffffffu, part, o);
      score[u] = j0 + u * kStep < end ? part : -INFINITY;
    }
    float m_new = m;
#pragma unroll
    for (int u = 0; u < kU; ++u) m_new = fmaxf(m_new, score[u]);
    if (m_new != -INFINITY) {  // else this group has seen no key yet
      const float alpha = __expf(m - m_new);
      l *= alpha;
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[e] *= alpha;
#pragma unroll
      for (int u = 0; u < kU; ++u) {
        const float p = __expf(score[u] - m_new);
        const __half2* v2 = reinterpret_cast<const __half2*>(&vraw[u]);
        l += p;
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float2 vf = __half22float2(v2[e]);
          acc[2 * e] += p * vf.x;
          acc[2 * e + 1] += p * vf.y;
        }
      }
      m = m_new;
    }
  }
  // Merge the lane groups of the warp: group g pairs with g ^ (o / kLanes).
#pragma unroll
  for (int o = kLanes; o < 32; o <<= 1) {
    const float m_o = __shfl_xor_sync(0xffffffffu, m, o);
    const float l_o = __shfl_xor_sync(0xffffffffu, l, o);
    const float mm = fmaxf(m, m_o);
    const float a = m == -INFINITY ? 0.0f : __expf(m - mm);
    const float b = m_o == -INFINITY ? 0.0f : __expf(m_o - mm);
    l = l * a + l_o * b;
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[e] = acc[e] * a + __shfl_xor_sync(0xffffffffu, acc[e], o) * b;
    m = mm;
  }
  if (lane == 0) wm[warp] = m, wl[warp] = l;
  if (group == 0 && active) {
#pragma unroll
    for (int e = 0; e < 8; ++e) wacc[warp][d0 + e] = acc[e];
  }
  __syncthreads();
  write_partial(wm, wl, wacc, head_dim, (s * gridDim.y + h) * n_splits + split, partials,
                partial_acc);
}

__global__ void decode_combine_kernel(const Partial* partials, const float* partial_acc,
                                      int head_dim, int n_splits, Fp16* out, int64_t ld_out) {
  const int64_t h = blockIdx.x, s = blockIdx.y;
  const int64_t base = (s * gridDim.x + h) * n_splits;
  float m = -INFINITY;
  for (int i = 0; i < n_splits; ++i) m = fmaxf(m, partials[base + i].m);
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float l = 0, a = 0;
    for (int i = 0; i < n_splits; ++i) {
      const Partial p = partials[base + i];
      if (p.m == -INFINITY) continue;  // a split with no keys
      const float w = __expf(p.m - m);
      l += p.l * w;
      a += partial_acc[(base + i) * head_dim + d] * w;
    }
    reinterpret_cast<__half*>(out)[s * ld_out + h * head_dim + d] =
        __float2half_rn(l > 0 ? a / l : 0.0f);
  }
}

int heads_per_kv(int64_t n_heads, int64_t n_kv_heads) {
  STRATA_CHECK(n_kv_heads >= 1 && n_heads % n_kv_heads == 0, "attention: ", n_kv_heads,
               " key / value heads for ", n_heads, " query heads");
  return static_cast<int>(n_heads / n_kv_heads);
}

bool tensor_core_device() {
  static const bool yes = [] {
    int device = 0, major = 0;
    return cudaGetDevice(&device) == cudaSuccess &&
           cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) ==
               cudaSuccess &&
           major >= 8;
  }();
  return yes;
}

// Launches the prefill on tensor cores where it applies; false leaves it to prefill_kernel.
bool launch_prefill_mma(const Fp16* q, int64_t ld_q, int64_t seq_stride_q, const Fp16* k,
                        const Fp16* v, int64_t ld_kv, int64_t seq_stride_kv, Fp16* out,
                        int64_t start, int64_t n_new, int64_t max_new, int64_t n_seqs,
                        int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                        const int32_t* key_begin, const int32_t* row_offsets, const int32_t* starts,
                        const int32_t* slots, const Stream& stream) {
  if (!prefill_on_tensor_cores(head_dim, ld_q, ld_kv, seq_stride_q, seq_stride_kv, q, k, v, out)) {
    return false;
  }
  const dim3 grid(static_cast<unsigned>((max_new + kMmaQueries - 1) / kMmaQueries),
                  static_cast<unsigned>(n_heads), static_cast<unsigned>(n_seqs));
  const int group = heads_per_kv(n_heads, n_kv_heads);
  if (head_dim == 64) {
    prefill_mma_kernel<64><<<grid, kMmaWarps * 32, 0, native(stream)>>>(
        q, ld_q, seq_stride_q, k, v, ld_kv, seq_stride_kv, out, start, n_new, group, key_begin,
        row_offsets, starts, slots);
  } else {
    prefill_mma_kernel<128><<<grid, kMmaWarps * 32, 0, native(stream)>>>(
        q, ld_q, seq_stride_q, k, v, ld_kv, seq_stride_kv, out, start, n_new, group, key_begin,
        row_offsets, starts, slots);
  }
  STRATA_CUDA_CHECK_LAUNCH();
  return true;
}

}  // namespace

bool prefill_on_tensor_cores(int64_t head_dim, int64_t ld_q, int64_t ld_kv, int64_t seq_stride_q,
                             int64_t seq_stride_kv, const void* q, const void* k, const void* v,
                             const void* out) {
  return prefill_tensor_core_shapes(head_dim, ld_q, ld_kv, seq_stride_q, seq_stride_kv, q, k, v,
                                    out) &&
         tensor_core_device();
}

void attention_prefill(const Fp16* q, int64_t ld_q, int64_t seq_stride_q, const Fp16* k,
                       const Fp16* v, int64_t ld_kv, int64_t seq_stride_kv, Fp16* out,
                       int64_t start, int64_t n_new, int64_t n_seqs, int64_t n_heads,
                       int64_t n_kv_heads, int64_t head_dim, const int32_t* key_begin,
                       const Stream& stream) {
  STRATA_CHECK(head_dim >= 1 && head_dim <= kMaxHeadDim, "attention head_dim ", head_dim,
               " (at most ", kMaxHeadDim, ")");
  STRATA_CHECK(n_heads <= 65535 && n_seqs <= 65535, "attention grid of ", n_seqs, " x ", n_heads);
  if (n_new == 0 || n_seqs == 0) return;
  if (launch_prefill_mma(q, ld_q, seq_stride_q, k, v, ld_kv, seq_stride_kv, out, start, n_new,
                         n_new, n_seqs, n_heads, n_kv_heads, head_dim, key_begin, nullptr, nullptr,
                         nullptr, stream)) {
    return;
  }
  const dim3 grid(static_cast<unsigned>((n_new + kBlockQueries - 1) / kBlockQueries),
                  static_cast<unsigned>(n_heads), static_cast<unsigned>(n_seqs));
  prefill_kernel<<<grid, kWarps * 32, 0, native(stream)>>>(
      q, ld_q, seq_stride_q, k, v, ld_kv, seq_stride_kv, out, start, n_new,
      static_cast<int>(head_dim), heads_per_kv(n_heads, n_kv_heads), key_begin, nullptr, nullptr,
      nullptr);
  STRATA_CUDA_CHECK_LAUNCH();
}

void attention_prefill_packed(const Fp16* q, int64_t ld_q, const int32_t* row_offsets,
                              const int32_t* starts, const int32_t* slots, const Fp16* k,
                              const Fp16* v, int64_t ld_kv, int64_t seq_stride_kv, Fp16* out,
                              int64_t n_seqs, int64_t max_new, int64_t n_heads, int64_t n_kv_heads,
                              int64_t head_dim, const int32_t* key_begin, const Stream& stream) {
  STRATA_CHECK(head_dim >= 1 && head_dim <= kMaxHeadDim, "attention head_dim ", head_dim,
               " (at most ", kMaxHeadDim, ")");
  STRATA_CHECK(n_heads <= 65535 && n_seqs <= 65535, "attention grid of ", n_seqs, " x ", n_heads);
  STRATA_CHECK(row_offsets && starts, "packed attention needs row offsets and starts");
  if (max_new == 0 || n_seqs == 0) return;
  if (launch_prefill_mma(q, ld_q, 0, k, v, ld_kv, seq_stride_kv, out, 0, 0, max_new, n_seqs,
                         n_heads, n_kv_heads, head_dim, key_begin, row_offsets, starts, slots,
                         stream)) {
    return;
  }
  const dim3 grid(static_cast<unsigned>((max_new + kBlockQueries - 1) / kBlockQueries),
                  static_cast<unsigned>(n_heads), static_cast<unsigned>(n_seqs));
  prefill_kernel<<<grid, kWarps * 32, 0, native(stream)>>>(
      q, ld_q, 0, k, v, ld_kv, seq_stride_kv, out, 0, 0, static_cast<int>(head_dim),
      heads_per_kv(n_heads, n_kv_heads), key_begin, row_offsets, starts, slots);
  STRATA_CUDA_CHECK_LAUNCH();
}

void attention_decode(const Fp16* q, int64_t ld_q, const Fp16* k_cache, const Fp16* v_cache,
                      int64_t ld_kv, int64_t seq_stride_kv, const int32_t* slots,
                      const int32_t* lengths, const int32_t* key_begin, int64_t max_len, Fp16* out,
                      int64_t ld_out, int64_t n_seqs, int64_t n_heads, int64_t n_kv_heads,
                      int64_t head_dim, void* workspace, size_t workspace_bytes,
                      const Stream& stream) {
  STRATA_CHECK(head_dim >= 1 && head_dim <= kMaxHeadDim, "attention head_dim ", head_dim,
               " (at most ", kMaxHeadDim, ")");
  const int64_t splits = decode_splits(max_len);
  STRATA_CHECK(n_heads <= 65535 && n_seqs <= 65535 && splits <= INT_MAX, "decode grid of ", n_seqs,
               " x ", n_heads, " x ", splits);
  const size_t need = attention_decode_workspace_bytes(n_seqs, n_heads, head_dim, max_len);
  STRATA_CHECK(workspace_bytes >= need, "decode attention workspace of ", workspace_bytes,
               " bytes, ", need, " needed");
  if (n_seqs == 0) return;
  const int64_t n_partials = n_seqs * n_heads * splits;
  auto* partials = static_cast<Partial*>(workspace);
  auto* partial_acc = reinterpret_cast<float*>(partials + n_partials);
  const dim3 grid(static_cast<unsigned>(splits), static_cast<unsigned>(n_heads),
                  static_cast<unsigned>(n_seqs));
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  const bool vec = head_dim % 8 == 0 && ld_kv % 8 == 0 && seq_stride_kv % 8 == 0 &&
                   aligned(k_cache) && aligned(v_cache);
  const int dim = static_cast<int>(head_dim), n_splits = static_cast<int>(splits);
  const int group = heads_per_kv(n_heads, n_kv_heads);
  const auto s = native(stream);
  constexpr int kThreads = kDecodeWarps * 32;
  if (vec && head_dim <= 32) {
    decode_vec_kernel<4><<<grid, kThreads, 0, s>>>(q, ld_q, k_cache, v_cache, ld_kv, seq_stride_kv,
                                                   lengths, key_begin, slots, dim, group, n_splits,
                                                   partials, partial_acc);
  } else if (vec && head_dim <= 64) {
    decode_vec_kernel<8><<<grid, kThreads, 0, s>>>(q, ld_q, k_cache, v_cache, ld_kv, seq_stride_kv,
                                                   lengths, key_begin, slots, dim, group, n_splits,
                                                   partials, partial_acc);
  } else if (vec) {
    decode_vec_kernel<16><<<grid, kThreads, 0, s>>>(q, ld_q, k_cache, v_cache, ld_kv, seq_stride_kv,
                                                    lengths, key_begin, slots, dim, group, n_splits,
                                                    partials, partial_acc);
  } else {
    decode_kernel<<<grid, kThreads, 0, s>>>(q, ld_q, k_cache, v_cache, ld_kv, seq_stride_kv,
                                            lengths, key_begin, slots, dim, group, n_splits,
                                            partials, partial_acc);
  }
  STRATA_CUDA_CHECK_LAUNCH();
  decode_combine_kernel<<<dim3(static_cast<unsigned>(n_heads), static_cast<unsigned>(n_seqs)),
                          kMaxHeadDim, 0, native(stream)>>>(
      partials, partial_acc, static_cast<int>(head_dim), static_cast<int>(splits), out, ld_out);
  STRATA_CUDA_CHECK_LAUNCH();
}

}  // namespace strata::cuda
