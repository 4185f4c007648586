// N ranks as threads of one process, for tests and for pipelines run without mpirun.
#include <cstring>
#include <deque>
#include <thread>

#include "core/error.h"
#include "parallel/transport.h"

namespace strata::parallel {
namespace {

// Everything the endpoints share; one lock for all of it (tests only, not a hot path).
struct Group {
  struct Message {
    int src;
    int tag;
    std::vector<char> bytes;
  };
  struct Posted {
    int src;
    int tag;
    void* data;
    size_t bytes;
    std::shared_ptr<RequestState> state;
  };

  explicit Group(int n) : unexpected(n), posted(n), closed(n, false) {}

  std::mutex mutex;
  std::vector<std::deque<Message>> unexpected;  // per destination, arrival order
  std::vector<std::deque<Posted>> posted;       // per destination, posting order
  std::vector<bool> closed;
  std::string failure;  // set once a rank failed: every wait then fails
  int barrier_arrived = 0;
  long barrier_generation = 0;
  std::condition_variable barrier_cv;

  // Writes into the receiver's buffer unless its owner abandoned it.
  static void deliver(Posted& to, const char* data, size_t bytes) {
    std::lock_guard<std::mutex> lock(to.state->mutex());
    if (to.state->abandoned_locked()) return;
    if (bytes != to.bytes) {
      to.state->fail_locked(detail::concat("the sender sent ", bytes, " bytes"));
      return;
    }
    if (bytes > 0) std::memcpy(to.data, data, bytes);
    to.state->complete_locked();
  }

  // Fails posted receives matching `pred` (caller holds mutex).
  template <typename Pred>
  void fail_posted(Pred pred, const std::string& why) {
    for (auto& queue : posted) {
      for (auto it = queue.begin(); it != queue.end();) {
        if (pred(*it)) {
          it->state->fail(why);
          it = queue.erase(it);
        } else {
          ++it;
        }
      }
    }
  }

  void abort(const std::string& why) {
    std::lock_guard<std::mutex> lock(mutex);
    if (!failure.empty()) return;
    failure = why;
    fail_posted([](const Posted&) { return true; }, why);
    barrier_cv.notify_all();
  }
};

class InProcessTransport final : public Transport {
 public:
  InProcessTransport(std::shared_ptr<Group> group, int rank, int size)
      : group_(std::move(group)), rank_(rank), size_(size) {}

  ~InProcessTransport() override {
    std::lock_guard<std::mutex> lock(group_->mutex);
    group_->closed[rank_] = true;
    const int me = rank_;
    // Nobody will ever send what these wait for; our own receives lose their buffers.
    group_->fail_posted([me](const Group::Posted& p) { return p.src == me; },
                        detail::concat("rank ", me, " closed its transport without sending it"));
    for (auto& p : group_->posted[me]) p.state->fail("the receiving transport was closed");
    group_->posted[me].clear();
    group_->barrier_cv.notify_all();
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* name() const override { return "in-process"; }
  Group& group() { return *group_; }

  Request isend(int peer, int tag, const void* data, size_t bytes) override {
    auto state =
        std::make_shared<RequestState>(describe("send to rank ", peer, tag, bytes), timeout_s());
    const char* src = static_cast<const char*>(data);
    std::lock_guard<std::mutex> lock(group_->mutex);
    if (!group_->failure.empty()) {
      state->fail(group_->failure);
      return Request(state);
    }
    if (group_->closed[peer]) {
      state->fail(detail::concat("rank ", peer, " has closed its transport"));
      return Request(state);
    }
    auto& waiting = group_->posted[peer];
    for (auto it = waiting.begin(); it != waiting.end(); ++it) {
      if (it->src != rank_ || it->tag != tag) continue;
      Group::deliver(*it, src, bytes);
      waiting.erase(it);
      state->complete();
      return Request(state);
    }
    group_->unexpected[peer].push_back({rank_, tag, std::vector<char>(src, src + bytes)});
    state->complete();  // eager: the bytes are ours now
    return Request(state);
  }

  Request irecv(int peer, int tag, void* data, size_t bytes) override {
    auto state =
        std::make_shared<RequestState>(describe("recv from rank ", peer, tag, bytes), timeout_s());
    std::lock_guard<std::mutex> lock(group_->mutex);
    if (!group_->failure.empty()) {
      state->fail(group_->failure);
      return Request(state);
    }
    Group::Posted posted{peer, tag, data, bytes, state};
    auto& arrived = group_->unexpected[rank_];
    for (auto it = arrived.begin(); it != arrived.end(); ++it) {
      if (it->src != peer || it->tag != tag) continue;
      Group::deliver(posted, it->bytes.data(), it->bytes.size());
      arrived.erase(it);
      return Request(state);
    }
    if (group_->closed[peer]) {
      state->fail(detail::concat("rank ", peer, " closed its transport without sending it"));
      return Request(state);
    }
    group_->posted[rank_].push_back(std::move(posted));
    return Request(state);
  }

  void barrier() override {
    std::unique_lock<std::mutex> lock(group_->mutex);
    const long generation = group_->barrier_generation;
    if (++group_->barrier_arrived == size_) {
      group_->barrier_arrived = 0;
      ++group_->barrier_generation;
      group_->barrier_cv.notify_all();
      return;
    }
    auto released = [&] {
      if (group_->barrier_generation != generation || !group_->failure.empty()) return true;
      for (bool c : group_->closed)
        if (c) return true;
      return false;
    };
    bool in_time = true;
    if (timeout_s() > 0)
      in_time =
          group_->barrier_cv.wait_for(lock, std::chrono::duration<double>(timeout_s()), released);
    else
      group_->barrier_cv.wait(lock, released);
    STRATA_CHECK(in_time, "rank ", rank_, ": barrier did not complete within ", timeout_s(), " s");
    if (group_->barrier_generation != generation) return;
    STRATA_CHECK(group_->failure.empty(), "rank ", rank_, ": barrier failed: ", group_->failure);
    STRATA_CHECK(false, "rank ", rank_, ": barrier failed: a rank closed its transport");
  }

 private:
  std::shared_ptr<Group> group_;
  const int rank_;
  const int size_;
};

}  // namespace

std::vector<std::unique_ptr<Transport>> make_in_process_transports(int n) {
  STRATA_CHECK(n >= 1, "in-process transport needs at least one rank, got ", n);
  auto group = std::make_shared<Group>(n);
  std::vector<std::unique_ptr<Transport>> out;
  for (int r = 0; r < n; ++r) out.push_back(std::make_unique<InProcessTransport>(group, r, n));
  return out;
}

void run_in_process(int n, const std::function<void(Transport&)>& body) {
  auto endpoints = make_in_process_transports(n);
  Group& group = static_cast<InProcessTransport&>(*endpoints[0]).group();
  std::mutex first_mutex;
  std::exception_ptr first;
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      std::unique_ptr<Transport> mine = std::move(endpoints[r]);
      try {
        body(*mine);
      } catch (const std::exception& e) {
        {
          std::lock_guard<std::mutex> lock(first_mutex);
          if (!first) first = std::current_exception();
        }
        group.abort(detail::concat("rank ", r, " failed: ", e.what()));
      } catch (...) {
        {
          std::lock_guard<std::mutex> lock(first_mutex);
          if (!first) first = std::current_exception();
        }
        group.abort(detail::concat("rank ", r, " failed"));
      }
    });
  }
  for (auto& t : threads) t.join();
  if (first) std::rethrow_exception(first);
}

}  // namespace strata::parallel
