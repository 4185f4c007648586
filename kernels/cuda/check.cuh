// Internal to kernels/cuda: CUDA / cuBLAS status codes through the one error path.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "core/error.h"
#include "kernels/cuda/runtime.h"

#define STRATA_CUDA_CHECK(call)                                                     \
  do {                                                                              \
    cudaError_t status_ = (call);                                                   \
    STRATA_CHECK(status_ == cudaSuccess, #call, ": ", cudaGetErrorString(status_)); \
  } while (0)

#define STRATA_CUBLAS_CHECK(call)                                                                \
  do {                                                                                           \
    cublasStatus_t status_ = (call);                                                             \
    STRATA_CHECK(status_ == CUBLAS_STATUS_SUCCESS, #call, ": ", cublasGetStatusString(status_)); \
  } while (0)

// A launch's configuration errors surface here rather than at the next unrelated call.
#define STRATA_CUDA_CHECK_LAUNCH() STRATA_CUDA_CHECK(cudaGetLastError())

namespace strata::cuda {

inline cudaStream_t native(const Stream& s) {
  return static_cast<cudaStream_t>(s.handle());
}

inline unsigned blocks_for(int64_t n, int threads) {
  return static_cast<unsigned>((n + threads - 1) / threads);
}

}  // namespace strata::cuda
