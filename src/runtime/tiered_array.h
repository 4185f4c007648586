// A flat array of elements placed over the three tiers by element ranges: [0, g) on the GPU
// tier in compute form (fp32 here), [g, g + c) on the CPU tier and the rest on disk, both in the
// stored dtype. Placement is by elements, not whole tensors, so requested percentages hold.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "core/buffer.h"
#include "core/dtype.h"
#include "runtime/disk_store.h"
#include "runtime/policy.h"

namespace strata {

// Bytes each tier holds and has moved; shared by every array of an engine.
struct TierCounters {
  std::array<std::atomic<uint64_t>, kNumTiers> bytes_read{};
  std::array<std::atomic<uint64_t>, kNumTiers> bytes_written{};
  std::array<std::atomic<uint64_t>, kNumTiers> allocated{};
  std::array<std::atomic<uint64_t>, kNumTiers> peak{};
  void add_allocation(Tier tier, uint64_t bytes);
  void release(Tier tier, uint64_t bytes);
  void clear_traffic();
};

// Element counts of a split: g and c rounded to whole elements; the rest is disk.
struct ElementSplit {
  int64_t gpu = 0;
  int64_t cpu = 0;
  int64_t disk = 0;
  static ElementSplit of(int64_t numel, const TierSplit& split);
};

class TieredArray {
 public:
  // `disk` may be null when the split puts nothing on disk.
  TieredArray(int64_t numel, DType stored, const TierSplit& split, DiskStore* disk,
              TierCounters& counters);
  ~TieredArray();
  TieredArray(const TieredArray&) = delete;
  TieredArray& operator=(const TieredArray&) = delete;

  int64_t numel() const { return numel_; }
  const ElementSplit& split() const { return split_; }
  // The whole array, when it is all on the GPU tier: compute on it in place.
  float* resident() { return split_.gpu == numel_ ? gpu_.as<float>() : nullptr; }

  // Sets every element from `src` (numel values in the stored dtype), packing it once.
  void fill_stored(const void* src);
  // Sets every element to zero.
  void fill_zero();
  // Bytes of host staging that load / store need for this array's disk part.
  uint64_t staging_bytes() const;
  // Copies elements [begin, end) into dst[begin, end) in fp32, dst the array's full layout:
  // fetch() then assemble().
  void load(float* dst, int64_t begin, int64_t end, HostBuffer& staging);
  // Reads the disk blocks of elements [begin, end) into staging: I/O only, so a load stream
  // that only fetches leaves the cores to compute.
  void fetch(int64_t begin, int64_t end, HostBuffer& staging);
  // fetch() in two halves, so reads of several arrays can be in flight at once; the ticket is 0
  // when nothing is on disk.
  uint64_t submit_fetch(int64_t begin, int64_t end, HostBuffer& staging);
  void finish_fetch(uint64_t ticket);
  // Fills dst[begin, end) from the GPU and CPU parts and from staging as fetch() left it:
  // the conversion to the compute form, run where the data is used.
  void assemble(float* dst, int64_t begin, int64_t end, const HostBuffer& staging);
  // Writes elements [begin, end) of src (the array's full, current layout) back to the tiers.
  void store(const float* src, int64_t begin, int64_t end, HostBuffer& staging);

 private:
  // Disk I/O covers whole 4 KiB blocks; blocks of elements [a, b) of the disk part.
  void disk_blocks(int64_t a, int64_t b, uint64_t& first_byte, uint64_t& end_byte) const;

  int64_t numel_;
  DType stored_;
  ElementSplit split_;
  DiskStore* disk_;
  TierCounters& counters_;
  HostBuffer gpu_;  // fp32
  HostBuffer cpu_;  // stored dtype
  DiskStore::Extent extent_;
};

}  // namespace strata
