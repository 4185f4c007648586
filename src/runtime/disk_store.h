// The disk tier: the engine's own file in the user's --offload-dir, read and written with
// O_DIRECT through io_uring so weight and cache traffic bypasses the page cache and runs at the
// disk's sequential bandwidth (FlexGen's memmap through the page cache does not).
//
// One store is one file, named uniquely, mode 0600, reserved up front with fallocate so the run
// cannot fail half way for lack of space. The file is unlinked as soon as it is opened: only the
// store's descriptor keeps it, so however the process ends (exit, a signal, kill -9, a crash) the
// kernel frees its blocks and the offload dir holds nothing of it; no handler or registry needed.
//
// I/O: every buffer, offset and size is a multiple of kAlignment. A request is split into
// kChunkBytes chunks kept kQueueDepth deep in flight; a completion thread reaps them, resubmits
// short transfers and refills the queue, so requests progress while the submitter computes.
// Requests are served in submission order. Any thread may submit and wait; each ticket is waited
// for exactly once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace strata {

// A fault the disk tier injects into one chunk's completion, for tests of the error paths:
// STRATA_DISK_FAULT=<read|write>:<n>:<kind> fails the chunk after the first n of that direction.
// Kinds: ENOSPC or EIO (the chunk fails with that errno), short (it transfers only part, which
// the store must ask for again), eof (a read finds the end of the file) and truncate (the file is
// cut to nothing under the engine, then the read is retried and meets the real end).
struct DiskFault {
  enum class Kind { kNone, kErrno, kShort, kEof, kTruncate };
  Kind kind = Kind::kNone;
  bool is_write = false;
  uint64_t after_chunks = 0;
  int error = 0;  // kErrno's errno

  // An input error naming STRATA_DISK_FAULT when `spec` is malformed.
  static DiskFault parse(const std::string& spec);
  // STRATA_DISK_FAULT, or no fault when it is unset or empty.
  static DiskFault from_env();
};

class DiskStore {
 public:
  static constexpr uint64_t kAlignment = 4096;      // O_DIRECT block and extent granularity
  static constexpr uint64_t kChunkBytes = 1 << 20;  // one io_uring request
  static constexpr unsigned kQueueDepth = 16;       // chunks in flight

  // A range of the store's file: offset and size are multiples of kAlignment.
  struct Extent {
    uint64_t offset_bytes = 0;
    uint64_t size_bytes = 0;
  };

  // Input errors, naming `dir`, when it is missing, not a directory, not writable, on a
  // filesystem without O_DIRECT, or without room for `capacity_bytes` (rounded up to
  // kAlignment); nothing is left behind then.
  DiskStore(const std::string& dir, uint64_t capacity_bytes, const DiskFault& fault = {});
  // Waits for outstanding I/O (so the buffers of tickets not waited for must outlive the store),
  // then closes the (already unlinked) file.
  ~DiskStore();
  DiskStore(const DiskStore&) = delete;
  DiskStore& operator=(const DiskStore&) = delete;

  const std::string& dir() const;
  // The name the file was created under (it is unlinked at once), for messages.
  const std::string& path() const;
  uint64_t capacity_bytes() const;
  uint64_t allocated_bytes() const;

  // Bump allocation; the size is rounded up to kAlignment. An input error names the disk tier,
  // the bytes needed and the bytes left when it does not fit.
  Extent allocate(uint64_t size_bytes);

  // Asynchronous transfers between `extent` (from offset_in_extent) and host memory; the buffer
  // must stay valid until wait(ticket) returns. wait() throws on an I/O error, naming the dir.
  uint64_t submit_read(const Extent& extent, uint64_t offset_in_extent, void* dst,
                       uint64_t size_bytes);
  uint64_t submit_write(const Extent& extent, uint64_t offset_in_extent, const void* src,
                        uint64_t size_bytes);
  void wait(uint64_t ticket);

  void read(const Extent& extent, uint64_t offset_in_extent, void* dst, uint64_t size_bytes);
  void write(const Extent& extent, uint64_t offset_in_extent, const void* src, uint64_t size_bytes);
  // fdatasync: written data is on the device, not only in its queue.
  void sync();
  // Waits until no chunk is queued or in flight, waited for or not: after an error, before the
  // buffers of tickets nobody will wait for are freed.
  void drain();
  // Test hook: cuts the (unlinked) file to `size_bytes` under the store, as another process
  // holding it could.
  void truncate_for_test(uint64_t size_bytes);

  // Completed transfers, and the seconds during which at least one chunk was in flight.
  uint64_t bytes_read() const;
  uint64_t bytes_written() const;
  double busy_seconds() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace strata
