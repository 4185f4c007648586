#include "runtime/tiered_array.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace strata {

void TierCounters::add_allocation(Tier tier, uint64_t bytes) {
  const auto t = static_cast<size_t>(tier);
  const uint64_t now = allocated[t] += bytes;
  uint64_t peak_now = peak[t].load();
  while (now > peak_now && !peak[t].compare_exchange_weak(peak_now, now)) {
  }
}

void TierCounters::release(Tier tier, uint64_t bytes) {
  allocated[static_cast<size_t>(tier)] -= bytes;
}

void TierCounters::clear_traffic() {
  for (auto& b : bytes_read) b = 0;
  for (auto& b : bytes_written) b = 0;
}

ElementSplit ElementSplit::of(int64_t numel, const TierSplit& split) {
  ElementSplit e;
  e.gpu = std::llround(static_cast<double>(numel) * split.gpu_percent / 100.0);
  e.cpu =
      std::llround(static_cast<double>(numel) * (split.gpu_percent + split.cpu_percent) / 100.0) -
      e.gpu;
  e.gpu = std::clamp<int64_t>(e.gpu, 0, numel);
  e.cpu = std::clamp<int64_t>(e.cpu, 0, numel - e.gpu);
  e.disk = numel - e.gpu - e.cpu;
  return e;
}

namespace {
constexpr uint64_t kBlock = DiskStore::kAlignment;
uint64_t round_up(uint64_t x) {
  return (x + kBlock - 1) / kBlock * kBlock;
}
}  // namespace

TieredArray::TieredArray(int64_t numel, DType stored, const TierSplit& split, DiskStore* disk,
                         TierCounters& counters)
    : numel_(numel),
      stored_(stored),
      split_(ElementSplit::of(numel, split)),
      disk_(disk),
      counters_(counters) {
  const uint64_t es = dtype_size(stored_);
  if (split_.gpu > 0) {
    gpu_ = HostBuffer(static_cast<uint64_t>(split_.gpu) * 4);
    counters_.add_allocation(Tier::kGpu, gpu_.size_bytes());
  }
  if (split_.cpu > 0) {
    cpu_ = HostBuffer(static_cast<uint64_t>(split_.cpu) * es);
    counters_.add_allocation(Tier::kCpu, cpu_.size_bytes());
  }
  if (split_.disk > 0) {
    STRATA_CHECK(disk_ != nullptr, "a disk share without a disk store");
    extent_ = disk_->allocate(round_up(static_cast<uint64_t>(split_.disk) * es));
    counters_.add_allocation(Tier::kDisk, extent_.size_bytes);
  }
}

TieredArray::~TieredArray() {
  counters_.release(Tier::kGpu, gpu_.size_bytes());
  counters_.release(Tier::kCpu, cpu_.size_bytes());
  counters_.release(Tier::kDisk, extent_.size_bytes);
}

uint64_t TieredArray::staging_bytes() const {
  return extent_.size_bytes;
}

void TieredArray::disk_blocks(int64_t a, int64_t b, uint64_t& first_byte,
                              uint64_t& end_byte) const {
  const uint64_t es = dtype_size(stored_);
  first_byte = static_cast<uint64_t>(a) * es / kBlock * kBlock;
  end_byte = round_up(static_cast<uint64_t>(b) * es);
}

void TieredArray::fill_stored(const void* src) {
  const uint64_t es = dtype_size(stored_);
  const auto* bytes = static_cast<const uint8_t*>(src);
  if (split_.gpu > 0)
    convert_to_f32(stored_, bytes, gpu_.as<float>(), static_cast<size_t>(split_.gpu));
  if (split_.cpu > 0) {
    std::memcpy(cpu_.data(), bytes + split_.gpu * es, static_cast<size_t>(split_.cpu) * es);
  }
  if (split_.disk > 0) {
    HostBuffer staging(extent_.size_bytes);
    std::memset(staging.data(), 0, staging.size_bytes());
    std::memcpy(staging.data(), bytes + (split_.gpu + split_.cpu) * es,
                static_cast<size_t>(split_.disk) * es);
    disk_->write(extent_, 0, staging.data(), extent_.size_bytes);
  }
}

void TieredArray::fill_zero() {
  std::vector<uint8_t> zeros(static_cast<size_t>(numel_) * dtype_size(stored_), 0);
  fill_stored(zeros.data());
}

void TieredArray::load(float* dst, int64_t begin, int64_t end, HostBuffer& staging) {
  fetch(begin, end, staging);
  assemble(dst, begin, end, staging);
}

void TieredArray::fetch(int64_t begin, int64_t end, HostBuffer& staging) {
  finish_fetch(submit_fetch(begin, end, staging));
}

uint64_t TieredArray::submit_fetch(int64_t begin, int64_t end, HostBuffer& staging) {
  const int64_t g = split_.gpu, c = split_.cpu;
  if (end <= g + c) return 0;
  const int64_t b = std::max(begin, g + c) - (g + c), e = end - (g + c);
  uint64_t first, last;
  disk_blocks(b, e, first, last);
  STRATA_CHECK(staging.size_bytes() >= last - first, "disk staging buffer too small");
  counters_.bytes_read[static_cast<size_t>(Tier::kDisk)] += last - first;
  return disk_->submit_read(extent_, first, staging.data(), last - first);
}

void TieredArray::finish_fetch(uint64_t ticket) {
  if (ticket != 0) disk_->wait(ticket);
}

void TieredArray::assemble(float* dst, int64_t begin, int64_t end, const HostBuffer& staging) {
  const uint64_t es = dtype_size(stored_);
  const int64_t g = split_.gpu, c = split_.cpu;
  if (begin < g) {
    const int64_t e = std::min(end, g);
    std::memcpy(dst + begin, gpu_.as<float>() + begin, static_cast<size_t>(e - begin) * 4);
    counters_.bytes_read[static_cast<size_t>(Tier::kGpu)] += static_cast<uint64_t>(e - begin) * 4;
  }
  if (end > g && begin < g + c) {
    const int64_t b = std::max(begin, g), e = std::min(end, g + c);
    convert_to_f32(stored_, cpu_.as<uint8_t>() + (b - g) * es, dst + b, static_cast<size_t>(e - b));
    counters_.bytes_read[static_cast<size_t>(Tier::kCpu)] += static_cast<uint64_t>(e - b) * es;
  }
  if (end > g + c) {
    const int64_t b = std::max(begin, g + c) - (g + c), e = end - (g + c);
    uint64_t first, last;
    disk_blocks(b, e, first, last);
    convert_to_f32(stored_, staging.as<uint8_t>() + (static_cast<uint64_t>(b) * es - first),
                   dst + g + c + b, static_cast<size_t>(e - b));
  }
}

void TieredArray::store(const float* src, int64_t begin, int64_t end, HostBuffer& staging) {
  const uint64_t es = dtype_size(stored_);
  const int64_t g = split_.gpu, c = split_.cpu;
  if (begin < g) {
    const int64_t e = std::min(end, g);
    std::memcpy(gpu_.as<float>() + begin, src + begin, static_cast<size_t>(e - begin) * 4);
    counters_.bytes_written[static_cast<size_t>(Tier::kGpu)] +=
        static_cast<uint64_t>(e - begin) * 4;
  }
  if (end > g && begin < g + c) {
    const int64_t b = std::max(begin, g), e = std::min(end, g + c);
    convert_from_f32(stored_, src + b, cpu_.as<uint8_t>() + (b - g) * es,
                     static_cast<size_t>(e - b));
    counters_.bytes_written[static_cast<size_t>(Tier::kCpu)] += static_cast<uint64_t>(e - b) * es;
  }
  if (end > g + c) {
    // Whole blocks, taken from src, which holds the current value of every element.
    const int64_t b = std::max(begin, g + c) - (g + c), e = end - (g + c);
    uint64_t first, last;
    disk_blocks(b, e, first, last);
    STRATA_CHECK(staging.size_bytes() >= last - first, "disk staging buffer too small");
    const int64_t first_el = static_cast<int64_t>(first / es);
    const int64_t end_el = std::min<int64_t>(split_.disk, static_cast<int64_t>(last / es));
    std::memset(staging.data(), 0, last - first);
    convert_from_f32(stored_, src + g + c + first_el, staging.data(),
                     static_cast<size_t>(end_el - first_el));
    disk_->write(extent_, first, staging.data(), last - first);
    counters_.bytes_written[static_cast<size_t>(Tier::kDisk)] += last - first;
  }
}

}  // namespace strata
