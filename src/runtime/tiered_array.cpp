#include "runtime/tiered_array.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kernels/cpu/quant.h"

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

uint64_t StoredFormat::unit_bytes(Tier tier) const {
  switch (kind) {
    case Kind::kPlain:
      return dtype_size(tier == Tier::kGpu ? gpu_dtype : dtype);
    case Kind::kQuantized:
      return quant_group_bytes(bits);
    case Kind::kBytes:
      return 1;
  }
  return 0;
}

uint64_t StoredFormat::tier_bytes(int64_t numel, const TierSplit& split, Tier tier) const {
  const ElementSplit e = ElementSplit::of(quant_groups(numel, unit_elems()), split);
  const int64_t units[kNumTiers] = {e.gpu, e.cpu, e.disk};
  const uint64_t bytes = static_cast<uint64_t>(units[static_cast<int>(tier)]) * unit_bytes(tier);
  return tier == Tier::kDisk && bytes > 0 ? round_up(bytes) : bytes;
}

TieredArray::TieredArray(int64_t numel, StoredFormat format, const TierSplit& split,
                         DiskStore* disk, TierCounters& counters)
    : numel_(numel),
      format_(format),
      n_units_(quant_groups(numel, format.unit_elems())),
      split_(ElementSplit::of(n_units_, split)),
      disk_(disk),
      counters_(counters) {
  STRATA_CHECK(format_.gpu_dtype == DType::kF32, "the CPU backend computes in fp32");
  STRATA_CHECK(format_.kind != StoredFormat::Kind::kQuantized ||
                   (format_.group_len >= 1 && format_.group_len <= kQuantGroup),
               "quantisation group of ", format_.group_len);
  if (split_.gpu > 0) {
    gpu_ = HostBuffer(static_cast<uint64_t>(split_.gpu) * format_.unit_bytes(Tier::kGpu));
    counters_.add_allocation(Tier::kGpu, gpu_.size_bytes());
  }
  if (split_.cpu > 0) {
    cpu_ = HostBuffer(static_cast<uint64_t>(split_.cpu) * format_.unit_bytes(Tier::kCpu));
    counters_.add_allocation(Tier::kCpu, cpu_.size_bytes());
  }
  if (split_.disk > 0) {
    STRATA_CHECK(disk_ != nullptr, "a disk share without a disk store");
    extent_ = disk_->allocate(
        round_up(static_cast<uint64_t>(split_.disk) * format_.unit_bytes(Tier::kDisk)));
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

const uint8_t* TieredArray::contiguous_bytes() const {
  if (format_.kind == StoredFormat::Kind::kPlain) return nullptr;
  if (split_.gpu == n_units_) return gpu_.as<uint8_t>();
  if (split_.cpu == n_units_) return cpu_.as<uint8_t>();
  return nullptr;
}

void TieredArray::disk_blocks(int64_t a, int64_t b, uint64_t& first_byte,
                              uint64_t& end_byte) const {
  const uint64_t ub = format_.unit_bytes(Tier::kDisk);
  first_byte = static_cast<uint64_t>(a) * ub / kBlock * kBlock;
  end_byte = round_up(static_cast<uint64_t>(b) * ub);
}

void TieredArray::unit_range(int64_t begin, int64_t end, int64_t& first, int64_t& last) const {
  const int64_t ue = format_.unit_elems();
  STRATA_CHECK(begin % ue == 0 && (end % ue == 0 || end == numel_),
               "a quantised array is accessed in whole groups");
  first = begin / ue;
  last = quant_groups(end, ue);
}

void TieredArray::decode(const uint8_t* src, int64_t u, int64_t n, float* dst) const {
  const int64_t ue = format_.unit_elems();
  const int64_t e0 = u * ue, e1 = std::min(numel_, (u + n) * ue);
  if (format_.kind == StoredFormat::Kind::kQuantized) {
    dequantize(format_.bits, src, e1 - e0, format_.group_len, dst + e0);
  } else {
    convert_to_f32(format_.dtype, src, dst + e0, static_cast<size_t>(e1 - e0));
  }
}

void TieredArray::encode(const float* src, int64_t u, int64_t n, uint8_t* dst) const {
  const int64_t ue = format_.unit_elems();
  const int64_t e0 = u * ue, e1 = std::min(numel_, (u + n) * ue);
  if (format_.kind == StoredFormat::Kind::kQuantized) {
    quantize(format_.bits, src + e0, e1 - e0, format_.group_len, dst);
  } else {
    convert_from_f32(format_.dtype, src + e0, dst, static_cast<size_t>(e1 - e0));
  }
}

void TieredArray::fill_stored(const void* src) {
  STRATA_CHECK(format_.kind != StoredFormat::Kind::kQuantized, "fill a quantised array with fp32");
  const uint64_t es = format_.unit_bytes(Tier::kCpu);
  const auto* bytes = static_cast<const uint8_t*>(src);
  if (split_.gpu > 0) {
    if (format_.kind == StoredFormat::Kind::kPlain) {
      convert_to_f32(format_.dtype, bytes, gpu_.as<float>(), static_cast<size_t>(split_.gpu));
    } else {
      std::memcpy(gpu_.data(), bytes, static_cast<size_t>(split_.gpu));
    }
  }
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

void TieredArray::fill(const float* src) {
  STRATA_CHECK(format_.kind != StoredFormat::Kind::kBytes, "a byte array is filled with bytes");
  if (format_.kind == StoredFormat::Kind::kPlain && format_.dtype == DType::kF32) {
    fill_stored(src);
    return;
  }
  HostBuffer staging(staging_bytes());
  store(src, 0, numel_, staging);
}

void TieredArray::fill_zero() {
  if (format_.kind == StoredFormat::Kind::kBytes) {
    std::vector<uint8_t> zeros(static_cast<size_t>(numel_), 0);
    fill_stored(zeros.data());
  } else {
    std::vector<float> zeros(static_cast<size_t>(numel_), 0.0f);
    fill(zeros.data());
  }
}

void TieredArray::load(float* dst, int64_t begin, int64_t end, HostBuffer& staging) {
  fetch(begin, end, staging);
  assemble(dst, begin, end, staging);
}

void TieredArray::fetch(int64_t begin, int64_t end, HostBuffer& staging) {
  finish_fetch(submit_fetch(begin, end, staging));
}

uint64_t TieredArray::submit_fetch(int64_t begin, int64_t end, HostBuffer& staging) {
  int64_t ua, ub;
  unit_range(begin, end, ua, ub);
  const int64_t g = split_.gpu, c = split_.cpu;
  if (ub <= g + c) return 0;
  const int64_t b = std::max(ua, g + c) - (g + c), e = ub - (g + c);
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
  STRATA_CHECK(format_.kind != StoredFormat::Kind::kBytes,
               "a byte array is gathered, not assembled");
  int64_t ua, ub;
  unit_range(begin, end, ua, ub);
  const int64_t g = split_.gpu, c = split_.cpu;
  const uint64_t gb = format_.unit_bytes(Tier::kGpu), cb = format_.unit_bytes(Tier::kCpu);
  if (ua < g) {
    const int64_t e = std::min(ub, g);
    if (format_.kind == StoredFormat::Kind::kPlain) {
      std::memcpy(dst + ua, gpu_.as<float>() + ua, static_cast<size_t>(e - ua) * 4);
    } else {
      decode(gpu_.as<uint8_t>() + ua * gb, ua, e - ua, dst);
    }
    counters_.bytes_read[static_cast<size_t>(Tier::kGpu)] += static_cast<uint64_t>(e - ua) * gb;
  }
  if (ub > g && ua < g + c) {
    const int64_t b = std::max(ua, g), e = std::min(ub, g + c);
    decode(cpu_.as<uint8_t>() + (b - g) * cb, b, e - b, dst);
    counters_.bytes_read[static_cast<size_t>(Tier::kCpu)] += static_cast<uint64_t>(e - b) * cb;
  }
  if (ub > g + c) {
    const int64_t b = std::max(ua, g + c) - (g + c), e = ub - (g + c);
    uint64_t first, last;
    disk_blocks(b, e, first, last);
    decode(staging.as<uint8_t>() + (static_cast<uint64_t>(b) * cb - first), g + c + b, e - b, dst);
  }
}

void TieredArray::gather(uint8_t* dst, int64_t begin, int64_t end, const HostBuffer& staging) {
  STRATA_CHECK(format_.kind == StoredFormat::Kind::kBytes, "only a byte array is gathered");
  const int64_t g = split_.gpu, c = split_.cpu;
  if (begin < g) {
    const int64_t e = std::min(end, g);
    std::memcpy(dst + begin, gpu_.as<uint8_t>() + begin, static_cast<size_t>(e - begin));
    counters_.bytes_read[static_cast<size_t>(Tier::kGpu)] += static_cast<uint64_t>(e - begin);
  }
  if (end > g && begin < g + c) {
    const int64_t b = std::max(begin, g), e = std::min(end, g + c);
    std::memcpy(dst + b, cpu_.as<uint8_t>() + (b - g), static_cast<size_t>(e - b));
    counters_.bytes_read[static_cast<size_t>(Tier::kCpu)] += static_cast<uint64_t>(e - b);
  }
  if (end > g + c) {
    const int64_t b = std::max(begin, g + c) - (g + c), e = end - (g + c);
    uint64_t first, last;
    disk_blocks(b, e, first, last);
    std::memcpy(dst + g + c + b, staging.as<uint8_t>() + (static_cast<uint64_t>(b) - first),
                static_cast<size_t>(e - b));
  }
}

void TieredArray::store(const float* src, int64_t begin, int64_t end, HostBuffer& staging) {
  STRATA_CHECK(format_.kind != StoredFormat::Kind::kBytes, "a byte array is read-only");
  int64_t ua, ub;
  unit_range(begin, end, ua, ub);
  const int64_t g = split_.gpu, c = split_.cpu;
  const uint64_t gb = format_.unit_bytes(Tier::kGpu), cb = format_.unit_bytes(Tier::kCpu);
  if (ua < g) {
    const int64_t e = std::min(ub, g);
    if (format_.kind == StoredFormat::Kind::kPlain) {
      std::memcpy(gpu_.as<float>() + ua, src + ua, static_cast<size_t>(e - ua) * 4);
    } else {
      encode(src, ua, e - ua, gpu_.as<uint8_t>() + ua * gb);
    }
    counters_.bytes_written[static_cast<size_t>(Tier::kGpu)] += static_cast<uint64_t>(e - ua) * gb;
  }
  if (ub > g && ua < g + c) {
    const int64_t b = std::max(ua, g), e = std::min(ub, g + c);
    encode(src, b, e - b, cpu_.as<uint8_t>() + (b - g) * cb);
    counters_.bytes_written[static_cast<size_t>(Tier::kCpu)] += static_cast<uint64_t>(e - b) * cb;
  }
  if (ub > g + c) {
    const int64_t b = std::max(ua, g + c) - (g + c), e = ub - (g + c);
    uint64_t first, last;
    disk_blocks(b, e, first, last);
    STRATA_CHECK(staging.size_bytes() >= last - first, "disk staging buffer too small");
    if (format_.kind == StoredFormat::Kind::kPlain) {
      // Whole blocks, taken from src, which holds the current value of every element.
      const int64_t first_el = static_cast<int64_t>(first / cb);
      const int64_t end_el = std::min<int64_t>(split_.disk, static_cast<int64_t>(last / cb));
      std::memset(staging.data(), 0, last - first);
      encode(src, g + c + first_el, end_el - first_el, staging.as<uint8_t>());
    } else {
      // Groups straddle blocks and re-encoding decoded neighbours could drift, so the edge
      // blocks are read back and only the groups asked for are written into them.
      const uint64_t lo = static_cast<uint64_t>(b) * cb, hi = static_cast<uint64_t>(e) * cb;
      if (lo > first) disk_->read(extent_, first, staging.data(), kBlock);
      if (hi < last && (last - kBlock > first || lo == first)) {
        disk_->read(extent_, last - kBlock, staging.as<uint8_t>() + (last - kBlock - first),
                    kBlock);
      }
      encode(src, g + c + b, e - b, staging.as<uint8_t>() + (lo - first));
    }
    disk_->write(extent_, first, staging.data(), last - first);
    counters_.bytes_written[static_cast<size_t>(Tier::kDisk)] += last - first;
  }
}

}  // namespace strata
