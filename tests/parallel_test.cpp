// Transports without mpirun: the in-process endpoints (ordering, many messages in flight, large
// blocks, failing and vanishing peers, deadlines), the link transport over fake links, and
// choose_transport's decisions.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <numeric>
#include <thread>

#include "core/error.h"
#include "parallel/link_transport.h"
#include "parallel/transport.h"
#include "parallel/world.h"

namespace strata::parallel {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Expects `body` to throw an Error whose message holds `needle`; returns the message.
template <typename Body>
std::string error_of(Body body, const std::string& needle) {
  try {
    body();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no error (expected one holding '" << needle << "')";
  return "";
}

TEST(InProcessTransport, SameTagArrivesInOrderOtherTagsMatchByTag) {
  run_in_process(2, [](Transport& t) {
    constexpr int kCount = 200;
    if (t.rank() == 0) {
      std::vector<int> values(kCount);
      std::iota(values.begin(), values.end(), 0);
      for (int i = 0; i < kCount; ++i) t.send(1, 5, &values[i], sizeof(int));
      const int a = 111, b = 222;
      t.send(1, 1, &a, sizeof(a));
      t.send(1, 2, &b, sizeof(b));
    } else {
      for (int i = 0; i < kCount; ++i) {
        int got = -1;
        t.recv(0, 5, &got, sizeof(got));
        ASSERT_EQ(got, i);
      }
      int a = 0, b = 0;
      t.recv(0, 2, &b, sizeof(b));  // posted in the opposite order to the sends
      t.recv(0, 1, &a, sizeof(a));
      EXPECT_EQ(a, 111);
      EXPECT_EQ(b, 222);
    }
  });
}

// Every rank posts all its receives and sends to both ring neighbours before waiting on any.
TEST(InProcessTransport, RingWithManyMessagesInFlight) {
  constexpr int kRanks = 4, kBlocks = 64, kInts = 257;
  run_in_process(kRanks, [](Transport& t) {
    const int right = (t.rank() + 1) % t.size(), left = (t.rank() + t.size() - 1) % t.size();
    std::vector<std::vector<int32_t>> out(kBlocks, std::vector<int32_t>(kInts));
    std::vector<std::vector<int32_t>> in(kBlocks, std::vector<int32_t>(kInts, -1));
    std::vector<Request> requests;
    for (int b = 0; b < kBlocks; ++b)
      requests.push_back(t.irecv(left, b % 7, in[b].data(), kInts * sizeof(int32_t)));
    for (int b = 0; b < kBlocks; ++b) {
      for (int i = 0; i < kInts; ++i) out[b][i] = t.rank() * 1000000 + b * 1000 + i;
      requests.push_back(t.isend(right, b % 7, out[b].data(), kInts * sizeof(int32_t)));
    }
    for (auto& r : requests) r.wait();
    for (int b = 0; b < kBlocks; ++b)
      for (int i = 0; i < kInts; ++i) ASSERT_EQ(in[b][i], left * 1000000 + b * 1000 + i);
    t.barrier();
  });
}

TEST(InProcessTransport, LargeBlockArrivesWhole) {
  constexpr size_t kBytes = size_t{96} << 20;
  run_in_process(2, [](Transport& t) {
    std::vector<uint8_t> block(kBytes);
    if (t.rank() == 0) {
      for (size_t i = 0; i < kBytes; ++i) block[i] = static_cast<uint8_t>(i * 131 + (i >> 20));
      t.send(1, 0, block.data(), kBytes);
    } else {
      Request r = t.irecv(0, 0, block.data(), kBytes);
      while (!r.test()) std::this_thread::yield();
      for (size_t i = 0; i < kBytes; ++i)
        ASSERT_EQ(block[i], static_cast<uint8_t>(i * 131 + (i >> 20))) << "byte " << i;
    }
  });
}

// Rank 1 throws mid-exchange, once ranks 0 and 2 have posted receives from it (they tell it so);
// both are released by its error, not by the deadline (1800 s: its message would differ), and
// the original error comes back to the caller.
TEST(InProcessTransport, PeerThatThrowsReleasesEveryoneAtOnce) {
  std::atomic<int> released{0};
  const std::string message = error_of(
      [&] {
        run_in_process(3, [&](Transport& t) {
          int value = t.rank();
          if (t.rank() == 1) {
            t.send(2, 0, &value, sizeof(value));
            for (int peer : {0, 2}) t.recv(peer, 2, &value, sizeof(value));  // both posted
            throw Error("stage 1 ran out of memory", kExitInternal);
          }
          try {
            if (t.rank() == 2) t.recv(1, 0, &value, sizeof(value));  // arrives
            Request never = t.irecv(1, 1, &value, sizeof(value));    // never sent
            t.send(1, 2, &value, sizeof(value));
            never.wait();
          } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("rank 1 failed: stage 1 ran out of memory"),
                      std::string::npos)
                << e.what();
            EXPECT_NE(std::string(e.what()).find("recv from rank 1"), std::string::npos);
            ++released;
            throw;
          }
        });
      },
      "stage 1 ran out of memory");
  EXPECT_EQ(message, "stage 1 ran out of memory");
  EXPECT_EQ(released.load(), 2);
}

TEST(InProcessTransport, BarrierFailsWhenARankThrows) {
  error_of(
      [] {
        run_in_process(3, [](Transport& t) {
          if (t.rank() == 2) throw Error("bad slice", kExitBadInput);
          t.barrier();
        });
      },
      "bad slice");
}

TEST(InProcessTransport, ReceiveFromARankThatLeftFails) {
  run_in_process(2, [](Transport& t) {
    if (t.rank() == 1) {
      int v = 7;
      t.send(0, 0, &v, sizeof(v));
      return;  // leaves without the second message
    }
    int v = 0;
    t.recv(0 + 1, 0, &v, sizeof(v));  // sent before it left: still delivered
    EXPECT_EQ(v, 7);
    error_of([&] { t.recv(1, 1, &v, sizeof(v)); }, "rank 1 closed its transport");
  });
}

// The deadline is the guard for a peer that vanished while the launcher did not end the job.
TEST(InProcessTransport, WaitHasADeadlineNamingThePeer) {
  auto endpoints = make_in_process_transports(2);
  endpoints[0]->set_timeout_s(0.2);
  int v = 0;
  const auto start = std::chrono::steady_clock::now();
  Request r = endpoints[0]->irecv(1, 3, &v, sizeof(v));
  error_of([&] { r.wait(); },
           "rank 0: recv from rank 1 (in-process, tag 3, 4 bytes) did not complete within 0.2 s");
  // Not before the deadline (a lower bound load cannot break); no upper bound: that is timing.
  EXPECT_GE(seconds_since(start), 0.19);
  endpoints[1]->send(0, 3, &v, sizeof(v));  // lets the dropped handle complete
}

TEST(InProcessTransport, SizeMismatchAndBadArgumentsAreErrors) {
  auto endpoints = make_in_process_transports(2);
  int64_t big = 1;
  int32_t small = 0;
  endpoints[1]->send(0, 0, &big, sizeof(big));
  error_of([&] { endpoints[0]->recv(1, 0, &small, sizeof(small)); }, "sent 8 bytes");
  error_of([&] { endpoints[0]->isend(2, 0, &small, 4); }, "peer 2 outside 0..1");
  error_of([&] { endpoints[0]->isend(1, kMaxTag + 1, &small, 4); }, "tag 32768");
}

// A fake link: a queue per id, standing in for a 2-rank NCCL communicator.
struct FakeLinks {
  struct Pipe {
    std::mutex mutex;
    std::condition_variable cv;
    std::deque<std::vector<char>> messages;
    bool aborted = false;
  };
  class FakeLink final : public Link {
   public:
    FakeLink(std::shared_ptr<Pipe> pipe, std::atomic<int>& sent) : pipe_(pipe), sent_(sent) {}
    void send(const void* data, size_t bytes) override {
      const char* p = static_cast<const char*>(data);
      std::lock_guard<std::mutex> lock(pipe_->mutex);
      pipe_->messages.emplace_back(p, p + bytes);
      pipe_->cv.notify_all();
      ++sent_;
    }
    void recv(void* data, size_t bytes) override {
      std::unique_lock<std::mutex> lock(pipe_->mutex);
      pipe_->cv.wait(lock, [&] { return pipe_->aborted || !pipe_->messages.empty(); });
      STRATA_CHECK(!pipe_->aborted, "link aborted");
      STRATA_CHECK(pipe_->messages.front().size() == bytes, "size mismatch on fake link");
      std::copy(pipe_->messages.front().begin(), pipe_->messages.front().end(),
                static_cast<char*>(data));
      pipe_->messages.pop_front();
    }
    void abort() override {
      std::lock_guard<std::mutex> lock(pipe_->mutex);
      pipe_->aborted = true;
      pipe_->cv.notify_all();
    }

   private:
    std::shared_ptr<Pipe> pipe_;
    std::atomic<int>& sent_;
  };

  LinkFactory factory() {
    return {[this] { return "id-" + std::to_string(next_id++); },
            [this](const std::string& id, int, bool, double) -> std::unique_ptr<Link> {
              std::lock_guard<std::mutex> lock(mutex);
              auto& pipe = pipes[id];
              if (!pipe) pipe = std::make_shared<Pipe>();
              ++opened;
              return std::make_unique<FakeLink>(pipe, sent);
            }};
  }

  std::mutex mutex;
  std::map<std::string, std::shared_ptr<Pipe>> pipes;
  std::atomic<int> next_id{0}, opened{0}, sent{0};
};

// Ranks 0, 1, 2 own GPUs, rank 3 is CPU-only: ring traffic between GPU ranks goes over links
// (one per direction), traffic touching rank 3 over the base transport.
TEST(LinkTransport, RoutesPerPeerAndKeepsOrder) {
  constexpr int kRanks = 4, kBlocks = 20;
  const std::vector<RankDevice> devices = {{"a", 0}, {"a", 1}, {"b", 0}, {"b", -1}};
  auto bases = make_in_process_transports(kRanks);
  FakeLinks links;
  // Every rank opens its links at construction, meeting its peers there: in parallel.
  std::vector<std::unique_ptr<Transport>> ends(kRanks);
  {
    std::vector<std::thread> opening;
    for (int r = 0; r < kRanks; ++r) {
      opening.emplace_back([&, r] {
        ends[r] = make_link_transport(std::move(bases[r]), links.factory(),
                                      nccl_peers("auto", devices, r, true), "fake");
      });
    }
    for (auto& th : opening) th.join();
  }
  std::vector<std::thread> threads;
  for (int r = 0; r < kRanks; ++r) {
    threads.emplace_back([&, r] {
      Transport& t = *ends[r];
      const int right = (r + 1) % kRanks, left = (r + kRanks - 1) % kRanks;
      std::vector<int64_t> out(kBlocks), in(kBlocks, -1);
      std::vector<Request> requests;
      for (int b = 0; b < kBlocks; ++b) requests.push_back(t.irecv(left, b, &in[b], 8));
      for (int b = 0; b < kBlocks; ++b) {
        out[b] = r * 1000 + b;
        requests.push_back(t.isend(right, b, &out[b], 8));
      }
      for (auto& q : requests) q.wait();
      for (int b = 0; b < kBlocks; ++b) EXPECT_EQ(in[b], left * 1000 + b);
      t.barrier();
    });
  }
  for (auto& th : threads) th.join();
  // Up front, both directions between every two of the GPU ranks 0, 1, 2: 3 pairs x 2 x 2 ends.
  EXPECT_EQ(links.opened.load(), 12);
  EXPECT_EQ(links.sent.load(), 2 * kBlocks);
  ends.clear();
}

TEST(ChooseTransport, AutoUsesNcclOnlyBetweenRanksWithTheirOwnGpu) {
  // Two ranks share GPU 0 on host a; rank 2 owns GPU 1; rank 3 is CPU-only; rank 4 owns a GPU.
  const std::vector<RankDevice> ranks = {{"a", 0}, {"a", 0}, {"a", 1}, {"a", -1}, {"b", 0}};
  EXPECT_EQ(nccl_peers("auto", ranks, 2, true),
            (std::vector<bool>{false, false, false, false, true}));
  EXPECT_EQ(nccl_peers("auto", ranks, 4, true),
            (std::vector<bool>{false, false, true, false, false}));
  EXPECT_EQ(nccl_peers("auto", ranks, 0, true), std::vector<bool>(5, false));
  EXPECT_EQ(nccl_peers("auto", ranks, 3, true), std::vector<bool>(5, false));
  EXPECT_EQ(nccl_peers("auto", ranks, 2, false), std::vector<bool>(5, false));
  EXPECT_EQ(nccl_peers("mpi", ranks, 2, true), std::vector<bool>(5, false));
  const std::vector<RankDevice> own = {{"a", 0}, {"a", 1}};
  EXPECT_EQ(nccl_peers("nccl", own, 0, true), (std::vector<bool>{false, true}));
}

TEST(ChooseTransport, ImpossibleNcclIsAnInputError) {
  auto input_error = [](auto body, const std::string& needle) {
    try {
      body();
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.exit_status(), kExitBadInput);
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  input_error(
      [] {
        nccl_peers("nccl", {{"a", 0}, {"a", -1}}, 0, true);
      },
      "--transport nccl: rank 1 on a has no GPU");
  input_error(
      [] {
        nccl_peers("nccl", {{"a", 0}, {"b", 0}, {"b", 0}}, 0, true);
      },
      "ranks 1 and 2 share GPU 0 on b");
  input_error([] { nccl_peers("nccl", {{"a", 0}, {"b", 0}}, 0, false); }, "this build has no NCCL");
  input_error([] { nccl_peers("gloo", {{"a", 0}}, 0, true); }, "must be mpi, nccl or auto");
  const World single;
  input_error([&] { choose_transport("tcp", single, -1); }, "got 'tcp'");
}

// Without a launcher the world is one rank and touches no MPI; its transport still works.
TEST(World, PlainRunIsOneRankWithoutMpi) {
  const World& w = world();
  EXPECT_EQ(w.rank, 0);
  EXPECT_EQ(w.size, 1);
  EXPECT_EQ(w.local_rank, 0);
  EXPECT_EQ(w.local_size, 1);
  EXPECT_FALSE(w.mpi);
  EXPECT_FALSE(w.host.empty());
  EXPECT_FALSE(in_parallel_job());
  auto t = choose_transport("auto", w, -1);
  const int sent = 42;
  int got = 0;
  Request r = t->irecv(0, 9, &got, sizeof(got));
  t->send(0, 9, &sent, sizeof(sent));
  r.wait();
  EXPECT_EQ(got, 42);
}

}  // namespace
}  // namespace strata::parallel
