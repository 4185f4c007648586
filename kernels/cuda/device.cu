#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/device.h"

namespace strata::cuda {
namespace {

__global__ void fp16_to_fp32_kernel(const __half* src, float* dst, size_t n) {
  const size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (i < n) dst[i] = __half2float(src[i]);
}

}  // namespace

int device_count() {
  int count = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error == cudaSuccess) return count;
  cudaGetLastError();  // clear the sticky error
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);  // 0 when no driver is installed
  cudaRuntimeGetVersion(&runtime);
  if (error == cudaErrorNoDevice || driver == 0) return 0;
  // A driver older than the runtime, or a broken install: a failure, not "no GPU".
  STRATA_CHECK(false, "CUDA: ", cudaGetErrorString(error), " (driver supports CUDA ", driver / 1000,
               ".", driver % 1000 / 10, ", this build's runtime is ", runtime / 1000, ".",
               runtime % 1000 / 10, ")");
  return 0;
}

std::string device_name(int device) {
  cudaDeviceProp prop{};
  STRATA_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return prop.name;
}

void fp16_to_fp32_roundtrip(const uint16_t* host_src, float* host_dst, size_t n) {
  DeviceBuffer src(n * sizeof(__half)), dst(n * sizeof(float));
  STRATA_CUDA_CHECK(cudaMemcpy(src.data(), host_src, n * 2, cudaMemcpyHostToDevice));
  fp16_to_fp32_kernel<<<blocks_for(static_cast<int64_t>(n), 256), 256>>>(src.as<__half>(),
                                                                         dst.as<float>(), n);
  STRATA_CUDA_CHECK_LAUNCH();
  STRATA_CUDA_CHECK(cudaMemcpy(host_dst, dst.data(), n * 4, cudaMemcpyDeviceToHost));
}

}  // namespace strata::cuda
