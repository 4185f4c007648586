// An array's stored bytes placed over device memory, pinned host memory and disk for the CUDA
// engine: units [0, g) on the device, [g, g + c) in host memory, the rest on disk, split as
// TieredArray splits (ElementSplit over the format's units) so plan_memory's figures hold. The
// stored form is the compute form's bytes (fp16 elements, or a packed stage's bytes), so a load
// is copies only: device-to-device, host-to-device, and disk -> pinned staging -> device.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>

#include "core/buffer.h"
#include "kernels/cuda/runtime.h"
#include "runtime/disk_store.h"
#include "runtime/tiered_array.h"

namespace strata {

class DeviceTieredArray {
 public:
  // `pinned` null: the host part is pageable (policy pin_weight false); `disk` may be null when
  // the split puts nothing there.
  DeviceTieredArray(int64_t n_units, uint64_t unit_bytes, const TierSplit& split,
                    cuda::DevicePool& pool, cuda::PinnedArena* pinned, DiskStore* disk,
                    TierCounters& counters);
  ~DeviceTieredArray();
  DeviceTieredArray(const DeviceTieredArray&) = delete;
  DeviceTieredArray& operator=(const DeviceTieredArray&) = delete;

  int64_t n_units() const { return n_units_; }
  uint64_t unit_bytes() const { return unit_bytes_; }
  const ElementSplit& split() const { return split_; }
  // The whole array, when it all sits in device memory: computed on in place.
  void* resident() const { return split_.gpu == n_units_ ? device_.data() : nullptr; }
  bool has_disk() const { return split_.disk > 0; }
  // The host part's bytes (units [g, g + c)), for work done where they live.
  uint8_t* host_data() const { return host_; }

  // Sets every unit from host bytes (n_units * unit_bytes); blocks until done.
  void fill(const void* src, const cuda::Stream& stream);

  // Pinned, block-aligned host bytes the disk part of a whole-array fetch needs.
  uint64_t staging_bytes() const { return extent_.size_bytes; }
  // Reads the disk part of units [begin, end) into `staging` (ticket 0: nothing on disk); the
  // staging must stay untouched until finish_fetch and the load that copies from it.
  uint64_t submit_fetch(int64_t begin, int64_t end, void* staging, uint64_t staging_bytes);
  void finish_fetch(uint64_t ticket);
  // Copies units [begin, end) to dst + begin * unit_bytes (device) on `stream`; the disk part
  // comes from `staging` as submit_fetch left it.
  void load(void* dst, int64_t begin, int64_t end, const void* staging, const cuda::Stream& stream);
  // Copies units [begin, end) of src (device, the array's full layout) back to its tiers on
  // `stream`; a disk part goes through `staging` (read-modify-write of its edge blocks).
  void store(const void* src, int64_t begin, int64_t end, void* staging,
             const cuda::Stream& stream);
  // load() whose disk part is read into `staging` in stream order on the host (launch_host), so
  // neither the caller nor the other streams wait for it.
  void load_through(void* dst, int64_t begin, int64_t end, void* staging,
                    const cuda::Stream& stream);
  // Pinned bytes one load_through / store of up to `units` units needs.
  static uint64_t range_staging_bytes(int64_t units, uint64_t unit_bytes) {
    constexpr uint64_t block = DiskStore::kAlignment;
    return (static_cast<uint64_t>(units) * unit_bytes + block - 1) / block * block + 2 * block;
  }
  // Where errors of the disk I/O run on the host land (checked after the stream synchronises).
  void set_error_slot(std::exception_ptr* slot) { error_ = slot; }

 private:
  int64_t n_units_;
  uint64_t unit_bytes_;
  ElementSplit split_;
  DiskStore* disk_;
  TierCounters& counters_;
  cuda::Block device_;
  cuda::Block pinned_;
  HostBuffer pageable_;
  uint8_t* host_ = nullptr;  // pinned_ or pageable_
  DiskStore::Extent extent_;
  std::exception_ptr* error_ = nullptr;
  std::function<void()> guarded(std::function<void()> io);
};

}  // namespace strata
