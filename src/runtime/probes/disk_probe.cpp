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

// Requests of one buffer's size, all submitted at once so the queue never runs dry; the buffer
// is reused by every request because the data does not matter.
double timed_transfer_seconds(DiskStore& store, const DiskStore::Extent& extent, HostBuffer& buffer,
                              bool is_write) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<uint64_t> tickets;
  for (uint64_t offset = 0; offset < extent.size_bytes; offset += buffer.size_bytes()) {
    const uint64_t size = std::min<uint64_t>(buffer.size_bytes(), extent.size_bytes - offset);
    tickets.push_back(is_write ? store.submit_write(extent, offset, buffer.data(), size)
                               : store.submit_read(extent, offset, buffer.data(), size));
  }
  for (uint64_t ticket : tickets) store.wait(ticket);
  if (is_write) store.sync();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double measure(const std::string& dir, uint64_t size_bytes, bool is_write) {
  constexpr uint64_t kBufferBytes = 64ull << 20;
  size_bytes = std::max<uint64_t>(size_bytes, DiskStore::kAlignment);
  DiskStore store(dir, size_bytes);
  const DiskStore::Extent extent = store.allocate(size_bytes);
  HostBuffer buffer(std::min(kBufferBytes, extent.size_bytes));
  // Not zeros: some virtual disks and filesystems skip writing zero blocks.
  std::memset(buffer.data(), 0x5a, buffer.size_bytes());
  double seconds = timed_transfer_seconds(store, extent, buffer, true);
  // Reads of never-written (fallocated) blocks return zeros without touching the disk.
  if (!is_write) seconds = timed_transfer_seconds(store, extent, buffer, false);
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
