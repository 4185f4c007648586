// The thread that runs one stream's host work (launch_host) in stream order. Each stream has its
// own, so host work on one stream (CPU attention) never queues behind another's (a disk read) in
// the driver's callback thread, which may serialise host functions across streams; the callback
// only hands the job over. Each finished job bumps a counter the stream waits on.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace strata::cuda {

class HostLane {
 public:
  // done: where finished jobs are counted, from 0 (pinned memory on a GPU, which a kernel
  // polls); it must outlive the lane.
  explicit HostLane(uint32_t* done);
  ~HostLane();  // runs what is queued, then joins
  HostLane(const HostLane&) = delete;
  HostLane& operator=(const HostLane&) = delete;

  // The count *done reaches once the job issued next has run (the issuing thread's side).
  uint32_t next_ticket() { return ++issued_; }
  // Queues a job; cheap, so a driver callback may call it.
  void post(std::function<void()> job);
  uint32_t done() const;

 private:
  void run();

  uint32_t* done_;
  uint32_t issued_ = 0;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::thread thread_;
};

// Whether a counter at `done` has reached `ticket`, wrap-around safe.
inline bool reached(uint32_t done, uint32_t ticket) {
  return static_cast<int32_t>(done - ticket) >= 0;
}

}  // namespace strata::cuda
