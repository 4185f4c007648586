// The bound the disk tier is measured against: sequential O_DIRECT bandwidth of the offload
// dir's disk, through the same io_uring path the engine uses.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include "core/buffer.h"
#include "core/error.h"
#include "runtime/disk_store.h"
#include "runtime/probes/disk_probe.h"

namespace strata {
namespace {

constexpr uint64_t kRequestBytes = 64ull << 20;
constexpr uint64_t kRegions = 16;

// Requests of kRequestBytes, all submitted at once so the queue never runs dry. They cycle
// over kRegions regions of the buffer, as the engine's reads fill their own staging slots:
// requests in flight together into the same pages ran about a third slower than the engine's
// reads, and a bound the run beats is no bound.
double timed_transfer_seconds(DiskStore& store, const DiskStore::Extent& extent, HostBuffer& buffer,
                              bool is_write) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<uint64_t> tickets;
  for (uint64_t offset = 0, i = 0; offset < extent.size_bytes; offset += kRequestBytes, ++i) {
    const uint64_t size = std::min<uint64_t>(kRequestBytes, extent.size_bytes - offset);
    uint8_t* region = buffer.as<uint8_t>() + (i % kRegions) * kRequestBytes;
    tickets.push_back(is_write ? store.submit_write(extent, offset, region, size)
                               : store.submit_read(extent, offset, region, size));
  }
  for (uint64_t ticket : tickets) store.wait(ticket);
  if (is_write) store.sync();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double measure(const std::string& dir, uint64_t size_bytes, bool is_write) {
  size_bytes = std::max<uint64_t>(size_bytes, DiskStore::kAlignment);
  DiskStore store(dir, size_bytes);
  const DiskStore::Extent extent = store.allocate(size_bytes);
  HostBuffer buffer(std::min(kRegions * kRequestBytes, extent.size_bytes));
  // Not zeros: some virtual disks and filesystems skip writing zero blocks.
  std::memset(buffer.data(), 0x5a, buffer.size_bytes());
  double seconds = timed_transfer_seconds(store, extent, buffer, true);
  // Reads of never-written (fallocated) blocks return zeros without touching the disk. The
  // faster of two passes: the engine reads its file once per step, and the first pass after
  // the write can trail the device's rate.
  if (!is_write) {
    seconds = timed_transfer_seconds(store, extent, buffer, false);
    seconds = std::min(seconds, timed_transfer_seconds(store, extent, buffer, false));
  }
  STRATA_CHECK(seconds > 0, "disk probe timed nothing");
  return static_cast<double>(extent.size_bytes) / seconds / 1e9;
}

}  // namespace

double measure_disk_read_gbps(const std::string& dir, uint64_t size_bytes) {
  return measure(dir, size_bytes, false);
}

double measure_disk_write_gbps(const std::string& dir, uint64_t size_bytes) {
  return measure(dir, size_bytes, true);
}

}  // namespace strata
