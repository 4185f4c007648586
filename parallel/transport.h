// Byte transport between pipeline ranks: activation blocks forward, token ids back.
//
// Messages match by (peer, tag) in posting order, as in MPI. Every wait has a deadline
// (Transport::timeout_s(), from STRATA_TRANSPORT_TIMEOUT_S, default 1800 s) so a peer that
// vanished without the launcher ending the job cannot hang this rank forever.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "parallel/world.h"

namespace strata::parallel {

// Largest tag every transport accepts (MPI guarantees at least 32767).
inline constexpr int kMaxTag = 32767;

// Completion state shared by a Request and the transport that fulfils it.
class RequestState {
 public:
  explicit RequestState(std::string what, double timeout_s)
      : what_(std::move(what)), timeout_s_(timeout_s) {}
  void complete();
  void fail(const std::string& message);
  bool done() const;
  // Throws if the transfer failed; false while it is pending.
  bool test();
  // Blocks until done; throws on failure or after timeout_s.
  void wait();
  // The owner gives up (unwinding): fulfillers that check it leave the buffer alone.
  void abandon();
  bool abandoned() const;
  const std::string& what() const { return what_; }
  // Held by in-process delivery while it writes the receiver's buffer.
  std::mutex& mutex() { return mutex_; }
  bool abandoned_locked() const { return abandoned_; }
  void complete_locked();
  void fail_locked(const std::string& message);

 private:
  mutable std::mutex mutex_;
  std::condition_variable done_cv_;
  const std::string what_;  // "recv from rank 2 (tag 7, 4096 bytes)" for error messages
  const double timeout_s_;
  bool done_ = false;
  bool abandoned_ = false;
  std::string error_;
};

// Handle of one non-blocking send or receive. The buffer must stay alive until wait() or
// test() reports completion; the destructor waits for a pending transfer (errors ignored),
// except while an exception unwinds, when it abandons it.
class Request {
 public:
  Request() = default;
  explicit Request(std::shared_ptr<RequestState> state) : state_(std::move(state)) {}
  Request(Request&&) noexcept = default;
  Request& operator=(Request&& other) noexcept;
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;
  ~Request();

  void wait();
  bool test();
  bool valid() const { return state_ != nullptr; }

 private:
  void release() noexcept;
  std::shared_ptr<RequestState> state_;
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const char* name() const = 0;
  virtual Request isend(int peer, int tag, const void* data, size_t bytes) = 0;
  virtual Request irecv(int peer, int tag, void* data, size_t bytes) = 0;
  virtual void barrier() = 0;

  void send(int peer, int tag, const void* data, size_t bytes) {
    isend(peer, tag, data, bytes).wait();
  }
  void recv(int peer, int tag, void* data, size_t bytes) { irecv(peer, tag, data, bytes).wait(); }
  double timeout_s() const { return timeout_s_; }
  void set_timeout_s(double seconds) { timeout_s_ = seconds; }

 protected:
  Transport();
  // Checks peer and tag and names the transfer for error messages.
  std::string describe(const char* verb, int peer, int tag, size_t bytes) const;

 private:
  double timeout_s_;
};

// N connected endpoints in one process (tests, and pipelines run as threads). Sends are eager:
// the bytes are copied at isend, so a send completes at once.
std::vector<std::unique_ptr<Transport>> make_in_process_transports(int n);

// Runs body(rank's transport) on n threads. When one throws, every other rank's pending and
// later waits fail at once ("rank R failed: ..."), and the first error is rethrown here.
void run_in_process(int n, const std::function<void(Transport&)>& body);

// Host-staged non-blocking MPI over a duplicate of MPI_COMM_WORLD. One progress thread owns all
// MPI calls of the transport, so large messages progress while the caller computes (this Open
// MPI has no asynchronous progress of its own).
std::unique_ptr<Transport> make_mpi_transport(const World& world);

// What choose_transport knows of a rank: its host and GPU (-1: CPU-only rank).
struct RankDevice {
  std::string host;
  int gpu = -1;
};

// For `--transport`: which peers get NCCL. "mpi": none; "nccl": every peer, and an input error
// if any rank lacks its own GPU (or the build lacks NCCL); "auto": the peers that have their
// own GPU when this rank has one. Pure, so it is tested without MPI.
std::vector<bool> nccl_peers(const std::string& choice, const std::vector<RankDevice>& ranks,
                             int me, bool have_nccl);

// Builds the transport for this rank (a collective: every rank calls it). `gpu` is this rank's
// CUDA device, -1 for a CPU-only rank.
std::unique_ptr<Transport> choose_transport(const std::string& choice, const World& world, int gpu);

}  // namespace strata::parallel
