// GEMM through cuBLAS and the elementwise kernels around it: bias + activation, layer norm,
// residual add, dtype conversion, embedding.
#include <cuda_fp16.h>

#include <climits>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/reduce.cuh"
#include "kernels/cuda/rows.cuh"

namespace strata::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float load(const Fp16* p, int64_t i) {
  return __half2float(reinterpret_cast<const __half*>(p)[i]);
}
__device__ __forceinline__ float load(const float* p, int64_t i) {
  return p[i];
}
__device__ __forceinline__ void store(Fp16* p, int64_t i, float v) {
  reinterpret_cast<__half*>(p)[i] = __float2half_rn(v);
}
__device__ __forceinline__ void store(float* p, int64_t i, float v) {
  p[i] = v;
}

__device__ __forceinline__ float activate(float v, Activation act) {
  if (act == Activation::kRelu) return fmaxf(v, 0.0f);
  if (act == Activation::kGelu) return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
  return v;
}

// out[r, c] = act(in[r, c] + bias[c]) over a 2-D grid: x over columns, y over rows (striding
// past 65535 rows), so no thread divides; 32-bit column indices, the row offset formed once.
template <typename In, typename Out>
__global__ void bias_activation_kernel(const In* in, Out* out, const Fp16* bias, int rows, int n,
                                       Activation act) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= n) return;
  const float b = bias ? load(bias, c) : 0.0f;
  for (int r = blockIdx.y; r < rows; r += gridDim.y) {
    const int64_t at = static_cast<int64_t>(r) * n + c;
    store(out, at, activate(load(in, at) + b, act));
  }
}

unsigned grid_for(int64_t n) {
  return static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, 65536));
}

template <typename In, typename Out>
void bias_activation_t(const In* in, Out* out, const Fp16* bias, int64_t m, int64_t n,
                       Activation act, const Stream& stream) {
  if (m * n == 0) return;
  STRATA_CHECK(m <= INT_MAX && n <= INT_MAX, "bias and activation over ", m, " x ", n);
  const dim3 grid(static_cast<unsigned>((n + kThreads - 1) / kThreads),
                  static_cast<unsigned>(std::min<int64_t>(m, 65535)));
  bias_activation_kernel<<<grid, kThreads, 0, native(stream)>>>(in, out, bias, static_cast<int>(m),
                                                                static_cast<int>(n), act);
  STRATA_CUDA_CHECK_LAUNCH();
}

// Y^T = W X^T in cuBLAS's column-major view of the row-major operands.
void gemm(Blas& blas, const Fp16* x, const Fp16* w, void* y, cudaDataType_t y_type, int64_t m,
          int64_t n, int64_t k, const Stream& stream) {
  STRATA_CHECK(m <= INT_MAX && n <= INT_MAX && k <= INT_MAX, "GEMM too large for cuBLAS: ", m, "x",
               n, "x", k);
  const auto handle = static_cast<cublasHandle_t>(blas.handle());
  STRATA_CUBLAS_CHECK(cublasSetStream(handle, native(stream)));
  const float alpha = 1.0f, beta = 0.0f;
  STRATA_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n),
                                   static_cast<int>(m), static_cast<int>(k), &alpha, w, CUDA_R_16F,
                                   static_cast<int>(k), x, CUDA_R_16F, static_cast<int>(k), &beta,
                                   y, y_type, static_cast<int>(n), CUBLAS_COMPUTE_32F,
                                   CUBLAS_GEMM_DEFAULT));
}

// One block per row; statistics in fp32 over the row read twice (it stays in L1 / L2).
__global__ void layer_norm_kernel(const Fp16* x, const Fp16* gamma, const Fp16* beta, Fp16* y,
                                  int64_t dim, float eps) {
  __shared__ float scratch[32];
  const Fp16* in = x + blockIdx.x * dim;
  Fp16* out = y + blockIdx.x * dim;
  float sum = 0;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) sum += load(in, i);
  const float mean = block_reduce<false>(sum, scratch) / static_cast<float>(dim);
  float sq = 0;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    const float d = load(in, i) - mean;
    sq += d * d;
  }
  const float var = block_reduce<false>(sq, scratch) / static_cast<float>(dim);
  const float inv = rsqrtf(var + eps);
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    float v = (load(in, i) - mean) * inv;
    if (gamma) v = v * load(gamma, i) + load(beta, i);
    store(out, i, v);
  }
}

// One block per row, as layer_norm: HF's RMSNorm, x * rsqrt(mean(x^2) + eps) * weight.
__global__ void rms_norm_kernel(const Fp16* x, const Fp16* weight, Fp16* y, int64_t dim,
                                float eps) {
  __shared__ float scratch[32];
  const Fp16* in = x + blockIdx.x * dim;
  Fp16* out = y + blockIdx.x * dim;
  float sq = 0;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) sq += load(in, i) * load(in, i);
  const float inv = rsqrtf(block_reduce<false>(sq, scratch) / static_cast<float>(dim) + eps);
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    store(out, i, load(weight, i) * (load(in, i) * inv));
  }
}

// One block per row; thread i of a head rotates the pair (i, i + head_dim / 2). The angle is
// formed in fp32 as the CPU twin does; sincosf's full-range path keeps it accurate at long
// positions (no fast-math intrinsics).
__global__ void rotary_kernel(Fp16* x, int64_t ld, const int32_t* positions, int n_heads,
                              int head_dim, const float* inv_freq) {
  const int half = head_dim / 2;
  Fp16* row = x + static_cast<int64_t>(blockIdx.x) * ld;
  const float pos = static_cast<float>(positions[blockIdx.x]);
  for (int t = threadIdx.x; t < n_heads * half; t += blockDim.x) {
    const int h = t / half, i = t % half;
    float sin_a, cos_a;
    sincosf(__fmul_rn(pos, inv_freq[i]), &sin_a, &cos_a);
    Fp16* a = row + h * head_dim + i;
    const float a0 = load(a, 0), b0 = load(a, half);
    store(a, 0, a0 * cos_a - b0 * sin_a);
    store(a, half, b0 * cos_a + a0 * sin_a);
  }
}

__global__ void silu_mul_kernel(Fp16* gate, const Fp16* up, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = load(gate, i);
    store(gate, i, g / (1.0f + expf(-g)) * load(up, i));
  }
}

__global__ void add_kernel(Fp16* y, const Fp16* x, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    store(y, i, load(y, i) + load(x, i));
  }
}

template <typename From, typename To>
__global__ void convert_kernel(const From* src, To* dst, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    store(dst, i, load(src, i));
  }
}

// One block per row; the row finds its sequence by binary search over row_offsets.
__global__ void embed_kernel(const Fp16* token_table, const Fp16* position_table,
                             const int32_t* tokens, const int32_t* row_offsets,
                             const int32_t* starts, const int32_t* pad_left, int n_seqs,
                             int64_t dim, Fp16* out) {
  const int row = static_cast<int>(blockIdx.x);
  const int seq = sequence_of_row(row_offsets, n_seqs, row);
  const int i = row - row_offsets[seq];
  const int pad = pad_left ? pad_left[seq] : 0;
  Fp16* dst = out + row * dim;
  if (i < pad) {
    for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) store(dst, d, 0.0f);
    return;
  }
  const int64_t position = starts[seq] + (i - pad) + kPositionOffset;
  const Fp16* pos = position_table + position * dim;
  const Fp16* word = token_table ? token_table + static_cast<int64_t>(tokens[row]) * dim : dst;
  for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) {
    store(dst, d, load(word, d) + load(pos, d));
  }
}

}  // namespace

Blas::Blas() {
  cublasHandle_t h = nullptr;
  STRATA_CUBLAS_CHECK(cublasCreate(&h));
  handle_ = h;
}

void Blas::set_workspace(void* workspace, size_t bytes) {
  STRATA_CUBLAS_CHECK(cublasSetWorkspace(static_cast<cublasHandle_t>(handle_), workspace, bytes));
}

Blas::~Blas() {
  if (handle_) cublasDestroy(static_cast<cublasHandle_t>(handle_));
}

void linear(Blas& blas, const Fp16* x, const Fp16* w, const Fp16* bias, Fp16* y, int64_t m,
            int64_t n, int64_t k, Activation act, const Stream& stream) {
  if (m == 0 || n == 0) return;
  if (!bias && act == Activation::kNone) {
    gemm(blas, x, w, y, CUDA_R_16F, m, n, k, stream);  // rounded once by cuBLAS
    return;
  }
  const int64_t block = linear_block_rows(blas, m, n);
  for (int64_t r = 0; r < m; r += block) {
    const int64_t rows = std::min(block, m - r);
    gemm(blas, x + r * k, w, blas.output_scratch(), CUDA_R_32F, rows, n, k, stream);
    bias_activation_t(blas.output_scratch(), y + r * n, bias, rows, n, act, stream);
  }
}

void linear(Blas& blas, const Fp16* x, const Fp16* w, const Fp16* bias, float* y, int64_t m,
            int64_t n, int64_t k, const Stream& stream) {
  if (m == 0 || n == 0) return;
  gemm(blas, x, w, y, CUDA_R_32F, m, n, k, stream);
  if (bias) bias_activation_t(y, y, bias, m, n, Activation::kNone, stream);
}

void bias_activation(Fp16* y, const Fp16* bias, int64_t m, int64_t n, Activation act,
                     const Stream& stream) {
  if (!bias && act == Activation::kNone) return;
  bias_activation_t(y, y, bias, m, n, act, stream);
}

void layer_norm(const Fp16* x, const Fp16* gamma, const Fp16* beta, Fp16* y, int64_t rows,
                int64_t dim, float eps, const Stream& stream) {
  if (rows == 0) return;
  STRATA_CHECK(rows <= INT_MAX, "layer norm over ", rows, " rows");
  const int threads = dim >= 1024 ? 512 : 128;
  layer_norm_kernel<<<static_cast<unsigned>(rows), threads, 0, native(stream)>>>(x, gamma, beta, y,
                                                                                 dim, eps);
  STRATA_CUDA_CHECK_LAUNCH();
}

void rms_norm(const Fp16* x, const Fp16* weight, Fp16* y, int64_t rows, int64_t dim, float eps,
              const Stream& stream) {
  if (rows == 0) return;
  STRATA_CHECK(rows <= INT_MAX && weight, "RMS norm over ", rows, " rows");
  const int threads = dim >= 1024 ? 512 : 128;
  rms_norm_kernel<<<static_cast<unsigned>(rows), threads, 0, native(stream)>>>(x, weight, y, dim,
                                                                               eps);
  STRATA_CUDA_CHECK_LAUNCH();
}

void rotary(Fp16* x, int64_t ld, int64_t rows, const int32_t* positions, int64_t n_heads,
            int64_t head_dim, const float* inv_freq, const Stream& stream) {
  if (rows == 0) return;
  STRATA_CHECK(rows <= INT_MAX && head_dim % 2 == 0 && n_heads * head_dim <= INT_MAX,
               "rotary over ", rows, " rows of ", n_heads, " x ", head_dim);
  rotary_kernel<<<static_cast<unsigned>(rows), 128, 0, native(stream)>>>(
      x, ld, positions, static_cast<int>(n_heads), static_cast<int>(head_dim), inv_freq);
  STRATA_CUDA_CHECK_LAUNCH();
}

void silu_mul(Fp16* gate, const Fp16* up, int64_t n, const Stream& stream) {
  if (n == 0) return;
  silu_mul_kernel<<<grid_for(n), kThreads, 0, native(stream)>>>(gate, up, n);
  STRATA_CUDA_CHECK_LAUNCH();
}

void add_inplace(Fp16* y, const Fp16* x, int64_t n, const Stream& stream) {
  if (n == 0) return;
  add_kernel<<<grid_for(n), kThreads, 0, native(stream)>>>(y, x, n);
  STRATA_CUDA_CHECK_LAUNCH();
}

void convert(const float* src, Fp16* dst, int64_t n, const Stream& stream) {
  if (n == 0) return;
  convert_kernel<<<grid_for(n), kThreads, 0, native(stream)>>>(src, dst, n);
  STRATA_CUDA_CHECK_LAUNCH();
}

void convert(const Fp16* src, float* dst, int64_t n, const Stream& stream) {
  if (n == 0) return;
  convert_kernel<<<grid_for(n), kThreads, 0, native(stream)>>>(src, dst, n);
  STRATA_CUDA_CHECK_LAUNCH();
}

void embed(const Fp16* token_table, const Fp16* position_table, const int32_t* tokens,
           const int32_t* row_offsets, const int32_t* starts, const int32_t* pad_left,
           int64_t n_seqs, int64_t rows, int64_t dim, Fp16* out, const Stream& stream) {
  if (rows == 0) return;
  STRATA_CHECK(n_seqs > 0 && rows <= INT_MAX, "embedding of ", rows, " rows in ", n_seqs,
               " sequences");
  embed_kernel<<<static_cast<unsigned>(rows), 128, 0, native(stream)>>>(
      token_table, position_table, tokens, row_offsets, starts, pad_left, static_cast<int>(n_seqs),
      dim, out);
  STRATA_CUDA_CHECK_LAUNCH();
}

}  // namespace strata::cuda
