#include "kernels/cuda/range_allocator.h"

#include <algorithm>
#include <iterator>

#include "core/error.h"

namespace strata::cuda {

RangeAllocator::RangeAllocator(size_t capacity_bytes)
    : capacity_(capacity_bytes / kAlign * kAlign) {
  if (capacity_ > 0) free_.emplace(0, capacity_);
}

std::optional<size_t> RangeAllocator::allocate(size_t bytes) {
  const size_t want = std::max<size_t>(1, (bytes + kAlign - 1) / kAlign) * kAlign;
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    if (it->second < want) continue;
    const size_t offset = it->first, rest = it->second - want;
    free_.erase(it);
    if (rest > 0) free_.emplace(offset + want, rest);
    live_.emplace(offset, want);
    used_ += want;
    peak_ = std::max(peak_, used_);
    return offset;
  }
  return std::nullopt;
}

void RangeAllocator::release(size_t offset) {
  auto live = live_.find(offset);
  STRATA_CHECK(live != live_.end(), "release of offset ", offset, " that is not allocated");
  size_t begin = offset, size = live->second;
  used_ -= size;
  live_.erase(live);
  auto next = free_.lower_bound(begin);
  if (next != free_.end() && begin + size == next->first) {
    size += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == begin) {
      begin = prev->first;
      size += prev->second;
      free_.erase(prev);
    }
  }
  free_.emplace(begin, size);
}

size_t RangeAllocator::largest_free_bytes() const {
  size_t best = 0;
  for (const auto& [offset, size] : free_) best = std::max(best, size);
  return best;
}

}  // namespace strata::cuda
