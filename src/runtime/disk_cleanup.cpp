#include "runtime/disk_cleanup.h"

#include <limits.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "core/error.h"

namespace strata {
namespace {

constexpr int kMaxPaths = 64;
constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP};
constexpr int kNumSignals = sizeof(kSignals) / sizeof(kSignals[0]);

// The handler may only read plain memory: paths live in fixed arrays, and `live` says a path
// is complete (set after the copy, cleared before reuse).
struct Slot {
  std::atomic<bool> live{false};
  bool used = false;  // taken by a registration; guarded by g_mutex
  char path[PATH_MAX] = {};
};
static_assert(std::atomic<bool>::is_always_lock_free);

Slot g_slots[kMaxPaths];
std::mutex g_mutex;  // registrations, handler installation
int g_registrations = 0;
bool g_atexit_installed = false;
struct sigaction g_previous[kNumSignals];
bool g_installed[kNumSignals] = {};

void unlink_registered() {
  for (Slot& slot : g_slots) {
    if (slot.live.load(std::memory_order_acquire)) ::unlink(slot.path);
  }
}

void on_signal(int signal_number) {
  const int saved_errno = errno;
  unlink_registered();
  // Hand the signal to whoever had it before us (by default: terminate with this signal).
  for (int i = 0; i < kNumSignals; ++i) {
    if (kSignals[i] == signal_number) ::sigaction(signal_number, &g_previous[i], nullptr);
  }
  errno = saved_errno;
  ::raise(signal_number);  // blocked until this handler returns, then delivered
}

void install_handlers() {
  for (int i = 0; i < kNumSignals; ++i) {
    struct sigaction previous {};
    STRATA_CHECK(::sigaction(kSignals[i], nullptr, &previous) == 0,
                 "sigaction: ", std::strerror(errno));
    // A signal the process ignores does not end it, so there is nothing to clean up.
    if (!(previous.sa_flags & SA_SIGINFO) && previous.sa_handler == SIG_IGN) continue;
    g_previous[i] = previous;
    struct sigaction action {};
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    STRATA_CHECK(::sigaction(kSignals[i], &action, nullptr) == 0,
                 "sigaction: ", std::strerror(errno));
    g_installed[i] = true;
  }
}

void restore_handlers() {
  for (int i = 0; i < kNumSignals; ++i) {
    if (!g_installed[i]) continue;
    // Only put the old handler back if ours is still the one installed.
    struct sigaction current {};
    if (::sigaction(kSignals[i], nullptr, &current) == 0 && !(current.sa_flags & SA_SIGINFO) &&
        current.sa_handler == on_signal) {
      ::sigaction(kSignals[i], &g_previous[i], nullptr);
    }
    g_installed[i] = false;
  }
}

}  // namespace

CleanupRegistration::CleanupRegistration(const std::string& path) : slot_(-1) {
  STRATA_CHECK(path.size() < PATH_MAX, "offload file path too long: ", path);
  std::lock_guard<std::mutex> lock(g_mutex);
  for (int i = 0; i < kMaxPaths; ++i) {
    if (!g_slots[i].used) {
      slot_ = i;
      break;
    }
  }
  STRATA_CHECK(slot_ >= 0, "more than ", kMaxPaths, " disk stores alive at once");
  if (g_registrations == 0) install_handlers();
  ++g_registrations;
  Slot& slot = g_slots[slot_];
  slot.used = true;
  std::memcpy(slot.path, path.c_str(), path.size() + 1);
  slot.live.store(true, std::memory_order_release);
  if (!g_atexit_installed) {
    // exit() skips the destructors of objects still alive; their files go here.
    g_atexit_installed = std::atexit(unlink_registered) == 0;
  }
}

CleanupRegistration::~CleanupRegistration() {
  std::lock_guard<std::mutex> lock(g_mutex);
  Slot& slot = g_slots[slot_];
  slot.live.store(false, std::memory_order_release);
  slot.used = false;
  if (--g_registrations == 0) restore_handlers();
}

}  // namespace strata
