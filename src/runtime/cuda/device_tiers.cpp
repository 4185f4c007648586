#include "runtime/cuda/device_tiers.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace strata {
namespace {

constexpr uint64_t kBlock = DiskStore::kAlignment;
uint64_t round_up(uint64_t x) {
  return (x + kBlock - 1) / kBlock * kBlock;
}

}  // namespace

DeviceTieredArray::DeviceTieredArray(int64_t n_units, uint64_t unit_bytes, const TierSplit& split,
                                     cuda::DevicePool& pool, cuda::PinnedArena* pinned,
                                     DiskStore* disk, TierCounters& counters)
    : n_units_(n_units),
      unit_bytes_(unit_bytes),
      split_(ElementSplit::of(n_units, split)),
      disk_(disk),
      counters_(counters) {
  if (split_.gpu > 0) {
    device_ = pool.allocate(static_cast<uint64_t>(split_.gpu) * unit_bytes_);
    counters_.add_allocation(Tier::kGpu, device_.size_bytes());
  }
  if (split_.cpu > 0) {
    const uint64_t bytes = static_cast<uint64_t>(split_.cpu) * unit_bytes_;
    if (pinned) {
      pinned_ = pinned->allocate(bytes);
      host_ = pinned_.as<uint8_t>();
    } else {
      pageable_ = HostBuffer(bytes);
      host_ = pageable_.as<uint8_t>();
    }
    counters_.add_allocation(Tier::kCpu, bytes);
  }
  if (split_.disk > 0) {
    STRATA_CHECK(disk_ != nullptr, "a disk share without a disk store");
    extent_ = disk_->allocate(round_up(static_cast<uint64_t>(split_.disk) * unit_bytes_));
    counters_.add_allocation(Tier::kDisk, extent_.size_bytes);
  }
}

DeviceTieredArray::~DeviceTieredArray() {
  counters_.release(Tier::kGpu, device_.size_bytes());
  counters_.release(Tier::kCpu, static_cast<uint64_t>(split_.cpu) * unit_bytes_);
  counters_.release(Tier::kDisk, extent_.size_bytes);
}

void DeviceTieredArray::fill(const void* src, const cuda::Stream& stream) {
  const auto* bytes = static_cast<const uint8_t*>(src);
  const uint64_t g = static_cast<uint64_t>(split_.gpu) * unit_bytes_;
  const uint64_t c = static_cast<uint64_t>(split_.cpu) * unit_bytes_;
  const uint64_t d = static_cast<uint64_t>(split_.disk) * unit_bytes_;
  if (g > 0) cuda::copy_h2d(device_.data(), bytes, g, stream);
  if (c > 0) std::memcpy(host_, bytes + g, c);
  if (d > 0) {
    HostBuffer staging(extent_.size_bytes);
    std::memset(staging.data(), 0, staging.size_bytes());
    std::memcpy(staging.data(), bytes + g + c, d);
    disk_->write(extent_, 0, staging.data(), extent_.size_bytes);
  }
  stream.synchronize();  // src may go once this returns
}

uint64_t DeviceTieredArray::submit_fetch(int64_t begin, int64_t end, void* staging,
                                         uint64_t staging_bytes) {
  const UnitRange disk = split_.ranges(begin, end).disk;
  if (!disk) return 0;
  const DiskBlocks d = DiskBlocks::of(disk, unit_bytes_);
  STRATA_CHECK(staging_bytes >= d.last - d.first, "disk staging buffer too small");
  counters_.bytes_read[static_cast<size_t>(Tier::kDisk)] += d.last - d.first;
  return disk_->submit_read(extent_, d.first, staging, d.last - d.first);
}

void DeviceTieredArray::finish_fetch(uint64_t ticket) {
  if (ticket != 0) disk_->wait(ticket);
}

void DeviceTieredArray::load(void* dst, int64_t begin, int64_t end, const void* staging,
                             const cuda::Stream& stream) {
  STRATA_CHECK(begin >= 0 && begin <= end && end <= n_units_, "unit range outside the array");
  auto* out = static_cast<uint8_t*>(dst);
  const uint64_t ub = unit_bytes_;
  const auto r = split_.ranges(begin, end);
  if (r.gpu) {
    const uint64_t bytes = static_cast<uint64_t>(r.gpu.size()) * ub;
    cuda::copy_d2d(out + r.gpu.begin * ub, device_.as<uint8_t>() + r.gpu.offset * ub, bytes,
                   stream);
    counters_.bytes_read[static_cast<size_t>(Tier::kGpu)] += bytes;
  }
  if (r.cpu) {
    const uint64_t bytes = static_cast<uint64_t>(r.cpu.size()) * ub;
    cuda::copy_h2d(out + r.cpu.begin * ub, host_ + r.cpu.offset * ub, bytes, stream);
    counters_.bytes_read[static_cast<size_t>(Tier::kCpu)] += bytes;
  }
  if (r.disk) {
    const DiskBlocks d = DiskBlocks::of(r.disk, ub);
    cuda::copy_h2d(out + r.disk.begin * ub, static_cast<const uint8_t*>(staging) + (d.lo - d.first),
                   d.hi - d.lo, stream);
  }
}

void DeviceTieredArray::load_through(void* dst, int64_t begin, int64_t end, void* staging,
                                     const cuda::Stream& stream) {
  if (const UnitRange disk = split_.ranges(begin, end).disk) {
    const DiskBlocks d = DiskBlocks::of(disk, unit_bytes_);
    counters_.bytes_read[static_cast<size_t>(Tier::kDisk)] += d.last - d.first;
    cuda::launch_host(stream, guarded([this, staging, d] {
                        disk_->read(extent_, d.first, staging, d.last - d.first);
                      }));
  }
  load(dst, begin, end, staging, stream);
}

void DeviceTieredArray::store(const void* src, int64_t begin, int64_t end, void* staging,
                              const cuda::Stream& stream) {
  STRATA_CHECK(begin >= 0 && begin <= end && end <= n_units_, "unit range outside the array");
  const auto* in = static_cast<const uint8_t*>(src);
  const uint64_t ub = unit_bytes_;
  const auto r = split_.ranges(begin, end);
  if (r.gpu) {
    const uint64_t bytes = static_cast<uint64_t>(r.gpu.size()) * ub;
    cuda::copy_d2d(device_.as<uint8_t>() + r.gpu.offset * ub, in + r.gpu.begin * ub, bytes, stream);
    counters_.bytes_written[static_cast<size_t>(Tier::kGpu)] += bytes;
  }
  if (r.cpu) {
    const uint64_t bytes = static_cast<uint64_t>(r.cpu.size()) * ub;
    cuda::copy_d2h(host_ + r.cpu.offset * ub, in + r.cpu.begin * ub, bytes, stream);
    counters_.bytes_written[static_cast<size_t>(Tier::kCpu)] += bytes;
  }
  if (!r.disk) return;
  // Whole blocks go back to disk: the edge blocks are read first so the units around the range
  // keep their bytes, then the range lands in between.
  const DiskBlocks d = DiskBlocks::of(r.disk, ub);
  STRATA_CHECK(staging != nullptr, "a store to disk without staging");
  auto* buffer = static_cast<uint8_t*>(staging);
  cuda::launch_host(stream, guarded([this, buffer, d] {
                      if (d.lo > d.first) disk_->read(extent_, d.first, buffer, kBlock);
                      if (d.hi < d.last && (d.last - kBlock > d.first || d.lo == d.first)) {
                        disk_->read(extent_, d.last - kBlock, buffer + (d.last - kBlock - d.first),
                                    kBlock);
                      }
                    }));
  cuda::copy_d2h(buffer + (d.lo - d.first), in + r.disk.begin * ub, d.hi - d.lo, stream);
  cuda::launch_host(stream, guarded([this, buffer, d] {
                      disk_->write(extent_, d.first, buffer, d.last - d.first);
                    }));
  counters_.bytes_written[static_cast<size_t>(Tier::kDisk)] += d.last - d.first;
}

// Disk I/O run on the host in stream order: its errors land in the error slot.
std::function<void()> DeviceTieredArray::guarded(std::function<void()> io) {
  return [this, io = std::move(io)] {
    try {
      io();
    } catch (...) {
      if (error_ && !*error_) *error_ = std::current_exception();
    }
  };
}

}  // namespace strata
