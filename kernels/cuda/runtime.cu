#include <cuda_runtime.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <utility>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/host_lane.h"
#include "kernels/cuda/runtime.h"

namespace strata::cuda {

namespace {
void free_lane(void* lane);
}  // namespace

Stream::Stream() {
  cudaStream_t s = nullptr;
  STRATA_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  handle_ = s;
}

Stream::~Stream() {
  if (lane_) {  // no callback may post to the lane once it is gone
    cudaStreamSynchronize(static_cast<cudaStream_t>(handle_));
    free_lane(lane_);
  }
  if (handle_) cudaStreamDestroy(static_cast<cudaStream_t>(handle_));
}

void Stream::synchronize() const {
  STRATA_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(handle_)));
}

Event::Event(bool timing) {
  cudaEvent_t e = nullptr;
  STRATA_CUDA_CHECK(
      cudaEventCreateWithFlags(&e, timing ? cudaEventDefault : cudaEventDisableTiming));
  handle_ = e;
}

Event::~Event() {
  if (handle_) cudaEventDestroy(static_cast<cudaEvent_t>(handle_));
}

void Event::record(const Stream& stream) {
  STRATA_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(handle_), native(stream)));
}

void Event::wait(const Stream& stream) const {
  STRATA_CUDA_CHECK(cudaStreamWaitEvent(native(stream), static_cast<cudaEvent_t>(handle_), 0));
}

void Event::synchronize() const {
  STRATA_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(handle_)));
}

bool Event::done() const {
  const cudaError_t status = cudaEventQuery(static_cast<cudaEvent_t>(handle_));
  if (status == cudaErrorNotReady) {
    cudaGetLastError();  // not an error: clear it
    return false;
  }
  STRATA_CUDA_CHECK(status);
  return true;
}

float Event::elapsed_ms(const Event& start) const {
  float ms = 0;
  STRATA_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start.handle_),
                                         static_cast<cudaEvent_t>(handle_)));
  return ms;
}

DeviceBuffer::DeviceBuffer(size_t size_bytes) : size_bytes_(size_bytes) {
  if (size_bytes > 0) STRATA_CUDA_CHECK(cudaMalloc(&data_, size_bytes));
}

DeviceBuffer::~DeviceBuffer() {
  if (data_) cudaFree(data_);
}

PinnedArena::PinnedArena(size_t size_bytes) : ranges_(size_bytes) {
  if (ranges_.capacity_bytes() > 0) {
    STRATA_CUDA_CHECK(cudaHostAlloc(&memory_, ranges_.capacity_bytes(), cudaHostAllocPortable));
  }
}

PinnedArena::~PinnedArena() {
  if (memory_) cudaFreeHost(memory_);
}

namespace {
std::atomic<uint64_t> pageable_copies{0};
}  // namespace

void copy_h2d(void* dst, const void* src, size_t bytes, const Stream& stream) {
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, src) == cudaSuccess &&
      attributes.type == cudaMemoryTypeUnregistered) {
    pageable_copies.fetch_add(1, std::memory_order_relaxed);
  }
  STRATA_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, native(stream)));
}

uint64_t pageable_h2d_copies() {
  return pageable_copies.load(std::memory_order_relaxed);
}

void copy_d2h(void* dst, const void* src, size_t bytes, const Stream& stream) {
  STRATA_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, native(stream)));
}

void copy_d2d(void* dst, const void* src, size_t bytes, const Stream& stream) {
  STRATA_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, native(stream)));
}

void copy_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width_bytes,
             size_t rows, const Stream& stream) {
  if (rows == 0 || width_bytes == 0) return;
  STRATA_CUDA_CHECK(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, width_bytes, rows,
                                      cudaMemcpyDefault, native(stream)));
}

namespace {

// A stream's host lane and its finished-job counter, in mapped pinned memory the device reads.
struct PinnedLane {
  PinnedLane() : counter(allocate_counter()), lane(counter) {
    STRATA_CUDA_CHECK(
        cudaHostGetDevicePointer(reinterpret_cast<void**>(&device_counter), counter, 0));
  }
  ~PinnedLane() = default;  // the lane joins before the counter goes (see free_lane)
  static uint32_t* allocate_counter() {
    void* p = nullptr;
    STRATA_CUDA_CHECK(
        cudaHostAlloc(&p, sizeof(uint32_t), cudaHostAllocMapped | cudaHostAllocPortable));
    *static_cast<uint32_t*>(p) = 0;
    return static_cast<uint32_t*>(p);
  }
  uint32_t* counter;
  uint32_t* device_counter = nullptr;
  HostLane lane;
};

void free_lane(void* p) {
  auto* l = static_cast<PinnedLane*>(p);
  uint32_t* counter = l->counter;
  delete l;
  cudaFreeHost(counter);
}

struct Post {
  HostLane* lane;
  std::function<void()> fn;
};

// The driver's callback: hand the job to the stream's lane and return.
void CUDART_CB post_host_fn(void* data) {
  std::unique_ptr<Post> post(static_cast<Post*>(data));
  post->lane->post(std::move(post->fn));
}

// Holds the stream until the lane's counter reaches `ticket`: one thread polling host memory,
// sleeping between reads so it costs the link almost nothing.
__global__ void wait_for_host(const volatile uint32_t* done, uint32_t ticket) {
  while (static_cast<int32_t>(*done - ticket) < 0) {
#if __CUDA_ARCH__ >= 700
    __nanosleep(2000);
#endif
  }
}

std::mutex lane_creation;

}  // namespace

void launch_host(const Stream& stream, std::function<void()> fn) {
  {
    std::lock_guard lock(lane_creation);
    if (!stream.lane_) stream.lane_ = new PinnedLane();
  }
  auto* l = static_cast<PinnedLane*>(stream.lane_);
  const uint32_t ticket = l->lane.next_ticket();
  auto* post = new Post{&l->lane, std::move(fn)};
  const cudaError_t status = cudaLaunchHostFunc(native(stream), post_host_fn, post);
  if (status != cudaSuccess) delete post;
  STRATA_CUDA_CHECK(status);
  wait_for_host<<<1, 1, 0, native(stream)>>>(l->device_counter, ticket);
  STRATA_CUDA_CHECK(cudaGetLastError());
}

void fill_bytes(void* dst, int value, size_t bytes, const Stream& stream) {
  STRATA_CUDA_CHECK(cudaMemsetAsync(dst, value, bytes, native(stream)));
}

void set_device(int device) {
  STRATA_CUDA_CHECK(cudaSetDevice(device));
}

void device_synchronize() {
  STRATA_CUDA_CHECK(cudaDeviceSynchronize());
}

size_t device_free_bytes() {
  size_t free_bytes = 0, total_bytes = 0;
  STRATA_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  return free_bytes;
}

}  // namespace strata::cuda
