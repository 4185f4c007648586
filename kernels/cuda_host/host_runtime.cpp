// The CUDA runtime of kernels/cuda/runtime.h emulated on the host (see host_stream.h).
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/host_lane.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/runtime.h"
#include "kernels/cuda_host/host_stream.h"

namespace strata::cuda {
namespace {

struct StreamState;

// Queued work, or a wait: runnable once `stream` has completed `position` items and `ready`
// (a stream's host work, launch_host) says so.
struct Item {
  std::function<void()> work;
  StreamState* stream = nullptr;
  uint64_t position = 0;
  std::function<bool()> ready;
};

// A stream's host lane (launch_host) and its counter.
struct EmulatedLane {
  uint32_t counter = 0;
  HostLane lane{&counter};
};

struct StreamState {
  std::deque<Item> queue;
  uint64_t enqueued = 0;
  uint64_t done = 0;
};

struct EventState {
  StreamState* stream = nullptr;  // null: never recorded, complete
  uint64_t position = 0;
  // When the record ran; shared with the queued marker, which may outlive the event.
  std::shared_ptr<double> time_s = std::make_shared<double>(0);
};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

class Scheduler {
 public:
  Scheduler() {
    const char* seed = std::getenv("STRATA_EMU_SEED");
    rng_.seed(seed ? std::strtoull(seed, nullptr, 10) : 1);
  }

  std::recursive_mutex& mutex() { return mutex_; }
  void add(StreamState* s) { streams_.push_back(s); }
  void remove(StreamState* s) { std::erase(streams_, s); }

  void push(StreamState* s, Item item) {
    s->queue.push_back(std::move(item));
    ++s->enqueued;
  }

  // Runs items, streams picked at random among those whose next item can run, until `target`
  // has completed `position` items (or every stream is empty, when target is null).
  void run_until(StreamState* target, uint64_t position) {
    auto host_wait_since = std::chrono::steady_clock::time_point::min();
    while (target ? target->done < position : !all_empty()) {
      std::vector<StreamState*> ready;
      bool host_work = false;  // some stream waits for its host lane, which runs on its own
      for (StreamState* s : streams_) {
        if (s->queue.empty()) continue;
        const Item& head = s->queue.front();
        if (head.stream && head.stream->done < head.position) continue;
        if (head.ready && !head.ready()) {
          host_work = true;
          continue;
        }
        ready.push_back(s);
      }
      if (ready.empty() && host_work) {
        const auto now = std::chrono::steady_clock::now();
        if (host_wait_since == std::chrono::steady_clock::time_point::min()) host_wait_since = now;
        STRATA_CHECK(now - host_wait_since < std::chrono::minutes(5),
                     "emulated CUDA: host work did not finish in 5 minutes");
        std::this_thread::sleep_for(std::chrono::microseconds(50));
        continue;
      }
      host_wait_since = std::chrono::steady_clock::time_point::min();
      STRATA_CHECK(!ready.empty(), "emulated CUDA: streams wait on each other (deadlock)");
      StreamState* s = ready[std::uniform_int_distribution<size_t>(0, ready.size() - 1)(rng_)];
      Item item = std::move(s->queue.front());
      s->queue.pop_front();
      ++s->done;
      if (item.work) item.work();
    }
  }

  // Emulated memory ranges: start -> end.
  std::map<uintptr_t, uintptr_t> device, pinned;

 private:
  bool all_empty() const {
    for (const StreamState* s : streams_) {
      if (!s->queue.empty()) return false;
    }
    return true;
  }

  std::recursive_mutex mutex_;
  std::vector<StreamState*> streams_;
  std::mt19937_64 rng_;
};

Scheduler& scheduler() {
  static Scheduler s;
  return s;
}

StreamState* state(const Stream& stream) {
  return static_cast<StreamState*>(stream.handle());
}

bool in_ranges(const std::map<uintptr_t, uintptr_t>& ranges, const void* p, size_t bytes) {
  const auto at = reinterpret_cast<uintptr_t>(p);
  auto it = ranges.upper_bound(at);
  if (it == ranges.begin()) return false;
  --it;
  return at >= it->first && at + bytes <= it->second;
}

void* allocate_aligned(size_t bytes, size_t align) {
  void* p = std::aligned_alloc(align, (bytes + align - 1) / align * align);
  STRATA_CHECK(p != nullptr, "emulated CUDA: out of host memory for ", bytes, " bytes");
  return p;
}

}  // namespace

namespace host {

std::atomic<uint64_t> pageable_copies{0};

void enqueue(const Stream& stream, std::function<void()> work) {
  std::lock_guard lock(scheduler().mutex());
  scheduler().push(state(stream), {std::move(work), nullptr, 0});
}

void drain(const Stream& stream) {
  std::lock_guard lock(scheduler().mutex());
  scheduler().run_until(state(stream), state(stream)->enqueued);
}

void check_device(const void* p, size_t bytes, const char* what) {
  std::lock_guard lock(scheduler().mutex());
  STRATA_CHECK(p == nullptr || bytes == 0 || in_ranges(scheduler().device, p, bytes),
               "emulated CUDA: ", what, " (", bytes, " bytes) is not device memory");
}

bool is_device(const void* p) {
  std::lock_guard lock(scheduler().mutex());
  return in_ranges(scheduler().device, p, 1);
}

bool is_pinned(const void* p) {
  std::lock_guard lock(scheduler().mutex());
  return in_ranges(scheduler().pinned, p, 1);
}

}  // namespace host

Stream::Stream() {
  auto* s = new StreamState();
  std::lock_guard lock(scheduler().mutex());
  scheduler().add(s);
  handle_ = s;
}

Stream::~Stream() {
  if (!handle_) return;
  std::lock_guard lock(scheduler().mutex());
  try {
    scheduler().run_until(state(*this), state(*this)->enqueued);
  } catch (...) {  // as cudaStreamDestroy: pending work completes, errors are not reported here
  }
  scheduler().remove(state(*this));
  delete state(*this);
  delete static_cast<EmulatedLane*>(lane_);  // joins its thread, which has nothing queued
}

void Stream::synchronize() const {
  host::drain(*this);
}

Event::Event(bool) : handle_(new EventState()) {}

Event::~Event() {
  delete static_cast<EventState*>(handle_);
}

void Event::record(const Stream& stream) {
  std::lock_guard lock(scheduler().mutex());
  auto* e = static_cast<EventState*>(handle_);
  e->time_s = std::make_shared<double>(0);
  scheduler().push(state(stream), {[time = e->time_s] { *time = now_s(); }, nullptr, 0});
  e->stream = state(stream);
  e->position = state(stream)->enqueued;
}

void Event::wait(const Stream& stream) const {
  std::lock_guard lock(scheduler().mutex());
  const auto* e = static_cast<const EventState*>(handle_);
  if (e->stream) scheduler().push(state(stream), {nullptr, e->stream, e->position});
}

void Event::synchronize() const {
  std::lock_guard lock(scheduler().mutex());
  const auto* e = static_cast<const EventState*>(handle_);
  if (e->stream) scheduler().run_until(e->stream, e->position);
}

bool Event::done() const {
  std::lock_guard lock(scheduler().mutex());
  const auto* e = static_cast<const EventState*>(handle_);
  return !e->stream || e->stream->done >= e->position;
}

float Event::elapsed_ms(const Event& start) const {
  STRATA_CHECK(done() && start.done(), "emulated CUDA: elapsed time of an event not completed");
  return static_cast<float>((*static_cast<const EventState*>(handle_)->time_s -
                             *static_cast<const EventState*>(start.handle_)->time_s) *
                            1e3);
}

DeviceBuffer::DeviceBuffer(size_t size_bytes) : size_bytes_(size_bytes) {
  if (size_bytes == 0) return;
  data_ = allocate_aligned(size_bytes, 256);
  std::lock_guard lock(scheduler().mutex());
  const auto at = reinterpret_cast<uintptr_t>(data_);
  scheduler().device[at] = at + size_bytes;
}

DeviceBuffer::~DeviceBuffer() {
  if (!data_) return;
  {
    std::lock_guard lock(scheduler().mutex());
    scheduler().device.erase(reinterpret_cast<uintptr_t>(data_));
  }
  std::free(data_);
}

PinnedArena::PinnedArena(size_t size_bytes) : ranges_(size_bytes) {
  if (ranges_.capacity_bytes() == 0) return;
  memory_ = allocate_aligned(ranges_.capacity_bytes(), 4096);
  std::lock_guard lock(scheduler().mutex());
  const auto at = reinterpret_cast<uintptr_t>(memory_);
  scheduler().pinned[at] = at + ranges_.capacity_bytes();
}

PinnedArena::~PinnedArena() {
  if (!memory_) return;
  {
    std::lock_guard lock(scheduler().mutex());
    scheduler().pinned.erase(reinterpret_cast<uintptr_t>(memory_));
  }
  std::free(memory_);
}

void copy_h2d(void* dst, const void* src, size_t bytes, const Stream& stream) {
  if (bytes == 0) return;
  host::check_device(dst, bytes, "copy_h2d destination");
  STRATA_CHECK(!host::is_device(src), "emulated CUDA: copy_h2d from device memory");
  if (host::is_pinned(src)) {
    host::enqueue(stream, [=] { std::memcpy(dst, src, bytes); });
    return;
  }
  // Pageable memory is staged when the copy is issued, as the CUDA runtime does.
  host::pageable_copies.fetch_add(1, std::memory_order_relaxed);
  auto staged = std::make_shared<std::vector<uint8_t>>(static_cast<const uint8_t*>(src),
                                                       static_cast<const uint8_t*>(src) + bytes);
  host::enqueue(stream, [=] { std::memcpy(dst, staged->data(), bytes); });
}

uint64_t pageable_h2d_copies() {
  return host::pageable_copies.load(std::memory_order_relaxed);
}

void copy_d2h(void* dst, const void* src, size_t bytes, const Stream& stream) {
  if (bytes == 0) return;
  host::check_device(src, bytes, "copy_d2h source");
  STRATA_CHECK(!host::is_device(dst), "emulated CUDA: copy_d2h into device memory");
  host::enqueue(stream, [=] { std::memcpy(dst, src, bytes); });
  // A copy into pageable memory returns once it is done.
  if (!host::is_pinned(dst)) host::drain(stream);
}

void copy_d2d(void* dst, const void* src, size_t bytes, const Stream& stream) {
  if (bytes == 0) return;
  host::check_device(dst, bytes, "copy_d2d destination");
  host::check_device(src, bytes, "copy_d2d source");
  host::enqueue(stream, [=] { std::memmove(dst, src, bytes); });
}

void copy_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width_bytes,
             size_t rows, const Stream& stream) {
  if (rows == 0 || width_bytes == 0) return;
  host::enqueue(stream, [=] {
    for (size_t r = 0; r < rows; ++r) {
      std::memcpy(static_cast<uint8_t*>(dst) + r * dst_pitch,
                  static_cast<const uint8_t*>(src) + r * src_pitch, width_bytes);
    }
  });
  if (!host::is_device(dst) && !host::is_pinned(dst)) host::drain(stream);
}

void launch_host(const Stream& stream, std::function<void()> fn) {
  std::lock_guard lock(scheduler().mutex());
  if (!stream.lane_) stream.lane_ = new EmulatedLane();
  HostLane* lane = &static_cast<EmulatedLane*>(stream.lane_)->lane;
  const uint32_t ticket = lane->next_ticket();
  scheduler().push(state(stream), {[lane, fn = std::move(fn)] { lane->post(fn); }, nullptr, 0, {}});
  scheduler().push(state(stream),
                   {nullptr, nullptr, 0, [lane, ticket] { return reached(lane->done(), ticket); }});
}

void fill_bytes(void* dst, int value, size_t bytes, const Stream& stream) {
  host::check_device(dst, bytes, "fill_bytes destination");
  host::enqueue(stream, [=] { std::memset(dst, value, bytes); });
}

void set_device(int device) {
  STRATA_CHECK(device == 0, "emulated CUDA has one device, not ", device + 1);
}

void device_synchronize() {
  std::lock_guard lock(scheduler().mutex());
  scheduler().run_until(nullptr, 0);
}

size_t device_free_bytes() {
  return size_t{80} << 30;  // an H100's
}

int device_count() {
  return 1;
}

std::string device_name(int) {
  return "host emulation of CUDA";
}

void fp16_to_fp32_roundtrip(const uint16_t* host_src, float* host_dst, size_t n) {
  for (size_t i = 0; i < n; ++i) host_dst[i] = fp16_to_fp32(host_src[i]);
}

Blas::Blas() : handle_(this) {}
Blas::~Blas() = default;
void Blas::set_workspace(void* workspace, size_t bytes) {
  host::check_device(workspace, bytes, "cuBLAS workspace");
}

}  // namespace strata::cuda
