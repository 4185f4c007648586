#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "core/error.h"
#include "kernels/cuda/launchers.h"

#define STRATA_CUDA_CHECK(call)                                                     \
  do {                                                                              \
    cudaError_t status_ = (call);                                                   \
    STRATA_CHECK(status_ == cudaSuccess, #call, ": ", cudaGetErrorString(status_)); \
  } while (0)

namespace strata::cuda {
namespace {

__global__ void fp16_to_fp32_kernel(const __half* src, float* dst, size_t n) {
  const size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (i < n) dst[i] = __half2float(src[i]);
}

}  // namespace

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return count;
}

std::string device_name(int device) {
  cudaDeviceProp prop{};
  STRATA_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return prop.name;
}

void fp16_to_fp32_roundtrip(const uint16_t* host_src, float* host_dst, size_t n) {
  __half* src = nullptr;
  float* dst = nullptr;
  STRATA_CUDA_CHECK(cudaMalloc(&src, n * sizeof(__half)));
  STRATA_CUDA_CHECK(cudaMalloc(&dst, n * sizeof(float)));
  STRATA_CUDA_CHECK(cudaMemcpy(src, host_src, n * 2, cudaMemcpyHostToDevice));
  const unsigned blocks = static_cast<unsigned>((n + 255) / 256);
  fp16_to_fp32_kernel<<<blocks, 256>>>(src, dst, n);
  STRATA_CUDA_CHECK(cudaGetLastError());
  STRATA_CUDA_CHECK(cudaMemcpy(host_dst, dst, n * 4, cudaMemcpyDeviceToHost));
  STRATA_CUDA_CHECK(cudaFree(src));
  STRATA_CUDA_CHECK(cudaFree(dst));
}

}  // namespace strata::cuda
