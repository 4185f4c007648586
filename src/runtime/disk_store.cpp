#include "runtime/disk_store.h"

#include <fcntl.h>
#include <liburing.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "core/error.h"

namespace strata {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kStopTag = ~uint64_t{0};

uint64_t round_up(uint64_t bytes, uint64_t multiple) {
  return (bytes + multiple - 1) / multiple * multiple;
}

bool aligned(uint64_t value) {
  return value % DiskStore::kAlignment == 0;
}

std::string describe_errno(int error) {
  return std::strerror(error);
}

// The directory must exist, be a directory and take new files.
void check_offload_dir(const std::string& dir) {
  struct stat info {};
  if (::stat(dir.c_str(), &info) != 0) {
    STRATA_INPUT_CHECK(errno != ENOENT, "--offload-dir ", dir, ": does not exist");
    throw_input(detail::concat("--offload-dir ", dir, ": ", describe_errno(errno)));
  }
  STRATA_INPUT_CHECK(S_ISDIR(info.st_mode), "--offload-dir ", dir, ": is not a directory");
  STRATA_INPUT_CHECK(::access(dir.c_str(), W_OK | X_OK) == 0, "--offload-dir ", dir,
                     ": is not writable (", describe_errno(errno), ")");
}

uint64_t free_bytes(const std::string& dir) {
  struct statvfs info {};
  STRATA_CHECK(::statvfs(dir.c_str(), &info) == 0, "statvfs ", dir, ": ", describe_errno(errno));
  return uint64_t{info.f_bavail} * info.f_frsize;
}

// The store's file, already unlinked: the descriptor alone keeps it, so closing it (or the
// process ending in any way) frees its blocks.
class OwnedFile {
 public:
  explicit OwnedFile(int fd) : fd_(fd) {}
  ~OwnedFile() { ::close(fd_); }
  OwnedFile(const OwnedFile&) = delete;
  OwnedFile& operator=(const OwnedFile&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_;
};

// Creates a new file `path` for direct I/O and unlinks it at once, or throws an input error
// naming `dir`.
int create_direct_file(const std::string& dir, const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_DIRECT | O_CLOEXEC, 0600);
  if (fd >= 0) {
    // From here nothing but the descriptor names the file: a kill -9 leaves nothing behind.
    const int unlinked = ::unlink(path.c_str());
    const int error = errno;
    if (unlinked != 0) ::close(fd);
    STRATA_CHECK(unlinked == 0, "unlink ", path, ": ", describe_errno(error));
    return fd;
  }
  const int error = errno;
  if (error == EINVAL) {
    // Linux creates the file before it finds the filesystem refuses O_DIRECT.
    ::unlink(path.c_str());
    throw_input(detail::concat("--offload-dir ", dir,
                               ": its filesystem does not support O_DIRECT (direct I/O), which "
                               "the disk tier needs; choose a directory on a local disk, not "
                               "tmpfs"));
  }
  STRATA_INPUT_CHECK(error != EACCES && error != EPERM && error != EROFS, "--offload-dir ", dir,
                     ": is not writable (", describe_errno(error), ")");
  throw_input(
      detail::concat("--offload-dir ", dir, ": cannot create a file: ", describe_errno(error)));
}

std::string room_message(const std::string& dir, uint64_t capacity_bytes) {
  return detail::concat("offload dir ", dir, " has room for ", free_bytes(dir),
                        " bytes but the policy needs ", capacity_bytes);
}

class Ring {
 public:
  explicit Ring(unsigned entries) {
    const int ret = io_uring_queue_init(entries, &ring_, 0);
    STRATA_CHECK(ret == 0, "io_uring_queue_init: ", describe_errno(-ret),
                 " (io_uring disabled by sysctl kernel.io_uring_disabled or a container's seccomp "
                 "profile?)");
  }
  ~Ring() { io_uring_queue_exit(&ring_); }
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;
  io_uring* get() { return &ring_; }

 private:
  io_uring ring_{};
};

// One io_uring request: part of a ticket's transfer, at most kChunkBytes.
struct Chunk {
  uint64_t ticket = 0;
  bool is_write = false;
  char* buffer = nullptr;
  uint64_t file_offset = 0;
  uint64_t size_bytes = 0;
  uint64_t done_bytes = 0;
  bool inject = false;  // the injected fault strikes this chunk's first completion
};

// A submitted transfer not yet cut into chunks.
struct Pending {
  uint64_t ticket;
  bool is_write;
  char* buffer;
  uint64_t file_offset;
  uint64_t size_bytes;
};

struct Ticket {
  uint64_t chunks_left = 0;
  int error = 0;  // the first errno among its chunks
  bool is_write = false;
  uint64_t size_bytes = 0;
  bool ended = false;         // that error: a read found the end of the file
  uint64_t error_offset = 0;  // where in the file the failing chunk was
};

constexpr int kRetried = 1;  // inject(): the chunk was submitted again; not a completion

// The errnos STRATA_DISK_FAULT can name.
const std::map<std::string, int>& fault_errnos() {
  static const std::map<std::string, int> table = {{"ENOSPC", ENOSPC}, {"EIO", EIO}};
  return table;
}

std::atomic<uint64_t> g_file_sequence{0};

}  // namespace

DiskFault DiskFault::parse(const std::string& spec) {
  const auto bad = [&spec](const std::string& why) {
    throw_input(detail::concat("STRATA_DISK_FAULT=", spec, ": ", why,
                               " (want <read|write>:<chunks before it>:<ENOSPC|EIO|short|eof|"
                               "truncate>)"));
  };
  const size_t a = spec.find(':');
  const size_t b = a == std::string::npos ? a : spec.find(':', a + 1);
  if (b == std::string::npos) bad("not three fields");
  DiskFault fault;
  const std::string direction = spec.substr(0, a), count = spec.substr(a + 1, b - a - 1),
                    kind = spec.substr(b + 1);
  if (direction != "read" && direction != "write") bad("the direction is read or write");
  fault.is_write = direction == "write";
  if (count.empty() || count.size() > 18 ||
      count.find_first_not_of("0123456789") != std::string::npos) {
    bad("the chunk count is a whole number");
  }
  fault.after_chunks = std::stoull(count);
  if (const auto it = fault_errnos().find(kind); it != fault_errnos().end()) {
    fault.kind = Kind::kErrno;
    fault.error = it->second;
  } else if (kind == "short") {
    fault.kind = Kind::kShort;
  } else if (kind == "eof" || kind == "truncate") {
    if (fault.is_write) bad(kind + " is a read's fault");
    fault.kind = kind == "eof" ? Kind::kEof : Kind::kTruncate;
  } else {
    bad("unknown fault '" + kind + "'");
  }
  return fault;
}

DiskFault DiskFault::from_env() {
  const char* spec = std::getenv("STRATA_DISK_FAULT");
  return spec && *spec ? parse(spec) : DiskFault{};
}

struct DiskStore::State {
  State(const std::string& dir, uint64_t capacity_bytes, const DiskFault& fault);
  std::string make_path();

  // All of these with `mutex` held. Errors come back as errno values: the completion thread
  // cannot throw.
  int fill_queue();
  int prepare(unsigned slot);
  void complete(unsigned slot, int result);
  int inject(unsigned slot, int result);
  // Throws once the file is shorter than the store: something cut it under the engine, and a
  // write past the cut would grow it again with zeros where the data was.
  void check_not_cut();
  void completion_loop();
  unsigned chunks_in_flight() const { return kQueueDepth - free_slots.size(); }
  void throw_io_error(const Ticket& ticket, int error) const;
  uint64_t submit(bool is_write, const Extent& extent, uint64_t offset_in_extent,
                  const void* buffer, uint64_t size_bytes);

  const std::string dir;
  const uint64_t capacity_bytes;
  const std::string path;  // the file's name while it was created; unlinked since
  std::unique_ptr<OwnedFile> file;
  std::unique_ptr<Ring> ring;
  const DiskFault fault;
  uint64_t fault_chunks = 0;       // chunks the fault could have struck so far
  uint64_t cut_to = ~uint64_t{0};  // the file's size once it was seen cut

  std::mutex mutex;
  std::condition_variable completed;
  uint64_t allocated_bytes = 0;
  uint64_t next_ticket = 1;
  std::map<uint64_t, Ticket> tickets;
  std::deque<Pending> pending;
  std::array<Chunk, kQueueDepth> slots;
  std::vector<unsigned> free_slots;
  int ring_error = 0;  // the completion thread has stopped on this error
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
  bool busy = false;  // chunks in flight since busy_since
  Clock::time_point busy_since{};
  Clock::duration busy_total{};
  std::thread completion_thread;
};

DiskStore::State::State(const std::string& dir_in, uint64_t capacity_in, const DiskFault& fault_in)
    : dir(dir_in),
      capacity_bytes(round_up(capacity_in, kAlignment)),
      path(make_path()),
      fault(fault_in) {
  check_offload_dir(dir);
  // Checked first so a too-large policy fails at once instead of filling the disk to the brim.
  STRATA_INPUT_CHECK(capacity_bytes <= free_bytes(dir), room_message(dir, capacity_bytes));
  const int fd = create_direct_file(dir, path);
  file = std::make_unique<OwnedFile>(fd);
  STRATA_CHECK(::fchmod(fd, 0600) == 0, "fchmod ", path, ": ", describe_errno(errno));
  if (capacity_bytes > 0) {
    // Reserve now so the run cannot fail later for lack of space.
    const int ret = ::posix_fallocate(fd, 0, static_cast<off_t>(capacity_bytes));
    if (ret == EOPNOTSUPP || ret == EINVAL) {
      STRATA_CHECK(::ftruncate(fd, static_cast<off_t>(capacity_bytes)) == 0, "ftruncate ", path,
                   ": ", describe_errno(errno));
    } else {
      STRATA_INPUT_CHECK(ret != ENOSPC && ret != EDQUOT, room_message(dir, capacity_bytes));
      STRATA_INPUT_CHECK(ret != EFBIG, room_message(dir, capacity_bytes),
                         " (more than its filesystem allows in one file)");
      STRATA_CHECK(ret == 0, "fallocate ", path, ": ", describe_errno(ret));
    }
  }
  ring = std::make_unique<Ring>(kQueueDepth);
  for (unsigned i = kQueueDepth; i-- > 0;) free_slots.push_back(i);
  completion_thread = std::thread([this] { completion_loop(); });
}

std::string DiskStore::State::make_path() {
  // The random part keeps processes with equal pids (containers sharing a dir) apart.
  static const uint32_t process_salt = std::random_device{}();
  char salt[9];
  std::snprintf(salt, sizeof(salt), "%08x", process_salt);
  return detail::concat(dir, "/strata-offload-", ::getpid(), "-", salt, "-",
                        g_file_sequence.fetch_add(1), ".bin");
}

int DiskStore::State::prepare(unsigned slot) {
  io_uring_sqe* sqe = io_uring_get_sqe(ring->get());
  if (sqe == nullptr) return EBUSY;  // cannot happen: at most kQueueDepth chunks in flight
  Chunk& chunk = slots[slot];
  char* buffer = chunk.buffer + chunk.done_bytes;
  const auto size = static_cast<unsigned>(chunk.size_bytes - chunk.done_bytes);
  const uint64_t offset = chunk.file_offset + chunk.done_bytes;
  if (chunk.is_write) {
    io_uring_prep_write(sqe, file->fd(), buffer, size, offset);
  } else {
    io_uring_prep_read(sqe, file->fd(), buffer, size, offset);
  }
  io_uring_sqe_set_data64(sqe, slot);
  return 0;
}

int DiskStore::State::fill_queue() {
  while (!free_slots.empty() && !pending.empty()) {
    Pending& next = pending.front();
    const unsigned slot = free_slots.back();
    free_slots.pop_back();
    const uint64_t size = std::min(next.size_bytes, kChunkBytes);
    // A short transfer needs a chunk of more than one block to be short of.
    const bool can_strike = fault.kind != DiskFault::Kind::kNone &&
                            fault.is_write == next.is_write &&
                            (fault.kind != DiskFault::Kind::kShort || size > kAlignment);
    const bool inject = can_strike && fault_chunks++ == fault.after_chunks;
    slots[slot] = Chunk{next.ticket, next.is_write, next.buffer, next.file_offset, size, 0, inject};
    next.buffer += size;
    next.file_offset += size;
    next.size_bytes -= size;
    if (next.size_bytes == 0) pending.pop_front();
    if (const int error = prepare(slot)) return error;
  }
  if (!busy && chunks_in_flight() > 0) {
    busy = true;
    busy_since = Clock::now();
  }
  while (io_uring_sq_ready(ring->get()) > 0) {
    const int ret = io_uring_submit(ring->get());
    if (ret == -EINTR || ret == -EAGAIN) continue;
    if (ret < 0) return -ret;
  }
  return 0;
}

// The injected fault in place of the kernel's `result` for the chunk in `slot`.
int DiskStore::State::inject(unsigned slot, int result) {
  Chunk& chunk = slots[slot];
  chunk.inject = false;
  if (result <= 0) return result;  // a real error comes first
  switch (fault.kind) {
    case DiskFault::Kind::kErrno:
      return -fault.error;
    case DiskFault::Kind::kShort:
      // Block-aligned, as O_DIRECT's short transfers are, so the rest can be asked for.
      return static_cast<int>(std::min<uint64_t>(static_cast<uint64_t>(result),
                                                 chunk.size_bytes / 2 / kAlignment * kAlignment));
    case DiskFault::Kind::kEof:
      return 0;
    case DiskFault::Kind::kTruncate:
      if (::ftruncate(file->fd(), 0) != 0) return -errno;
      return prepare(slot) == 0 ? kRetried : -EBUSY;  // the retry meets the real end
    case DiskFault::Kind::kNone:
      break;
  }
  return result;
}

void DiskStore::State::complete(unsigned slot, int result) {
  Chunk& chunk = slots[slot];
  Ticket& ticket = tickets.at(chunk.ticket);
  if (chunk.inject) {
    result = inject(slot, result);
    if (result == kRetried) return;
  }
  if (result == -EAGAIN || result == -EINTR) {
    if (prepare(slot) == 0) return;
    result = -EBUSY;
  }
  if (result > 0) {
    chunk.done_bytes += static_cast<uint64_t>(result);
    // A short transfer: ask again for the rest.
    if (chunk.done_bytes < chunk.size_bytes) {
      if (prepare(slot) == 0) return;
      result = -EBUSY;
    } else {
      (chunk.is_write ? bytes_written : bytes_read) += chunk.size_bytes;
    }
  }
  if (result <= 0 && ticket.error == 0) {
    // A read of 0 bytes inside the store: the file ends before it should.
    ticket.error = result == 0 ? EIO : -result;
    ticket.ended = result == 0;
    ticket.error_offset = chunk.file_offset + chunk.done_bytes;
  }
  --ticket.chunks_left;
  free_slots.push_back(slot);
}

void DiskStore::State::completion_loop() {
  for (;;) {
    io_uring_cqe* cqe = nullptr;
    const int ret = io_uring_wait_cqe(ring->get(), &cqe);
    if (ret == -EINTR) continue;
    std::unique_lock<std::mutex> lock(mutex);
    if (ret < 0) {
      ring_error = -ret;
      completed.notify_all();
      return;
    }
    bool stop = false;
    unsigned head = 0;
    unsigned seen = 0;
    io_uring_for_each_cqe(ring->get(), head, cqe) {
      ++seen;
      const uint64_t tag = io_uring_cqe_get_data64(cqe);
      if (tag == kStopTag) {
        stop = true;
      } else {
        complete(static_cast<unsigned>(tag), cqe->res);
      }
    }
    io_uring_cq_advance(ring->get(), seen);
    if (const int error = fill_queue()) ring_error = error;
    if (busy && chunks_in_flight() == 0) {
      busy = false;
      busy_total += Clock::now() - busy_since;
    }
    lock.unlock();
    completed.notify_all();
    if (stop || ring_error != 0) return;
  }
}

// Input errors: the disk under the offload dir failed, not the engine; one line naming the file.
void DiskStore::State::throw_io_error(const Ticket& ticket, int error) const {
  const std::string what =
      detail::concat(ticket.is_write ? "writing " : "reading ", ticket.size_bytes, " bytes of ",
                     path, " (offload dir ", dir, ") at byte ", ticket.error_offset, ": ");
  STRATA_INPUT_CHECK(!ticket.ended, "disk tier: ", what,
                     "the file ends there (was it truncated under the engine?)");
  STRATA_INPUT_CHECK(error != ENOSPC && error != EDQUOT, "disk tier: ", what, describe_errno(error),
                     " (the offload dir's disk is full)");
  throw_input(detail::concat("disk tier: ", what, describe_errno(error)));
}

void DiskStore::State::check_not_cut() {
  struct stat info {};
  if (cut_to == ~uint64_t{0} && ::fstat(file->fd(), &info) == 0 &&
      static_cast<uint64_t>(info.st_size) < capacity_bytes) {
    cut_to = static_cast<uint64_t>(info.st_size);
  }
  STRATA_INPUT_CHECK(cut_to == ~uint64_t{0}, "disk tier: ", path, " (offload dir ", dir, ") is ",
                     cut_to, " bytes but the store reserved ", capacity_bytes,
                     ": it was truncated under the engine");
}

DiskStore::DiskStore(const std::string& dir, uint64_t capacity_bytes, const DiskFault& fault)
    : state_(std::make_unique<State>(dir, capacity_bytes, fault)) {}

DiskStore::~DiskStore() {
  State& s = *state_;
  std::unique_lock<std::mutex> lock(s.mutex);
  // Buffers of tickets nobody waited for may still be written by the kernel: let them finish.
  s.completed.wait(
      lock, [&] { return s.ring_error != 0 || (s.pending.empty() && s.chunks_in_flight() == 0); });
  if (s.ring_error == 0) {
    io_uring_sqe* sqe = io_uring_get_sqe(s.ring->get());
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data64(sqe, kStopTag);
    io_uring_submit(s.ring->get());
  }
  lock.unlock();
  s.completion_thread.join();
}

const std::string& DiskStore::dir() const {
  return state_->dir;
}
const std::string& DiskStore::path() const {
  return state_->path;
}
uint64_t DiskStore::capacity_bytes() const {
  return state_->capacity_bytes;
}

uint64_t DiskStore::allocated_bytes() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->allocated_bytes;
}

DiskStore::Extent DiskStore::allocate(uint64_t size_bytes) {
  State& s = *state_;
  const uint64_t rounded = round_up(size_bytes, kAlignment);
  std::lock_guard<std::mutex> lock(s.mutex);
  const uint64_t available = s.capacity_bytes - s.allocated_bytes;
  STRATA_INPUT_CHECK(rounded <= available, "disk tier (offload dir ", s.dir, "): needs ", rounded,
                     " more bytes but only ", available, " of ", s.capacity_bytes, " are left");
  const Extent extent{s.allocated_bytes, rounded};
  s.allocated_bytes += rounded;
  return extent;
}

uint64_t DiskStore::State::submit(bool is_write, const Extent& extent, uint64_t offset_in_extent,
                                  const void* buffer, uint64_t size_bytes) {
  State& s = *this;
  const auto address = reinterpret_cast<uintptr_t>(buffer);
  STRATA_CHECK(aligned(address) && aligned(offset_in_extent) && aligned(size_bytes),
               "disk tier I/O must be ", DiskStore::kAlignment, "-aligned: buffer ", buffer,
               ", offset ", offset_in_extent, ", size ", size_bytes);
  STRATA_CHECK(offset_in_extent <= extent.size_bytes &&
                   size_bytes <= extent.size_bytes - offset_in_extent &&
                   extent.offset_bytes + extent.size_bytes <= s.capacity_bytes,
               "disk tier I/O outside its extent: offset ", offset_in_extent, " size ", size_bytes,
               " in extent [", extent.offset_bytes, ", +", extent.size_bytes, ") of a ",
               s.capacity_bytes, "-byte store");
  std::lock_guard<std::mutex> lock(s.mutex);
  STRATA_CHECK(s.ring_error == 0, "offload dir ", s.dir,
               ": io_uring failed earlier: ", describe_errno(s.ring_error));
  s.check_not_cut();
  const uint64_t ticket = s.next_ticket++;
  const uint64_t chunks = (size_bytes + DiskStore::kChunkBytes - 1) / DiskStore::kChunkBytes;
  s.tickets[ticket] = Ticket{chunks, 0, is_write, size_bytes};
  if (chunks == 0) return ticket;
  // The kernel reads from a write's buffer; the cast only lets one queue hold both directions.
  s.pending.push_back(Pending{ticket, is_write, static_cast<char*>(const_cast<void*>(buffer)),
                              extent.offset_bytes + offset_in_extent, size_bytes});
  const int error = s.fill_queue();
  STRATA_CHECK(error == 0, "offload dir ", s.dir, ": io_uring submit: ", describe_errno(error));
  return ticket;
}

uint64_t DiskStore::submit_read(const Extent& extent, uint64_t offset_in_extent, void* dst,
                                uint64_t size_bytes) {
  return state_->submit(false, extent, offset_in_extent, dst, size_bytes);
}

uint64_t DiskStore::submit_write(const Extent& extent, uint64_t offset_in_extent, const void* src,
                                 uint64_t size_bytes) {
  return state_->submit(true, extent, offset_in_extent, src, size_bytes);
}

void DiskStore::wait(uint64_t ticket_id) {
  State& s = *state_;
  std::unique_lock<std::mutex> lock(s.mutex);
  auto it = s.tickets.find(ticket_id);
  STRATA_CHECK(it != s.tickets.end(), "disk tier: ticket ", ticket_id,
               " unknown or already waited for");
  s.completed.wait(lock, [&] { return it->second.chunks_left == 0 || s.ring_error != 0; });
  const Ticket ticket = it->second;
  s.tickets.erase(it);
  STRATA_CHECK(ticket.chunks_left == 0, "offload dir ", s.dir,
               ": io_uring failed: ", describe_errno(s.ring_error));
  if (ticket.error != 0) s.throw_io_error(ticket, ticket.error);
  // No transfer that ended after a cut passes for good data.
  s.check_not_cut();
}

void DiskStore::read(const Extent& extent, uint64_t offset_in_extent, void* dst,
                     uint64_t size_bytes) {
  wait(submit_read(extent, offset_in_extent, dst, size_bytes));
}

void DiskStore::write(const Extent& extent, uint64_t offset_in_extent, const void* src,
                      uint64_t size_bytes) {
  wait(submit_write(extent, offset_in_extent, src, size_bytes));
}

void DiskStore::drain() {
  State& s = *state_;
  std::unique_lock<std::mutex> lock(s.mutex);
  s.completed.wait(
      lock, [&] { return s.ring_error != 0 || (s.pending.empty() && s.chunks_in_flight() == 0); });
}

void DiskStore::truncate_for_test(uint64_t size_bytes) {
  STRATA_CHECK(::ftruncate(state_->file->fd(), static_cast<off_t>(size_bytes)) == 0, "ftruncate ",
               state_->path, ": ", describe_errno(errno));
}

void DiskStore::sync() {
  STRATA_CHECK(::fdatasync(state_->file->fd()) == 0, "offload dir ", state_->dir,
               ": fdatasync: ", describe_errno(errno));
}

uint64_t DiskStore::bytes_read() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->bytes_read;
}

uint64_t DiskStore::bytes_written() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->bytes_written;
}

double DiskStore::busy_seconds() const {
  State& s = *state_;
  std::lock_guard<std::mutex> lock(s.mutex);
  Clock::duration busy = s.busy_total;
  if (s.busy) busy += Clock::now() - s.busy_since;
  return std::chrono::duration<double>(busy).count();
}

}  // namespace strata
