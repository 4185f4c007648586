// Host-staged MPI transport. One progress thread makes every MPI call of the transport: it
// posts the requests, then keeps testing them, so rendezvous-size messages move while the
// caller computes (this Open MPI has no asynchronous progress thread of its own).
// Only the C API is used; Open MPI's deprecated C++ bindings bring nothing but warnings.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "core/error.h"
#include "parallel/transport.h"

namespace strata::parallel {
namespace {

// MPI counts are int: larger blocks go as several messages, posted back to back, which MPI's
// non-overtaking rule keeps in order.
constexpr size_t kChunkBytes = size_t{1} << 30;
constexpr auto kMinPoll = std::chrono::microseconds(20);
constexpr auto kMaxPoll = std::chrono::microseconds(1000);

std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  MPI_Error_string(code, text, &len);
  return std::string(text, len);
}

class MpiTransport final : public Transport {
 public:
  explicit MpiTransport(const World& world) : rank_(world.rank), size_(world.size) {
    STRATA_CHECK(world.mpi, "the MPI transport needs an MPI launch (mpirun or srun)");
    {
      std::lock_guard<std::mutex> lock(mpi_mutex());
      // Our own communicator: our tags never meet anyone else's messages.
      const int rc = MPI_Comm_dup(MPI_COMM_WORLD, &comm_);
      STRATA_CHECK(rc == MPI_SUCCESS, "MPI_Comm_dup: ", mpi_error_text(rc));
      MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    }
    progress_ = std::thread([this] { progress_loop(); });
  }

  ~MpiTransport() override {
    {
      std::lock_guard<std::mutex> lock(queue_mutex_);
      stop_ = true;
    }
    queue_cv_.notify_all();
    progress_.join();
    std::lock_guard<std::mutex> lock(mpi_mutex());
    MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* name() const override { return "mpi"; }

  Request isend(int peer, int tag, const void* data, size_t bytes) override {
    return post(Op::kSend, peer, tag, const_cast<void*>(data), bytes,
                describe("send to rank ", peer, tag, bytes));
  }

  Request irecv(int peer, int tag, void* data, size_t bytes) override {
    return post(Op::kRecv, peer, tag, data, bytes, describe("recv from rank ", peer, tag, bytes));
  }

  void barrier() override {
    post(Op::kBarrier, 0, 0, nullptr, 0, detail::concat("rank ", rank_, ": barrier (mpi)")).wait();
  }

 private:
  struct Op {
    enum Kind { kSend, kRecv, kBarrier } kind;
    int peer;
    int tag;
    char* data;
    size_t bytes;
    std::shared_ptr<RequestState> state;
    int chunks_left = 0;
    std::string error;
  };
  struct Pending {  // one MPI request of an op
    MPI_Request request;
    Op* op;
    int expected_bytes;
  };

  Request post(Op::Kind kind, int peer, int tag, void* data, size_t bytes, std::string what) {
    auto state = std::make_shared<RequestState>(std::move(what), timeout_s());
    auto op = std::make_unique<Op>();
    *op = {kind, peer, tag, static_cast<char*>(data), bytes, state, 0, {}};
    {
      std::lock_guard<std::mutex> lock(queue_mutex_);
      STRATA_CHECK(!stop_, "post on a closed MPI transport");
      queue_.push_back(std::move(op));
    }
    queue_cv_.notify_one();
    return Request(std::move(state));
  }

  // Called with mpi_mutex held.
  void start(std::unique_ptr<Op> op) {
    Op* raw = op.get();
    live_.push_back(std::move(op));
    auto add = [&](int rc, MPI_Request request, int expected) {
      if (rc != MPI_SUCCESS) {
        raw->error = mpi_error_text(rc);
        return;
      }
      ++raw->chunks_left;
      pending_.push_back({request, raw, expected});
    };
    if (raw->kind == Op::kBarrier) {
      MPI_Request request = MPI_REQUEST_NULL;
      const int rc = MPI_Ibarrier(comm_, &request);
      add(rc, request, 0);
      return;
    }
    size_t offset = 0;
    do {  // at least one message, also for 0 bytes
      const int n = static_cast<int>(std::min(kChunkBytes, raw->bytes - offset));
      MPI_Request request = MPI_REQUEST_NULL;
      const int rc =
          raw->kind == Op::kSend
              ? MPI_Isend(raw->data + offset, n, MPI_BYTE, raw->peer, raw->tag, comm_, &request)
              : MPI_Irecv(raw->data + offset, n, MPI_BYTE, raw->peer, raw->tag, comm_, &request);
      add(rc, request, n);
      offset += static_cast<size_t>(n);
    } while (offset < raw->bytes);
  }

  // Called with mpi_mutex held; returns whether anything completed.
  bool poll() {
    if (pending_.empty()) return false;
    std::vector<MPI_Request> requests;
    for (const auto& p : pending_) requests.push_back(p.request);
    std::vector<int> indices(requests.size());
    std::vector<MPI_Status> statuses(requests.size());
    int count = 0;
    const int rc = MPI_Testsome(static_cast<int>(requests.size()), requests.data(), &count,
                                indices.data(), statuses.data());
    if (rc != MPI_SUCCESS && rc != MPI_ERR_IN_STATUS) {
      for (auto& p : pending_) p.op->error = mpi_error_text(rc);
      for (auto& p : pending_) p.op->chunks_left = 0;
      pending_.clear();
      return true;
    }
    if (count == MPI_UNDEFINED || count == 0) return false;
    for (int i = 0; i < count; ++i) {
      Pending& p = pending_[indices[i]];
      const MPI_Status& status = statuses[i];
      if (rc == MPI_ERR_IN_STATUS && status.MPI_ERROR != MPI_SUCCESS) {
        p.op->error = mpi_error_text(status.MPI_ERROR);
      } else if (p.op->kind == Op::kRecv) {
        int got = 0;
        MPI_Get_count(&status, MPI_BYTE, &got);
        if (got != p.expected_bytes)
          p.op->error = detail::concat("the sender sent ", got, " bytes where ", p.expected_bytes,
                                       " were expected");
      }
      --p.op->chunks_left;
      p.request = MPI_REQUEST_NULL;
    }
    std::erase_if(pending_, [](const Pending& p) { return p.request == MPI_REQUEST_NULL; });
    return true;
  }

  void finish_done_ops() {
    std::erase_if(live_, [](const std::unique_ptr<Op>& op) {
      if (op->chunks_left > 0) return false;
      if (op->error.empty())
        op->state->complete();
      else
        op->state->fail(op->error);
      return true;
    });
  }

  void progress_loop() {
    auto poll_every = kMinPoll;
    for (;;) {
      std::vector<std::unique_ptr<Op>> fresh;
      bool stopping = false;
      {
        std::unique_lock<std::mutex> lock(queue_mutex_);
        auto woken = [this] { return stop_ || !queue_.empty(); };
        if (live_.empty())
          queue_cv_.wait(lock, woken);
        else
          queue_cv_.wait_for(lock, poll_every, woken);
        fresh.swap(queue_);
        stopping = stop_;
      }
      bool progressed = !fresh.empty();
      {
        std::lock_guard<std::mutex> lock(mpi_mutex());
        for (auto& op : fresh) start(std::move(op));
        progressed |= poll();
        if (stopping) cancel_all();
      }
      finish_done_ops();
      if (stopping) return;
      poll_every = progressed ? kMinPoll : std::min(poll_every * 2, kMaxPoll);
    }
  }

  // At close: what is still pending will not be waited for (called with mpi_mutex held).
  void cancel_all() {
    for (auto& p : pending_) {
      if (p.op->kind == Op::kRecv) MPI_Cancel(&p.request);
      MPI_Request_free(&p.request);
      p.op->error = "the transport was closed before it completed";
      p.op->chunks_left = 0;
    }
    pending_.clear();
  }

  const int rank_;
  const int size_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  std::mutex queue_mutex_;
  std::condition_variable queue_cv_;
  std::vector<std::unique_ptr<Op>> queue_;  // posted by callers, not yet started
  bool stop_ = false;
  // Owned by the progress thread.
  std::vector<std::unique_ptr<Op>> live_;
  std::vector<Pending> pending_;
  std::thread progress_;
};

}  // namespace

std::unique_ptr<Transport> make_mpi_transport(const World& world) {
  return std::make_unique<MpiTransport>(world);
}

}  // namespace strata::parallel
