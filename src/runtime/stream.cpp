#include "runtime/stream.h"

#include <chrono>
#include <nlohmann/json.hpp>
#include <vector>

namespace strata {

double trace_clock_s() {
  static const auto start = std::chrono::steady_clock::now();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void Event::signal() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    done_ = true;
  }
  cv_.notify_all();
}

void Event::wait() const {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [&] { return done_; });
}

bool Event::done() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return done_;
}

Stream::Stream(std::string name) : name_(std::move(name)), thread_([this] { run(); }) {}

Stream::~Stream() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

EventPtr Stream::enqueue(std::string name, std::function<void()> task, std::vector<EventPtr> deps) {
  auto done = std::make_shared<Event>();
  std::erase(deps, nullptr);  // "no dependency" is written as a null event
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back({std::move(name), std::move(task), std::move(deps), done});
    ++pending_;
  }
  cv_.notify_one();
  return done;
}

void Stream::synchronize() {
  std::unique_lock<std::mutex> lock(mutex_);
  idle_cv_.wait(lock, [&] { return pending_ == 0; });
  if (error_) {
    auto error = error_;
    error_ = nullptr;
    std::rethrow_exception(error);
  }
}

void Stream::run() {
  for (;;) {
    Item item;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      item = std::move(queue_.front());
      queue_.pop_front();
    }
    for (const auto& dep : item.deps) dep->wait();
    const double begin = trace_clock_s();
    bool failed;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      failed = error_ != nullptr;  // after an error the rest only signal, so waiters finish
    }
    if (!failed) {
      try {
        item.task();
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        error_ = std::current_exception();
      }
    }
    const double end = trace_clock_s();
    item.done->signal();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      busy_s_ += end - begin;
      if (!item.name.empty()) spans_.push_back({std::move(item.name), begin, end});
      --pending_;
    }
    idle_cv_.notify_all();
  }
}

double Stream::busy_s() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return busy_s_;
}

std::vector<TraceSpan> Stream::spans() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return spans_;
}

void Stream::clear_stats() {
  std::lock_guard<std::mutex> lock(mutex_);
  busy_s_ = 0;
  spans_.clear();
}

nlohmann::json chrome_trace(const std::vector<TraceTrack>& tracks) {
  nlohmann::json events = nlohmann::json::array();
  for (size_t tid = 0; tid < tracks.size(); ++tid) {
    events.push_back({{"name", "thread_name"},
                      {"ph", "M"},
                      {"pid", 0},
                      {"tid", tid},
                      {"args", {{"name", tracks[tid].name}}}});
    for (const auto& span : tracks[tid].spans) {
      events.push_back({{"name", span.name},
                        {"ph", "X"},
                        {"pid", 0},
                        {"tid", tid},
                        {"ts", span.begin_s * 1e6},
                        {"dur", (span.end_s - span.begin_s) * 1e6}});
    }
  }
  return {{"traceEvents", events}, {"displayTimeUnit", "ms"}};
}

}  // namespace strata
