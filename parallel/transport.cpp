#include "parallel/transport.h"

#include <cstdlib>
#include <exception>

#include "core/error.h"

namespace strata::parallel {
namespace {

constexpr double kDefaultTimeoutS = 1800;  // a slow offloaded stage can take minutes per step

double timeout_from_env() {
  const char* text = std::getenv("STRATA_TRANSPORT_TIMEOUT_S");
  if (!text || !*text) return kDefaultTimeoutS;
  char* end = nullptr;
  const double seconds = std::strtod(text, &end);
  STRATA_INPUT_CHECK(end && *end == '\0' && seconds >= 0,
                     "STRATA_TRANSPORT_TIMEOUT_S must be a number of seconds >= 0 (0: no limit), "
                     "got '",
                     text, "'");
  return seconds;
}

}  // namespace

void RequestState::complete() {
  std::lock_guard<std::mutex> lock(mutex_);
  complete_locked();
}

void RequestState::complete_locked() {
  done_ = true;
  done_cv_.notify_all();
}

void RequestState::fail(const std::string& message) {
  std::lock_guard<std::mutex> lock(mutex_);
  fail_locked(message);
}

void RequestState::fail_locked(const std::string& message) {
  if (done_) return;
  error_ = message;
  done_ = true;
  done_cv_.notify_all();
}

bool RequestState::done() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return done_;
}

bool RequestState::test() {
  std::lock_guard<std::mutex> lock(mutex_);
  STRATA_CHECK(!done_ || error_.empty(), what_, " failed: ", error_);
  return done_;
}

void RequestState::wait() {
  std::unique_lock<std::mutex> lock(mutex_);
  auto finished = [this] { return done_; };
  if (timeout_s_ > 0) {
    const auto limit = std::chrono::duration<double>(timeout_s_);
    const bool in_time = done_cv_.wait_for(lock, limit, finished);
    STRATA_CHECK(in_time, what_, " did not complete within ", timeout_s_,
                 " s: the peer died or stalled (limit: STRATA_TRANSPORT_TIMEOUT_S)");
  } else {
    done_cv_.wait(lock, finished);
  }
  STRATA_CHECK(error_.empty(), what_, " failed: ", error_);
}

void RequestState::abandon() {
  std::lock_guard<std::mutex> lock(mutex_);
  abandoned_ = true;
}

bool RequestState::abandoned() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return abandoned_;
}

Request& Request::operator=(Request&& other) noexcept {
  if (this != &other) {
    release();
    state_ = std::move(other.state_);
  }
  return *this;
}

Request::~Request() {
  release();
}

void Request::release() noexcept {
  if (!state_) return;
  if (std::uncaught_exceptions() > 0) {
    state_->abandon();
  } else {
    try {
      state_->wait();
    } catch (...) {  // the owner dropped the handle; its error has no one to go to
    }
  }
  state_.reset();
}

void Request::wait() {
  STRATA_CHECK(state_, "wait on an empty request");
  state_->wait();
}

bool Request::test() {
  STRATA_CHECK(state_, "test on an empty request");
  return state_->test();
}

Transport::Transport() : timeout_s_(timeout_from_env()) {}

std::string Transport::describe(const char* verb, int peer, int tag, size_t bytes) const {
  STRATA_CHECK(peer >= 0 && peer < size(), "rank ", rank(), ": ", verb, " peer ", peer,
               " outside 0..", size() - 1);
  STRATA_CHECK(tag >= 0 && tag <= kMaxTag, "rank ", rank(), ": tag ", tag, " outside 0..", kMaxTag);
  return detail::concat("rank ", rank(), ": ", verb, peer, " (", name(), ", tag ", tag, ", ", bytes,
                        " bytes)");
}

}  // namespace strata::parallel
