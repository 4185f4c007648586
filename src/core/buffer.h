// Owned, aligned, uninitialised host memory.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <memory>
#include <span>

namespace strata {

class HostBuffer {
 public:
  static constexpr size_t kAlignment = 4096;  // page aligned: O_DIRECT and pinning both want it

  HostBuffer() = default;
  explicit HostBuffer(size_t size_bytes);

  size_t size_bytes() const { return size_bytes_; }
  void* data() { return data_.get(); }
  const void* data() const { return data_.get(); }
  template <typename T>
  T* as() {
    return static_cast<T*>(data());
  }
  template <typename T>
  const T* as() const {
    return static_cast<const T*>(data());
  }
  template <typename T>
  std::span<T> span() {
    return {as<T>(), size_bytes_ / sizeof(T)};
  }

 private:
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  std::unique_ptr<void, Free> data_;
  size_t size_bytes_ = 0;
};

}  // namespace strata
