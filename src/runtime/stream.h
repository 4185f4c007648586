// Streams and events on the CPU backend: a stream is a worker thread running its tasks in
// order; an event marks a point in a stream that tasks on other streams can wait for. The
// offloading schedule is written against these, so the CUDA backend can map them one to one.
#pragma once

#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <thread>
#include <vector>

namespace strata {

class Event {
 public:
  void signal();
  void wait() const;
  bool done() const;

 private:
  mutable std::mutex mutex_;
  mutable std::condition_variable cv_;
  bool done_ = false;
};
using EventPtr = std::shared_ptr<Event>;

// A span of work on a stream, for the trace and the busy-time counters.
struct TraceSpan {
  std::string name;
  double begin_s;
  double end_s;
};

class Stream {
 public:
  explicit Stream(std::string name);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  // Runs `task` after every earlier task of this stream and after each of `deps`; the returned
  // event fires when it has run. `name` labels the span in the trace (none when empty: an
  // ordering point).
  EventPtr enqueue(std::string name, std::function<void()> task, std::vector<EventPtr> deps = {});
  // Blocks until every task so far has run; rethrows the first error a task raised.
  void synchronize();

  const std::string& name() const { return name_; }
  double busy_s() const;
  std::vector<TraceSpan> spans() const;
  void clear_stats();

 private:
  struct Item {
    std::string name;
    std::function<void()> task;
    std::vector<EventPtr> deps;
    EventPtr done;
  };
  void run();

  std::string name_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  bool stopping_ = false;
  size_t pending_ = 0;
  std::condition_variable idle_cv_;
  std::exception_ptr error_;
  double busy_s_ = 0;
  std::vector<TraceSpan> spans_;
  std::thread thread_;
};

// Seconds since the process started, the clock of every trace span.
double trace_clock_s();

// One track of a trace: a stream (or a kind of work) and its spans.
struct TraceTrack {
  std::string name;
  std::vector<TraceSpan> spans;
};
// Chrome trace-event JSON (Perfetto): one thread per track, a complete event per span.
nlohmann::json chrome_trace(const std::vector<TraceTrack>& tracks);

}  // namespace strata
