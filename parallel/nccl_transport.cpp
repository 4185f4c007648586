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
  int peer = 0;       // the other end's rank in the 2-rank communicator
  int peer_rank = 0;  // and in the job, for messages
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  void* staging = nullptr;
  size_t capacity = 0;
  std::atomic<bool> aborted{false};

  // Stream-ordered (re)allocation: no device-wide synchronisation, so growing one direction's
  // staging never waits on the other direction's NCCL kernel (which may wait on the peer).
  void reserve(size_t bytes) {
    if (bytes <= capacity && staging) return;
    if (staging) STRATA_CUDART_CHECK(cudaFreeAsync(staging, stream));
    staging = nullptr;
    capacity = std::max<size_t>(bytes, 1);
    STRATA_CUDART_CHECK(cudaMallocAsync(&staging, capacity, stream));
  }

  // Throws when the communicator failed or the transport is closing; false while in progress.
  bool comm_ready() {
    ncclResult_t state = ncclSuccess;
    STRATA_NCCL_CHECK(ncclCommGetAsyncError(comm, &state));
    if (aborted.load()) {
      ncclCommAbort(comm);
      comm = nullptr;
      STRATA_CHECK(false, "NCCL link to rank ", peer_rank, " aborted: the transport was closed");
    }
    STRATA_CHECK(state == ncclSuccess || state == ncclInProgress, "NCCL link to rank ", peer_rank,
                 ": ", ncclGetErrorString(state));
    return state == ncclSuccess;
  }

  // Polls instead of cudaStreamSynchronize so that abort() can end a transfer whose peer died.
  void finish() {
    for (;;) {
      // The communicator first: until it leaves ncclInProgress its work may not be queued yet.
      const bool comm_idle = comm_ready();
      const cudaError_t state = cudaStreamQuery(stream);
      if (state == cudaSuccess && comm_idle) return;
      STRATA_CHECK(state == cudaSuccess || state == cudaErrorNotReady, "NCCL transfer with rank ",
                   peer_rank, ": ", cudaGetErrorString(state));
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }
};

// A communicator made non-blocking (it cannot be aborted while ncclCommInitRank blocks), joined
// within timeout_s or not at all.
NcclLink::NcclLink(int device, const std::string& unique_id, bool sender, int peer_rank,
                   double timeout_s)
    : impl_(std::make_unique<Impl>()) {
  ncclUniqueId id;
  STRATA_CHECK(unique_id.size() == sizeof(id.internal), "NCCL unique id of ", unique_id.size(),
               " bytes, expected ", sizeof(id.internal));
  std::memcpy(id.internal, unique_id.data(), sizeof(id.internal));
  impl_->device = device;
  impl_->peer = sender ? 1 : 0;
  impl_->peer_rank = peer_rank;
  STRATA_CUDART_CHECK(cudaSetDevice(device));
  STRATA_CUDART_CHECK(cudaStreamCreateWithFlags(&impl_->stream, cudaStreamNonBlocking));
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  const ncclResult_t started = ncclCommInitRankConfig(&impl_->comm, 2, id, sender ? 0 : 1, &config);
  STRATA_CHECK(started == ncclSuccess || started == ncclInProgress, "NCCL link to rank ", peer_rank,
               ": ", ncclGetErrorString(started));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (!impl_->comm_ready()) {
    if (std::chrono::steady_clock::now() > deadline) {
      ncclCommAbort(impl_->comm);
      impl_->comm = nullptr;
      STRATA_CHECK(false, "NCCL link to rank ", peer_rank, ": the peer did not join within ",
                   timeout_s, " s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

NcclLink::~NcclLink() {
  cudaSetDevice(impl_->device);
  if (impl_->comm) {
    if (impl_->aborted.load())
      ncclCommAbort(impl_->comm);
    else
      ncclCommDestroy(impl_->comm);
  }
  if (impl_->staging) cudaFreeAsync(impl_->staging, impl_->stream);
  if (impl_->stream) {
    cudaStreamSynchronize(impl_->stream);
    cudaStreamDestroy(impl_->stream);
  }
}

// ncclInProgress is not an error on a non-blocking communicator: finish() polls it out.
#define STRATA_NCCL_ENQUEUE(call)                                                  \
  do {                                                                             \
    const ncclResult_t status_ = (call);                                           \
    STRATA_CHECK(status_ == ncclSuccess || status_ == ncclInProgress, #call, ": ", \
                 ncclGetErrorString(status_));                                     \
  } while (0)

void NcclLink::send(const void* host, size_t bytes) {
  STRATA_CUDART_CHECK(cudaSetDevice(impl_->device));
  impl_->reserve(bytes);
  if (bytes > 0)
    STRATA_CUDART_CHECK(
        cudaMemcpyAsync(impl_->staging, host, bytes, cudaMemcpyHostToDevice, impl_->stream));
  STRATA_NCCL_ENQUEUE(
      ncclSend(impl_->staging, bytes, ncclUint8, impl_->peer, impl_->comm, impl_->stream));
  impl_->finish();
}

// The copy to the caller's pageable buffer blocks the thread until it is done, so it is queued
// only once the receive has finished: a dead peer is then caught by finish(), which abort() ends.
void NcclLink::recv(void* host, size_t bytes) {
  STRATA_CUDART_CHECK(cudaSetDevice(impl_->device));
  impl_->reserve(bytes);
  STRATA_NCCL_ENQUEUE(
      ncclRecv(impl_->staging, bytes, ncclUint8, impl_->peer, impl_->comm, impl_->stream));
  impl_->finish();
  if (bytes > 0) {
    STRATA_CUDART_CHECK(
        cudaMemcpyAsync(host, impl_->staging, bytes, cudaMemcpyDeviceToHost, impl_->stream));
    impl_->finish();
  }
}

void NcclLink::abort() {
  impl_->aborted = true;
}

}  // namespace strata::parallel
