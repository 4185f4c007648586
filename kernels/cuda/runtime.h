// CUDA runtime pieces behind plain C++ types: streams, events, device buffers, a device memory
// pool and a pinned host arena (each allocated once), async copies. No CUDA header leaks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "kernels/cuda/range_allocator.h"

namespace strata::cuda {

// A non-blocking stream (no implicit order with the legacy default stream).
class Stream {
 public:
  Stream();
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  Stream(Stream&& other) noexcept;
  Stream& operator=(Stream&& other) noexcept;

  void* handle() const { return handle_; }  // a cudaStream_t
  void synchronize() const;

 private:
  friend void launch_host(const Stream& stream, std::function<void()> fn);
  void* handle_ = nullptr;
  mutable void* lane_ = nullptr;  // its host-work thread (launch_host), made on first use
};

class Event {
 public:
  // timing=false makes a lighter event for ordering only.
  explicit Event(bool timing = true);
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  Event(Event&& other) noexcept;
  Event& operator=(Event&& other) noexcept;

  void record(const Stream& stream);
  // Makes `stream` wait for the work recorded here, without blocking the host.
  void wait(const Stream& stream) const;
  void synchronize() const;
  bool done() const;
  // Milliseconds from `start` to this event; both recorded with timing on.
  float elapsed_ms(const Event& start) const;

 private:
  void* handle_ = nullptr;
};

// One cudaMalloc, freed on destruction. For tests, benchmarks and long-lived tensors; the
// engine's per-step memory comes from DevicePool.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t size_bytes);
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;

  void* data() const { return data_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  size_t size_bytes() const { return size_bytes_; }

 private:
  void* data_ = nullptr;
  size_t size_bytes_ = 0;
};

class DevicePool;
class PinnedArena;

// A range of a pool or arena, given back on destruction. The owner must outlive it, and work
// that still uses it must be ordered before reuse (the engine's events do that).
class Block {
 public:
  Block() = default;
  ~Block();
  Block(const Block&) = delete;
  Block& operator=(const Block&) = delete;
  Block(Block&& other) noexcept;
  Block& operator=(Block&& other) noexcept;

  void* data() const { return data_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  size_t size_bytes() const { return size_bytes_; }

 private:
  friend class DevicePool;
  friend class PinnedArena;
  Block(RangeAllocator* owner, size_t offset, void* data, size_t size_bytes)
      : owner_(owner), offset_(offset), data_(data), size_bytes_(size_bytes) {}
  void reset();

  RangeAllocator* owner_ = nullptr;
  size_t offset_ = 0;
  void* data_ = nullptr;
  size_t size_bytes_ = 0;
};

// All device memory the engine uses, cudaMalloc'ed once up to cap_bytes (what --gpu-mem
// passes); allocations after that are bookkeeping only.
class DevicePool {
 public:
  explicit DevicePool(size_t cap_bytes);
  DevicePool(const DevicePool&) = delete;
  DevicePool& operator=(const DevicePool&) = delete;

  // Throws with the pool's usage when the cap cannot fit the request.
  Block allocate(size_t size_bytes);
  size_t cap_bytes() const { return ranges_.capacity_bytes(); }
  size_t used_bytes() const { return ranges_.used_bytes(); }
  size_t peak_bytes() const { return ranges_.peak_bytes(); }

 private:
  DeviceBuffer memory_;
  RangeAllocator ranges_;
};

// Page-locked host memory, one cudaHostAlloc, so host<->device copies run at full link speed
// and overlap compute.
class PinnedArena {
 public:
  explicit PinnedArena(size_t size_bytes);
  ~PinnedArena();
  PinnedArena(const PinnedArena&) = delete;
  PinnedArena& operator=(const PinnedArena&) = delete;

  Block allocate(size_t size_bytes);
  size_t size_bytes() const { return ranges_.capacity_bytes(); }
  size_t used_bytes() const { return ranges_.used_bytes(); }

 private:
  void* memory_ = nullptr;
  RangeAllocator ranges_;
};

// Async copies ordered on `stream`. Host memory should be pinned for the copy to be async.
void copy_h2d(void* dst, const void* src, size_t bytes, const Stream& stream);
void copy_d2h(void* dst, const void* src, size_t bytes, const Stream& stream);
void copy_d2d(void* dst, const void* src, size_t bytes, const Stream& stream);
// `rows` rows of width_bytes, rows pitch bytes apart on each side, in any direction (the
// direction follows from the pointers): appending to a strided KV cache, gathering a tile.
void copy_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width_bytes,
             size_t rows, const Stream& stream);
// Host-to-device copies issued so far from pageable memory (each may synchronise the host with
// the stream); tests check that the engine's steady state issues none.
uint64_t pageable_h2d_copies();

// Runs `fn` on the host in stream order: work queued on `stream` after it waits until it
// returns. fn runs on the stream's own host thread (a driver callback only hands it over, and the
// stream waits on the device for it to finish), so host work on different streams overlaps. fn
// must not call CUDA nor throw; host work between kernels (attention on the CPU, where the cache
// lives, disk reads) goes here so the issuing thread never blocks. One issuing thread per stream.
void launch_host(const Stream& stream, std::function<void()> fn);

// Sets bytes to `value` (0xFF poisons fp16 / fp32 with NaN).
void fill_bytes(void* dst, int value, size_t bytes, const Stream& stream);

// Median milliseconds of `reps` runs of fn on `stream` (after two warm-up runs), timed by events.
double median_ms(const Stream& stream, int reps, const std::function<void()>& fn);

void set_device(int device);
// Blocks until all work on the device is done: for tests and benchmarks, not the steady state.
void device_synchronize();
size_t device_free_bytes();

}  // namespace strata::cuda
