#include "runtime/job_output.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace strata {
namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  STRATA_INPUT_CHECK(in.good(), path, ": cannot open: ", std::strerror(errno));
  std::ostringstream s;
  s << in.rdbuf();
  STRATA_INPUT_CHECK(!in.bad(), path, ": read failed");
  return s.str();
}

// The first field where `had` and `want` differ, as "FIELD (KIND: X, this run: Y)".
std::string first_difference(const nlohmann::json& had, const nlohmann::json& want) {
  for (const auto& [key, value] : want.items()) {
    if (!had.contains(key) || had[key] != value) {
      return key + " (recorded: " + (had.contains(key) ? had[key].dump() : "none") +
             ", this run: " + value.dump() + ")";
    }
  }
  for (const auto& [key, value] : had.items()) {
    if (!want.contains(key)) return key + " (recorded: " + value.dump() + ", this run: none)";
  }
  return "";
}

void check_sys(bool ok, const std::string& path, const char* what) {
  STRATA_INPUT_CHECK(ok, path, ": ", what, " failed: ", std::strerror(errno));
}

void write_job_file(const std::string& output, const nlohmann::json& job) {
  const std::string path = job_file_path(output), tmp = path + ".tmp";
  const std::string text = job.dump(2) + "\n";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  check_sys(fd >= 0, tmp, "create");
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                  ::fsync(fd) == 0;
  ::close(fd);
  check_sys(ok, tmp, "write");
  check_sys(::rename(tmp.c_str(), path.c_str()) == 0, path, "rename");
}

void sync_parent(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

std::string content_hash(std::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(h));
  return text;
}

std::string job_file_path(const std::string& output) {
  return output + ".job.json";
}

ExistingOutput read_existing_output(const std::string& output, const nlohmann::json& job,
                                    const std::string& id_key, bool restart) {
  ExistingOutput existing;
  std::error_code ec;
  if (restart || !std::filesystem::exists(output, ec)) return existing;
  const std::string bytes = read_all(output);
  const size_t end = bytes.rfind('\n');
  existing.complete_bytes = end == std::string::npos ? 0 : end + 1;
  existing.torn = existing.complete_bytes < bytes.size();
  if (existing.complete_bytes == 0) return existing;  // nothing finished to keep
  const std::string resume = "; rerun with --restart to start over, or choose another --output";
  const std::string job_path = job_file_path(output);
  STRATA_INPUT_CHECK(std::filesystem::exists(job_path, ec), output, ": exists and has no ",
                     job_path, " (it was not written by strata generate)", resume);
  nlohmann::json had;
  try {
    had = nlohmann::json::parse(read_all(job_path));
  } catch (const nlohmann::json::exception&) {  // parse_error or out_of_range (1e999)
    throw_input(job_path + ": not JSON" + resume);
  }
  const std::string diff = first_difference(had, job);
  STRATA_INPUT_CHECK(diff.empty(), output, ": holds the results of a different job: ", diff,
                     resume);
  size_t begin = 0;
  for (int64_t number = 1; begin < existing.complete_bytes; ++number) {
    const size_t stop = bytes.find('\n', begin);
    const std::string_view line(bytes.data() + begin, stop - begin);
    begin = stop + 1;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    STRATA_INPUT_CHECK(!j.is_discarded() && j.is_object() && j.contains(id_key), output, ":",
                       number, ": not a result line with '", id_key, "'", resume);
    existing.ids.push_back(std::move(j[id_key]));
  }
  return existing;
}

DurableOutput::DurableOutput(const std::string& path, const nlohmann::json& job,
                             uint64_t keep_bytes, double sync_interval_s)
    : path_(path), interval_s_(sync_interval_s), last_sync_(std::chrono::steady_clock::now()) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  check_sys(fd_ >= 0, path, "open");
  struct stat st {};
  check_sys(::fstat(fd_, &st) == 0, path, "stat");
  // Only what is not kept goes: a torn last line, or everything when starting over; before the
  // job file changes, so the output never holds lines of a job other than the recorded one.
  if (static_cast<uint64_t>(st.st_size) != keep_bytes) {
    check_sys(::ftruncate(fd_, static_cast<off_t>(keep_bytes)) == 0 && ::fsync(fd_) == 0, path,
              "truncate");
  }
  write_job_file(path, job);
  sync_parent(path);
}

DurableOutput::~DurableOutput() {
  if (fd_ < 0) return;
  if (dirty_) ::fsync(fd_);
  ::close(fd_);
}

void DurableOutput::append(std::string line) {
  line += '\n';
  size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    check_sys(n > 0, path_, "write (disk full?)");
    done += static_cast<size_t>(n);
  }
  ++lines_;
  dirty_ = true;
  sync();
}

void DurableOutput::sync(bool force) {
  if (!dirty_) return;
  const auto now = std::chrono::steady_clock::now();
  if (!force && std::chrono::duration<double>(now - last_sync_).count() < interval_s_) return;
  check_sys(::fdatasync(fd_) == 0, path_, "fsync");
  dirty_ = false;
  last_sync_ = std::chrono::steady_clock::now();
  sync_s_ += std::chrono::duration<double>(last_sync_ - now).count();
  ++syncs_;
}

}  // namespace strata

namespace strata {
namespace {

constexpr int kNoticeSignals[] = {SIGINT, SIGTERM, SIGHUP};
constexpr int kNumNoticeSignals = 3;
// The handler reads only these: fixed buffers written before it is installed, and atomics.
char g_notice_head[4096];  // "strata generate: interrupted; "
char g_notice_tail[8192];  // " results are safe in OUT; resume with: COMMAND\n"
std::atomic<int64_t> g_notice_results{0};
std::atomic<int> g_notice_fd{-1};
struct sigaction g_notice_previous[kNumNoticeSignals];
bool g_notice_installed[kNumNoticeSignals] = {};
static_assert(std::atomic<int64_t>::is_always_lock_free && std::atomic<int>::is_always_lock_free);

void write_all(const char* text) {
  size_t n = std::strlen(text);
  while (n > 0) {
    const ssize_t w = ::write(STDERR_FILENO, text, n);
    if (w <= 0) return;
    text += w;
    n -= static_cast<size_t>(w);
  }
}

void on_notice_signal(int signal_number) {
  const int saved_errno = errno;
  const int fd = g_notice_fd.load();
  if (fd >= 0) ::fsync(fd);
  char number[24];
  int64_t v = g_notice_results.load();
  int at = sizeof(number) - 1;
  number[at] = '\0';
  do {
    number[--at] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v > 0 && at > 0);
  write_all(g_notice_head);
  write_all(number + at);
  write_all(g_notice_tail);
  for (int i = 0; i < kNumNoticeSignals; ++i) {
    if (kNoticeSignals[i] == signal_number)
      ::sigaction(signal_number, &g_notice_previous[i], nullptr);
  }
  errno = saved_errno;
  ::raise(signal_number);
}

}  // namespace

InterruptNotice::InterruptNotice(const std::string& output, const std::string& resume_command) {
  // On a terminal, after the progress line redrawn in place.
  std::snprintf(g_notice_head, sizeof(g_notice_head), "%sstrata generate: interrupted; ",
                isatty(STDERR_FILENO) ? "\n" : "");
  std::snprintf(g_notice_tail, sizeof(g_notice_tail),
                " results are safe in %s; resume with the same command: %s\n", output.c_str(),
                resume_command.c_str());
  for (int i = 0; i < kNumNoticeSignals; ++i) {
    struct sigaction previous {};
    if (::sigaction(kNoticeSignals[i], nullptr, &previous) != 0) continue;
    if (!(previous.sa_flags & SA_SIGINFO) && previous.sa_handler == SIG_IGN) continue;
    g_notice_previous[i] = previous;
    struct sigaction action {};
    action.sa_handler = on_notice_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    g_notice_installed[i] = ::sigaction(kNoticeSignals[i], &action, nullptr) == 0;
  }
}

InterruptNotice::~InterruptNotice() {
  g_notice_fd.store(-1);
  for (int i = 0; i < kNumNoticeSignals; ++i) {
    if (g_notice_installed[i]) ::sigaction(kNoticeSignals[i], &g_notice_previous[i], nullptr);
    g_notice_installed[i] = false;
  }
}

void InterruptNotice::set(int64_t results, int fd) {
  g_notice_results.store(results);
  g_notice_fd.store(fd);
}

}  // namespace strata
