// First-fit allocation of byte ranges inside one region allocated up front: the device pool
// and the pinned host arena use it so the steady state makes no cudaMalloc / cudaHostAlloc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>

namespace strata::cuda {

class RangeAllocator {
 public:
  static constexpr size_t kAlign = 256;  // cudaMalloc's own alignment; also fine for pinned copies

  explicit RangeAllocator(size_t capacity_bytes);

  // Offset of a free range of at least `bytes` (rounded up to kAlign), or nothing when full.
  std::optional<size_t> allocate(size_t bytes);
  // Gives back a range from allocate(); neighbours coalesce.
  void release(size_t offset);

  size_t capacity_bytes() const { return capacity_; }
  size_t used_bytes() const { return used_; }
  size_t peak_bytes() const { return peak_; }
  size_t largest_free_bytes() const;

 private:
  size_t capacity_;
  size_t used_ = 0;
  size_t peak_ = 0;
  std::map<size_t, size_t> free_;  // offset -> size, disjoint and never adjacent
  std::map<size_t, size_t> live_;  // offset -> size
};

}  // namespace strata::cuda
