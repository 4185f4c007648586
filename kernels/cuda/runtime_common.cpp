// The parts of runtime.h that make no CUDA call (moves, the pool's and arena's bookkeeping), shared
// by every build of the runtime (kernels/cuda/runtime.cu on a GPU, kernels/cuda_host on the host).
#include <algorithm>
#include <utility>
#include <vector>

#include "core/error.h"
#include "kernels/cuda/host_lane.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/runtime.h"

namespace strata::cuda {

Stream::Stream(Stream&& other) noexcept
    : handle_(std::exchange(other.handle_, nullptr)), lane_(std::exchange(other.lane_, nullptr)) {}

Stream& Stream::operator=(Stream&& other) noexcept {
  std::swap(handle_, other.handle_);
  std::swap(lane_, other.lane_);
  return *this;
}

HostLane::HostLane(uint32_t* done) : done_(done), thread_([this] { run(); }) {}

HostLane::~HostLane() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void HostLane::post(std::function<void()> job) {
  {
    std::lock_guard lock(mutex_);
    jobs_.push_back(std::move(job));
  }
  wake_.notify_one();
}

uint32_t HostLane::done() const {
  return __atomic_load_n(done_, __ATOMIC_ACQUIRE);
}

void HostLane::run() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    try {
      job();
    } catch (...) {  // launch_host's contract: jobs report their own errors
    }
    // Only this thread writes: what the job wrote is visible before the count moves.
    __atomic_store_n(done_, __atomic_load_n(done_, __ATOMIC_RELAXED) + 1, __ATOMIC_RELEASE);
  }
}

Event::Event(Event&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}

Event& Event::operator=(Event&& other) noexcept {
  std::swap(handle_, other.handle_);
  return *this;
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_bytes_(std::exchange(other.size_bytes_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  std::swap(data_, other.data_);
  std::swap(size_bytes_, other.size_bytes_);
  return *this;
}

Block::~Block() {
  reset();
}

Block::Block(Block&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)),
      offset_(other.offset_),
      data_(std::exchange(other.data_, nullptr)),
      size_bytes_(std::exchange(other.size_bytes_, 0)) {}

Block& Block::operator=(Block&& other) noexcept {
  if (this != &other) {
    reset();
    owner_ = std::exchange(other.owner_, nullptr);
    offset_ = other.offset_;
    data_ = std::exchange(other.data_, nullptr);
    size_bytes_ = std::exchange(other.size_bytes_, 0);
  }
  return *this;
}

void Block::reset() {
  if (owner_) owner_->release(offset_);
  owner_ = nullptr;
  data_ = nullptr;
  size_bytes_ = 0;
}

DevicePool::DevicePool(size_t cap_bytes)
    : memory_(cap_bytes / RangeAllocator::kAlign * RangeAllocator::kAlign), ranges_(cap_bytes) {}

Block DevicePool::allocate(size_t size_bytes) {
  const auto offset = ranges_.allocate(size_bytes);
  STRATA_CHECK(offset.has_value(), "GPU memory pool: ", size_bytes, " bytes requested, ",
               ranges_.used_bytes(), " of ", ranges_.capacity_bytes(), " in use, largest free ",
               ranges_.largest_free_bytes(), " (raise --gpu-mem or lower the policy's GPU share)");
  return Block(&ranges_, *offset, static_cast<char*>(memory_.data()) + *offset, size_bytes);
}

Block PinnedArena::allocate(size_t size_bytes) {
  const auto offset = ranges_.allocate(size_bytes);
  STRATA_CHECK(offset.has_value(), "pinned host arena: ", size_bytes, " bytes requested, ",
               ranges_.used_bytes(), " of ", ranges_.capacity_bytes(), " in use");
  return Block(&ranges_, *offset, static_cast<char*>(memory_) + *offset, size_bytes);
}

double median_ms(const Stream& stream, int reps, const std::function<void()>& fn) {
  for (int i = 0; i < 2; ++i) fn();
  std::vector<double> times;
  Event start, end;
  for (int i = 0; i < reps; ++i) {
    start.record(stream);
    fn();
    end.record(stream);
    end.synchronize();
    times.push_back(end.elapsed_ms(start));
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

void Blas::set_output_scratch(void* scratch, size_t bytes) {
  scratch_ = static_cast<float*>(scratch);
  scratch_bytes_ = bytes;
}

int64_t linear_block_rows(const Blas& blas, int64_t m, int64_t n) {
  const auto row_bytes = static_cast<size_t>(n) * 4;
  STRATA_CHECK(blas.output_scratch() && blas.output_scratch_size() >= row_bytes,
               "a linear with bias or activation needs an output scratch of at least ", row_bytes,
               " bytes (Blas::set_output_scratch)");
  const auto fit = static_cast<int64_t>(blas.output_scratch_size() / row_bytes);
  if (fit >= m) return m;
  return fit >= 64 ? fit / 64 * 64 : fit;
}

}  // namespace strata::cuda
