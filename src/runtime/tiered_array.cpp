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

ElementSplit::Ranges ElementSplit::ranges(int64_t begin, int64_t end) const {
  const auto part = [begin, end](int64_t lo, int64_t hi) {
    const int64_t b = std::max(begin, lo), e = std::min(end, hi);
    return e > b ? UnitRange{b, e, b - lo} : UnitRange{};
  };
  return {part(0, gpu), part(gpu, gpu + cpu), part(gpu + cpu, gpu + cpu + disk)};
}

DiskBlocks DiskBlocks::of(const UnitRange& disk, uint64_t unit_bytes) {
  DiskBlocks d;
  d.lo = static_cast<uint64_t>(disk.offset) * unit_bytes;
  d.hi = d.lo + static_cast<uint64_t>(disk.size()) * unit_bytes;
  d.first = d.lo / kBlock * kBlock;
  d.last = round_up(d.hi);
  return d;
}

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
  const UnitRange disk = split_.ranges(ua, ub).disk;
  if (!disk) return 0;
  const DiskBlocks d = DiskBlocks::of(disk, format_.unit_bytes(Tier::kDisk));
  STRATA_CHECK(staging.size_bytes() >= d.last - d.first, "disk staging buffer too small");
  counters_.bytes_read[static_cast<size_t>(Tier::kDisk)] += d.last - d.first;
  return disk_->submit_read(extent_, d.first, staging.data(), d.last - d.first);
}

void TieredArray::finish_fetch(uint64_t ticket) {
  if (ticket != 0) disk_->wait(ticket);
}

void TieredArray::assemble(float* dst, int64_t begin, int64_t end, const HostBuffer& staging) {
  STRATA_CHECK(format_.kind != StoredFormat::Kind::kBytes,
               "a byte array is gathered, not assembled");
  int64_t ua, ub;
  unit_range(begin, end, ua, ub);
  const auto r = split_.ranges(ua, ub);
  const uint64_t gb = format_.unit_bytes(Tier::kGpu), cb = format_.unit_bytes(Tier::kCpu);
  if (r.gpu) {
    if (format_.kind == StoredFormat::Kind::kPlain) {
      std::memcpy(dst + r.gpu.begin, gpu_.as<float>() + r.gpu.begin,
                  static_cast<size_t>(r.gpu.size()) * 4);
    } else {
      decode(gpu_.as<uint8_t>() + r.gpu.offset * gb, r.gpu.begin, r.gpu.size(), dst);
    }
    counters_.bytes_read[static_cast<size_t>(Tier::kGpu)] +=
        static_cast<uint64_t>(r.gpu.size()) * gb;
  }
  if (r.cpu) {
    decode(cpu_.as<uint8_t>() + r.cpu.offset * cb, r.cpu.begin, r.cpu.size(), dst);
    counters_.bytes_read[static_cast<size_t>(Tier::kCpu)] +=
        static_cast<uint64_t>(r.cpu.size()) * cb;
  }
  if (r.disk) {
    const DiskBlocks d = DiskBlocks::of(r.disk, cb);
    decode(staging.as<uint8_t>() + (d.lo - d.first), r.disk.begin, r.disk.size(), dst);
  }
}

void TieredArray::gather(uint8_t* dst, int64_t begin, int64_t end, const HostBuffer& staging) {
  STRATA_CHECK(format_.kind == StoredFormat::Kind::kBytes, "only a byte array is gathered");
  const auto r = split_.ranges(begin, end);
  if (r.gpu) {
    std::memcpy(dst + r.gpu.begin, gpu_.as<uint8_t>() + r.gpu.offset,
                static_cast<size_t>(r.gpu.size()));
    counters_.bytes_read[static_cast<size_t>(Tier::kGpu)] += static_cast<uint64_t>(r.gpu.size());
  }
  if (r.cpu) {
    std::memcpy(dst + r.cpu.begin, cpu_.as<uint8_t>() + r.cpu.offset,
                static_cast<size_t>(r.cpu.size()));
    counters_.bytes_read[static_cast<size_t>(Tier::kCpu)] += static_cast<uint64_t>(r.cpu.size());
  }
  if (r.disk) {
    const DiskBlocks d = DiskBlocks::of(r.disk, 1);
    std::memcpy(dst + r.disk.begin, staging.as<uint8_t>() + (d.lo - d.first),
                static_cast<size_t>(r.disk.size()));
  }
}

void TieredArray::store(const float* src, int64_t begin, int64_t end, HostBuffer& staging) {
  STRATA_CHECK(format_.kind != StoredFormat::Kind::kBytes, "a byte array is read-only");
  int64_t ua, ub;
  unit_range(begin, end, ua, ub);
  const auto r = split_.ranges(ua, ub);
  const uint64_t gb = format_.unit_bytes(Tier::kGpu), cb = format_.unit_bytes(Tier::kCpu);
  if (r.gpu) {
    if (format_.kind == StoredFormat::Kind::kPlain) {
      std::memcpy(gpu_.as<float>() + r.gpu.begin, src + r.gpu.begin,
                  static_cast<size_t>(r.gpu.size()) * 4);
    } else {
      encode(src, r.gpu.begin, r.gpu.size(), gpu_.as<uint8_t>() + r.gpu.offset * gb);
    }
    counters_.bytes_written[static_cast<size_t>(Tier::kGpu)] +=
        static_cast<uint64_t>(r.gpu.size()) * gb;
  }
  if (r.cpu) {
    encode(src, r.cpu.begin, r.cpu.size(), cpu_.as<uint8_t>() + r.cpu.offset * cb);
    counters_.bytes_written[static_cast<size_t>(Tier::kCpu)] +=
        static_cast<uint64_t>(r.cpu.size()) * cb;
  }
  if (r.disk) store_disk(src, r.disk, staging);
}

void TieredArray::store_disk(const float* src, const UnitRange& disk, HostBuffer& staging) {
  const uint64_t cb = format_.unit_bytes(Tier::kDisk);
  const DiskBlocks d = DiskBlocks::of(disk, cb);
  STRATA_CHECK(staging.size_bytes() >= d.last - d.first, "disk staging buffer too small");
  const int64_t disk_start = split_.gpu + split_.cpu;
  if (format_.kind == StoredFormat::Kind::kPlain) {
    // Whole blocks, taken from src, which holds the current value of every element.
    const int64_t first_el = static_cast<int64_t>(d.first / cb);
    const int64_t end_el = std::min<int64_t>(split_.disk, static_cast<int64_t>(d.last / cb));
    std::memset(staging.data(), 0, d.last - d.first);
    encode(src, disk_start + first_el, end_el - first_el, staging.as<uint8_t>());
  } else {
    // Groups straddle blocks and re-encoding decoded neighbours could drift, so the edge
    // blocks are read back and only the groups asked for are written into them.
    if (d.lo > d.first) disk_->read(extent_, d.first, staging.data(), kBlock);
    if (d.hi < d.last && (d.last - kBlock > d.first || d.lo == d.first)) {
      disk_->read(extent_, d.last - kBlock, staging.as<uint8_t>() + (d.last - kBlock - d.first),
                  kBlock);
    }
    encode(src, disk.begin, disk.size(), staging.as<uint8_t>() + (d.lo - d.first));
  }
  disk_->write(extent_, d.first, staging.data(), d.last - d.first);
  counters_.bytes_written[static_cast<size_t>(Tier::kDisk)] += d.last - d.first;
}

}  // namespace strata
