#include "parallel/nccl_transport.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "core/error.h"

#define STRATA_CUDART_CHECK(call)                                                   \
  do {                                                                              \
    cudaError_t status_ = (call);                                                   \
    STRATA_CHECK(status_ == cudaSuccess, #call, ": ", cudaGetErrorString(status_)); \
  } while (0)

#define STRATA_NCCL_CHECK(call)                                                     \
  do {                                                                              \
    ncclResult_t status_ = (call);                                                  \
    STRATA_CHECK(status_ == ncclSuccess, #call, ": ", ncclGetErrorString(status_)); \
  } while (0)

namespace strata::parallel {

std::string nccl_unique_id() {
  ncclUniqueId id;
  STRATA_NCCL_CHECK(ncclGetUniqueId(&id));
  return std::string(id.internal, sizeof(id.internal));
}

struct NcclLink::Impl {
  int device = 0;
  int peer = 0;  // the other end's rank in the 2-rank communicator
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  void* staging = nullptr;
  size_t capacity = 0;
  std::atomic<bool> aborted{false};

  void reserve(size_t bytes) {
    if (bytes <= capacity && staging) return;
    STRATA_CUDART_CHECK(cudaStreamSynchronize(stream));
    if (staging) STRATA_CUDART_CHECK(cudaFree(staging));
    staging = nullptr;
    capacity = std::max<size_t>(bytes, 1);
    STRATA_CUDART_CHECK(cudaMalloc(&staging, capacity));
  }

  // Polls instead of cudaStreamSynchronize so that abort() can end a transfer whose peer died.
  void finish() {
    for (;;) {
      const cudaError_t state = cudaStreamQuery(stream);
      if (state == cudaSuccess) return;
      STRATA_CHECK(state == cudaErrorNotReady, "NCCL transfer: ", cudaGetErrorString(state));
      ncclResult_t async = ncclSuccess;
      STRATA_NCCL_CHECK(ncclCommGetAsyncError(comm, &async));
      STRATA_CHECK(async == ncclSuccess, "NCCL transfer: ", ncclGetErrorString(async));
      if (aborted.load()) {
        ncclCommAbort(comm);
        comm = nullptr;
        STRATA_CHECK(false, "NCCL transfer aborted: the transport was closed");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }
};

NcclLink::NcclLink(int device, const std::string& unique_id, bool sender)
    : impl_(std::make_unique<Impl>()) {
  ncclUniqueId id;
  STRATA_CHECK(unique_id.size() == sizeof(id.internal), "NCCL unique id of ", unique_id.size(),
               " bytes, expected ", sizeof(id.internal));
  std::memcpy(id.internal, unique_id.data(), sizeof(id.internal));
  impl_->device = device;
  impl_->peer = sender ? 1 : 0;
  STRATA_CUDART_CHECK(cudaSetDevice(device));
  STRATA_CUDART_CHECK(cudaStreamCreateWithFlags(&impl_->stream, cudaStreamNonBlocking));
  STRATA_NCCL_CHECK(ncclCommInitRank(&impl_->comm, 2, id, sender ? 0 : 1));
}

NcclLink::~NcclLink() {
  cudaSetDevice(impl_->device);
  if (impl_->comm) {
    if (impl_->aborted.load())
      ncclCommAbort(impl_->comm);
    else
      ncclCommDestroy(impl_->comm);
  }
  if (impl_->staging) cudaFree(impl_->staging);
  if (impl_->stream) cudaStreamDestroy(impl_->stream);
}

void NcclLink::send(const void* host, size_t bytes) {
  STRATA_CUDART_CHECK(cudaSetDevice(impl_->device));
  impl_->reserve(bytes);
  if (bytes > 0)
    STRATA_CUDART_CHECK(
        cudaMemcpyAsync(impl_->staging, host, bytes, cudaMemcpyHostToDevice, impl_->stream));
  STRATA_NCCL_CHECK(
      ncclSend(impl_->staging, bytes, ncclUint8, impl_->peer, impl_->comm, impl_->stream));
  impl_->finish();
}

void NcclLink::recv(void* host, size_t bytes) {
  STRATA_CUDART_CHECK(cudaSetDevice(impl_->device));
  impl_->reserve(bytes);
  STRATA_NCCL_CHECK(
      ncclRecv(impl_->staging, bytes, ncclUint8, impl_->peer, impl_->comm, impl_->stream));
  if (bytes > 0)
    STRATA_CUDART_CHECK(
        cudaMemcpyAsync(host, impl_->staging, bytes, cudaMemcpyDeviceToHost, impl_->stream));
  impl_->finish();
}

void NcclLink::abort() {
  impl_->aborted = true;
}

}  // namespace strata::parallel
