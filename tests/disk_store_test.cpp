// The disk tier: data round trips through io_uring + O_DIRECT, the file's life (mode, removal on
// exit and signals, kill -9 included), and the input errors a user can meet.
#include "runtime/disk_store.h"
#include "runtime/probes/disk_probe.h"

#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <thread>
#include <vector>

#include "core/buffer.h"
#include "core/error.h"
#include "test_util.h"

namespace strata {
namespace {

namespace fs = std::filesystem;

bool supports_direct_io(const fs::path& dir) {
  const std::string probe = (dir / ("strata-direct-probe-" + std::to_string(getpid()))).string();
  const int fd = ::open(probe.c_str(), O_RDWR | O_CREAT | O_EXCL | O_DIRECT, 0600);
  ::unlink(probe.c_str());
  if (fd < 0) return false;
  ::close(fd);
  return true;
}

// A fresh directory on a filesystem that takes O_DIRECT (/tmp may be tmpfs), removed afterwards.
class DirectDir {
 public:
  DirectDir() {
    for (const fs::path& base :
         {fs::temp_directory_path(), fs::path("/var/tmp"), fs::current_path()}) {
      if (!fs::is_directory(base) || !supports_direct_io(base)) continue;
      path_ = base / ("strata-disk-test-" + std::to_string(getpid()) + "-" +
                      std::to_string(std::random_device{}()));
      fs::create_directories(path_);
      return;
    }
    ADD_FAILURE() << "no directory with O_DIRECT support found";
  }
  ~DirectDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string str() const { return path_.string(); }
  bool empty() const { return fs::is_empty(path_); }

 private:
  fs::path path_;
};

// Runs `body` and returns the Error it throws (or a sentinel with status 0 when it throws none).
Error error_from(const std::function<void()>& body) {
  try {
    body();
  } catch (const Error& error) {
    return error;
  }
  return Error("no error", 0);
}

void expect_input_error(const Error& error, const std::vector<std::string>& parts) {
  EXPECT_EQ(error.exit_status(), kExitBadInput) << error.what();
  const std::string message = error.what();
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  for (const std::string& part : parts) {
    EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' not in: " << message;
  }
}

HostBuffer random_buffer(uint64_t size_bytes, uint32_t seed) {
  HostBuffer buffer(size_bytes);
  std::mt19937 rng(seed);
  for (uint32_t& word : buffer.span<uint32_t>()) word = rng();
  return buffer;
}

bool same_bytes(const HostBuffer& a, const HostBuffer& b) {
  return a.size_bytes() == b.size_bytes() && std::memcmp(a.data(), b.data(), a.size_bytes()) == 0;
}

TEST(DiskStore, RoundTripsSeveralExtentsFromTwoThreads) {
  DirectDir dir;
  // Odd multiples of 4 KiB, around and across the 1 MiB chunk size.
  const std::vector<uint64_t> sizes = {
      3 * 4096, 257 * 4096, 1000 * 4096, 4096, 769 * 4096, 255 * 4096, 2 * 1024 * 1024 + 4096,
      13 * 4096};
  uint64_t total = 0;
  for (uint64_t size : sizes) total += size;
  DiskStore store(dir.str(), total);

  std::vector<DiskStore::Extent> extents;
  std::vector<HostBuffer> sources, results;
  for (size_t i = 0; i < sizes.size(); ++i) {
    extents.push_back(store.allocate(sizes[i]));
    EXPECT_EQ(extents.back().offset_bytes % DiskStore::kAlignment, 0u);
    sources.push_back(random_buffer(sizes[i], 17 + static_cast<uint32_t>(i)));
    results.emplace_back(sizes[i]);
  }
  EXPECT_EQ(store.allocated_bytes(), total);

  // Thread t owns every other extent; it submits all its writes, waits in reverse, then reads.
  auto worker = [&](size_t first) {
    std::vector<uint64_t> tickets;
    for (size_t i = first; i < sizes.size(); i += 2) {
      tickets.push_back(store.submit_write(extents[i], 0, sources[i].data(), sizes[i]));
    }
    for (auto it = tickets.rbegin(); it != tickets.rend(); ++it) store.wait(*it);
    tickets.clear();
    for (size_t i = first; i < sizes.size(); i += 2) {
      // Two requests per extent, the second from an offset inside it.
      const uint64_t half = sizes[i] / 2 / 4096 * 4096;
      tickets.push_back(store.submit_read(extents[i], 0, results[i].data(), half));
      tickets.push_back(
          store.submit_read(extents[i], half, results[i].as<char>() + half, sizes[i] - half));
    }
    for (uint64_t ticket : tickets) store.wait(ticket);
  };
  std::thread other(worker, 1);
  worker(0);
  other.join();

  for (size_t i = 0; i < sizes.size(); ++i) {
    EXPECT_TRUE(same_bytes(sources[i], results[i])) << "extent " << i << " of " << sizes[i];
  }
  EXPECT_EQ(store.bytes_written(), total);
  EXPECT_EQ(store.bytes_read(), total);
  EXPECT_GT(store.busy_seconds(), 0.0);

  // Negative control: overwriting one page of extent 2 changes exactly that page on disk.
  HostBuffer page = random_buffer(4096, 99);
  store.write(extents[2], 5 * 4096, page.data(), 4096);
  HostBuffer reread(sizes[2]);
  store.read(extents[2], 0, reread.data(), sizes[2]);
  EXPECT_FALSE(same_bytes(sources[2], reread));
  std::memcpy(sources[2].as<char>() + 5 * 4096, page.data(), 4096);
  EXPECT_TRUE(same_bytes(sources[2], reread));
}

// The descriptor of this process that holds `path`, unlinked, as /proc/self/fd/N; "" if none.
std::string unlinked_descriptor(const std::string& path) {
  for (const auto& entry : fs::directory_iterator("/proc/self/fd")) {
    std::error_code error;
    const fs::path target = fs::read_symlink(entry.path(), error);
    if (!error && target.string() == path + " (deleted)") return entry.path().string();
  }
  return "";
}

TEST(DiskStore, FileIsUnlinkedAtOnceAndHeldPrivatelyByItsDescriptor) {
  DirectDir dir;
  {
    DiskStore store(dir.str(), 10000);  // rounded up to whole pages
    EXPECT_EQ(fs::path(store.path()).parent_path(), fs::path(dir.str()));
    EXPECT_TRUE(dir.empty()) << "the store's file is still named in the offload dir";
    const std::string held = unlinked_descriptor(store.path());
    ASSERT_FALSE(held.empty()) << "no descriptor holds " << store.path();
    struct stat info {};
    ASSERT_EQ(::stat(held.c_str(), &info), 0) << held;
    EXPECT_EQ(info.st_mode & 0777, 0600u);
    EXPECT_EQ(info.st_nlink, 0u);
    EXPECT_EQ(store.capacity_bytes(), 12288u);
    EXPECT_EQ(static_cast<uint64_t>(info.st_size), store.capacity_bytes());
    EXPECT_EQ(store.allocate(1).size_bytes, 4096u);
    // It still reads and writes.
    HostBuffer page = random_buffer(4096, 7), back(4096);
    const DiskStore::Extent extent = store.allocate(4096);
    store.write(extent, 0, page.data(), 4096);
    store.read(extent, 0, back.data(), 4096);
    EXPECT_TRUE(same_bytes(page, back));
  }
  EXPECT_TRUE(dir.empty());
}

TEST(DiskStore, MisalignedRequestIsAnInternalError) {
  DirectDir dir;
  DiskStore store(dir.str(), 1 << 20);
  const DiskStore::Extent extent = store.allocate(1 << 20);
  HostBuffer buffer(8192);
  Error error = error_from([&] { store.read(extent, 0, buffer.as<char>() + 512, 4096); });
  EXPECT_EQ(error.exit_status(), kExitInternal);
  error = error_from([&] { store.read(extent, 100, buffer.data(), 4096); });
  EXPECT_EQ(error.exit_status(), kExitInternal);
  error = error_from([&] { store.read(extent, (1 << 20) - 4096, buffer.data(), 8192); });
  EXPECT_EQ(error.exit_status(), kExitInternal) << "past the extent's end";
}

TEST(DiskStore, BadDirectoriesAreInputErrors) {
  DirectDir dir;
  const std::string missing = dir.str() + "/no-such-dir";
  expect_input_error(error_from([&] { DiskStore store(missing, 4096); }),
                     {"--offload-dir", missing, "does not exist"});
  const std::string file = dir.str() + "/a-file";
  test::write_text(file, "x");
  expect_input_error(error_from([&] { DiskStore store(file, 4096); }),
                     {"--offload-dir", file, "is not a directory"});
}

TEST(DiskStore, UnwritableDirectoryIsAnInputError) {
  DirectDir dir;
  const std::string locked = dir.str() + "/locked";
  fs::create_directory(locked);
  ASSERT_EQ(::chmod(locked.c_str(), 0500), 0);
  if (::geteuid() != 0) {
    expect_input_error(error_from([&] { DiskStore store(locked, 4096); }),
                       {"--offload-dir", locked, "is not writable"});
    return;
  }
  // Root writes through permission bits: check as an unprivileged user in a child process.
  const passwd* nobody = ::getpwnam("nobody");
  if (nobody == nullptr) GTEST_SKIP() << "running as root and there is no user 'nobody'";
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (::setgid(nobody->pw_gid) != 0 || ::setuid(nobody->pw_uid) != 0) ::_exit(77);
    const Error error = error_from([&] { DiskStore store(locked, 4096); });
    const std::string message = error.what();
    const bool ok = error.exit_status() == kExitBadInput &&
                    message.find(locked) != std::string::npos &&
                    message.find("is not writable") != std::string::npos;
    ::_exit(ok ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 77) GTEST_SKIP() << "cannot drop root privileges here";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the child did not get the 'is not writable' error";
  EXPECT_TRUE(fs::is_empty(locked));
}

TEST(DiskStore, AllocationBeyondCapacityNamesTierAndBytes) {
  DirectDir dir;
  DiskStore store(dir.str(), 64 * 1024);
  store.allocate(32 * 1024);
  expect_input_error(error_from([&] { store.allocate(40 * 1024); }),
                     {"disk tier", dir.str(), "40960", "32768"});
  store.allocate(32 * 1024);  // the failed request took nothing
  EXPECT_EQ(store.allocated_bytes(), 64u * 1024);
}

TEST(DiskStore, CapacityBeyondFreeSpaceLeavesNoFile) {
  DirectDir dir;
  const uint64_t free_bytes = fs::space(dir.str()).available;
  for (const uint64_t capacity : {free_bytes + (1ull << 30), 1ull << 50}) {
    expect_input_error(error_from([&] { DiskStore store(dir.str(), capacity); }),
                       {"offload dir", dir.str(), "has room for", "but the policy needs",
                        std::to_string(capacity)});
    EXPECT_TRUE(dir.empty());
  }
}

// A child holds a store and gets `signal_number`: it dies by that signal and leaves no file,
// SIGKILL included (nothing in the process runs then: the file was unlinked when opened).
void expect_signal_leaves_no_file(int signal_number) {
  DirectDir dir;
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(pipe_fds[0]);
    // A shell's background jobs start with SIGINT ignored; a foreground run does not.
    ::signal(signal_number, SIG_DFL);
    try {
      DiskStore store(dir.str(), 1 << 20);
      const char ready = 1;
      if (::write(pipe_fds[1], &ready, 1) != 1) ::_exit(3);
      for (;;) ::pause();
    } catch (...) {
      ::_exit(4);
    }
  }
  ::close(pipe_fds[1]);
  char ready = 0;
  ASSERT_EQ(::read(pipe_fds[0], &ready, 1), 1) << "the child could not create its store";
  ::close(pipe_fds[0]);
  EXPECT_TRUE(dir.empty()) << "the child's store file is named in the dir while it runs";
  ASSERT_EQ(::kill(child, signal_number), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == signal_number) << "status " << status;
  EXPECT_TRUE(dir.empty()) << "the store file outlived the signal";
}

TEST(DiskStore, SigkillLeavesNoFile) {
  expect_signal_leaves_no_file(SIGKILL);
}
TEST(DiskStore, SigtermLeavesNoFile) {
  expect_signal_leaves_no_file(SIGTERM);
}
TEST(DiskStore, SigintLeavesNoFile) {
  expect_signal_leaves_no_file(SIGINT);
}

TEST(DiskStore, ExitWithLiveStoreRemovesFile) {
  DirectDir dir;
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    try {
      // Never destroyed: exit() runs no destructor for it.
      static DiskStore* leaked = new DiskStore(dir.str(), 1 << 20);
      std::exit(leaked->capacity_bytes() == (1 << 20) ? 0 : 5);
    } catch (...) {
      ::_exit(4);
    }
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  EXPECT_TRUE(dir.empty());
}

// Nothing to clean up, so no signal handler is installed: the process's own stay.
TEST(DiskStore, InstallsNoSignalHandlers) {
  DirectDir dir;
  struct sigaction before {
  }, during{};
  ::sigaction(SIGTERM, nullptr, &before);
  {
    DiskStore store(dir.str(), 4096);
    ::sigaction(SIGTERM, nullptr, &during);
  }
  EXPECT_EQ(during.sa_handler, before.sa_handler);
}

TEST(DiskStore, ProbeMeasuresAndCleansUp) {
  DirectDir dir;
  EXPECT_GT(measure_disk_write_gbps(dir.str(), 8 << 20), 0.0);
  EXPECT_GT(measure_disk_read_gbps(dir.str(), 8 << 20), 0.0);
  EXPECT_TRUE(dir.empty());
}

}  // namespace
}  // namespace strata
