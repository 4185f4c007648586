#include "core/buffer.h"

#include <sys/mman.h>

#include "core/error.h"

namespace strata {
namespace {

// Weights, caches and activations run to gigabytes: on 2 MiB pages the first touch of each
// costs one fault per 2 MiB, not per 4 KiB (the kernel lends them only on request, madvise).
constexpr size_t kHugePage = size_t{2} << 20;

}  // namespace

HostBuffer::HostBuffer(size_t size_bytes) : size_bytes_(size_bytes) {
  if (size_bytes == 0) return;
  const size_t align = size_bytes >= 2 * kHugePage ? kHugePage : kAlignment;
  const size_t rounded = (size_bytes + align - 1) / align * align;
  void* p = std::aligned_alloc(align, rounded);
  STRATA_CHECK(p != nullptr, "out of host memory allocating ", size_bytes, " bytes");
  // Advice only: where the kernel has no huge pages to give, 4 KiB pages serve as before.
  if (align == kHugePage) ::madvise(p, rounded, MADV_HUGEPAGE);
  data_.reset(p);
}

}  // namespace strata
