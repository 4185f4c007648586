// A flat array of elements placed over the three tiers by ranges of units: [0, g) on the GPU
// tier, [g, g + c) on the CPU tier and the rest on disk. Placement is by units (an element, or
// a quantised group), not whole tensors, so requested percentages hold.
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

// How an array is held. Plain: the CPU and disk tiers hold the dtype, the GPU tier fp32 (the
// compute form). Quantised: every tier holds packed groups of group_len elements, so every
// transfer moves the small form. Bytes: an opaque byte string (a packed stage) on every tier.
struct StoredFormat {
  enum class Kind { kPlain, kQuantized, kBytes };
  Kind kind = Kind::kPlain;
  DType dtype = DType::kF32;
  int bits = 0;
  int64_t group_len = 1;
  DType gpu_dtype = DType::kF32;  // a plain array's form on the GPU tier: fp32 on the CPU backend

  static StoredFormat plain(DType dtype, DType gpu_dtype = DType::kF32) {
    return {Kind::kPlain, dtype, 0, 1, gpu_dtype};
  }
  static StoredFormat quantized(int bits, int64_t group_len) {
    return {Kind::kQuantized, DType::kF32, bits, group_len, DType::kF32};
  }
  static StoredFormat bytes() { return {Kind::kBytes, DType::kF32, 0, 1, DType::kF32}; }
  int64_t unit_elems() const { return kind == Kind::kQuantized ? group_len : 1; }
  uint64_t unit_bytes(Tier tier) const;
  // Bytes a tier holds for numel elements under this split (disk rounded to whole blocks).
  uint64_t tier_bytes(int64_t numel, const TierSplit& split, Tier tier) const;
};

// Units [begin, end) of an array that lie on one tier; offset: where they start in that tier's
// own storage.
struct UnitRange {
  int64_t begin = 0, end = 0;
  int64_t offset = 0;
  int64_t size() const { return end - begin; }
  explicit operator bool() const { return end > begin; }
};

// The 4 KiB disk blocks [first, last) that hold bytes [lo, hi) of a tier's disk part.
struct DiskBlocks {
  uint64_t lo = 0, hi = 0;
  uint64_t first = 0, last = 0;
  static DiskBlocks of(const UnitRange& disk, uint64_t unit_bytes);
};

// Counts of a split: g and c rounded to whole units; the rest is disk. Units [0, g) are on the
// GPU tier, [g, g + c) on the CPU tier, the rest on disk.
struct ElementSplit {
  int64_t gpu = 0;
  int64_t cpu = 0;
  int64_t disk = 0;
  static ElementSplit of(int64_t numel, const TierSplit& split);

  struct Ranges {
    UnitRange gpu, cpu, disk;
  };
  // Units [begin, end) cut into their part on each tier: every tiered array's moves start here.
  Ranges ranges(int64_t begin, int64_t end) const;
};

class TieredArray {
 public:
  // `disk` may be null when the split puts nothing on disk.
  TieredArray(int64_t numel, StoredFormat format, const TierSplit& split, DiskStore* disk,
              TierCounters& counters);
  ~TieredArray();
  TieredArray(const TieredArray&) = delete;
  TieredArray& operator=(const TieredArray&) = delete;

  int64_t numel() const { return numel_; }
  const StoredFormat& format() const { return format_; }
  // Units (elements, or groups when quantised) on each tier.
  const ElementSplit& split() const { return split_; }
  // The whole array, when it is all on the GPU tier in fp32: compute on it in place.
  float* resident() {
    return format_.kind == StoredFormat::Kind::kPlain && split_.gpu == numel_ ? gpu_.as<float>()
                                                                              : nullptr;
  }
  // The stored bytes, when they all sit on one memory tier; otherwise null.
  const uint8_t* contiguous_bytes() const;

  // Sets every element from `src`: numel values in the stored dtype (plain), or the bytes.
  void fill_stored(const void* src);
  // Sets every element from fp32 values (plain or quantised).
  void fill(const float* src);
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
  // Copies stored bytes [begin, end) into dst[begin, end) (bytes format), after fetch().
  void gather(uint8_t* dst, int64_t begin, int64_t end, const HostBuffer& staging);
  // Writes elements [begin, end) of src (the array's full, current layout) back to the tiers.
  // Quantised arrays take ranges of whole groups.
  void store(const float* src, int64_t begin, int64_t end, HostBuffer& staging);

 private:
  // The disk part of store(): whole blocks written back.
  void store_disk(const float* src, const UnitRange& disk, HostBuffer& staging);
  // Units covering elements [begin, end), checked to be whole groups.
  void unit_range(int64_t begin, int64_t end, int64_t& first, int64_t& last) const;
  // Units [u, u + n) from their stored bytes to fp32 at their place in dst, and back.
  void decode(const uint8_t* src, int64_t u, int64_t n, float* dst) const;
  void encode(const float* src, int64_t u, int64_t n, uint8_t* dst) const;

  int64_t numel_;
  StoredFormat format_;
  int64_t n_units_;
  ElementSplit split_;
  DiskStore* disk_;
  TierCounters& counters_;
  HostBuffer gpu_;  // fp32 when plain, else the stored bytes
  HostBuffer cpu_;  // stored bytes
  DiskStore::Extent extent_;
};

}  // namespace strata
