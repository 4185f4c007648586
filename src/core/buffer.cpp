#include "core/buffer.h"

#include "core/error.h"

namespace strata {

HostBuffer::HostBuffer(size_t size_bytes) : size_bytes_(size_bytes) {
  if (size_bytes == 0) return;
  const size_t rounded = (size_bytes + kAlignment - 1) / kAlignment * kAlignment;
  void* p = std::aligned_alloc(kAlignment, rounded);
  STRATA_CHECK(p != nullptr, "out of host memory allocating ", size_bytes, " bytes");
  data_.reset(p);
}

}  // namespace strata
