// Runs under mpirun (driven by run_case.sh): world and local ranks, a ring of overlapped
// non-blocking block exchanges, and ranks that die mid-exchange.
//   strata_mpi_test ring        every check; exits 0
//   strata_mpi_test kill|exit|throw
//                               the last rank dies mid-exchange (SIGKILL, exit(1), or an
//                               error that main turns into abort_job); the others keep
//                               waiting on it, so only the launcher can end the job
//   strata_mpi_test single      without mpirun: one rank, MPI (STRATA_MPI=1: singleton) or not
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "parallel/transport.h"
#include "parallel/world.h"

namespace strata::parallel {
namespace {

// Fails this rank (and through main, the job) with a message.
#define EXPECT_OR_FAIL(cond, ...) STRATA_CHECK(cond, "check failed: " #cond ": ", __VA_ARGS__)

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : fallback;
}

void check_world(const World& w) {
  EXPECT_OR_FAIL(w.mpi, "launched by mpirun but MPI not initialised");
  EXPECT_OR_FAIL(w.size == env_int("OMPI_COMM_WORLD_SIZE", w.size), "size ", w.size);
  EXPECT_OR_FAIL(w.rank == env_int("OMPI_COMM_WORLD_RANK", w.rank), "rank ", w.rank);
  // Found by host name; Open MPI's own idea of it must agree.
  EXPECT_OR_FAIL(w.local_rank == env_int("OMPI_COMM_WORLD_LOCAL_RANK", w.local_rank), "local rank ",
                 w.local_rank);
  EXPECT_OR_FAIL(w.local_size == env_int("OMPI_COMM_WORLD_LOCAL_SIZE", w.local_size), "local size ",
                 w.local_size);
  EXPECT_OR_FAIL(!w.host.empty(), "empty host name");
  const auto hosts = allgather_strings(w, w.host);
  EXPECT_OR_FAIL(static_cast<int>(hosts.size()) == w.size, "allgather gave ", hosts.size());
  EXPECT_OR_FAIL(in_parallel_job() == (w.size > 1), "in_parallel_job");
}

int32_t pattern(int rank, int block, int i) {
  return rank * 1000003 + block * 7919 + i;
}

// Every rank posts all receives from the left and all sends to the right, then "computes"
// for a while without touching MPI, then waits: the progress thread must have moved the
// blocks meanwhile (each block is above Open MPI's eager limit, so it needs a rendezvous).
void ring(Transport& t, int blocks, int ints, int step) {
  const int right = (t.rank() + 1) % t.size(), left = (t.rank() + t.size() - 1) % t.size();
  std::vector<std::vector<int32_t>> out(blocks, std::vector<int32_t>(ints));
  std::vector<std::vector<int32_t>> in(blocks, std::vector<int32_t>(ints, -1));
  std::vector<Request> requests;
  for (int b = 0; b < blocks; ++b)
    requests.push_back(t.irecv(left, step * blocks + b, in[b].data(), ints * sizeof(int32_t)));
  for (int b = 0; b < blocks; ++b) {
    for (int i = 0; i < ints; ++i) out[b][i] = pattern(t.rank(), step * blocks + b, i);
    requests.push_back(t.isend(right, step * blocks + b, out[b].data(), ints * sizeof(int32_t)));
  }
  for (auto& r : requests) r.wait();
  for (int b = 0; b < blocks; ++b)
    for (int i = 0; i < ints; ++i)
      EXPECT_OR_FAIL(in[b][i] == pattern(left, step * blocks + b, i), "block ", b, " int ", i,
                     " from rank ", left);
}

// A block above Open MPI's eager limit goes by rendezvous, which this Open MPI would only
// progress inside our wait. After posting both ends, this rank "computes" without any MPI call
// and watches its receive buffer: the block must arrive before the rank waits on it, so the
// progress thread moved it meanwhile. An order check, not a clock: the deadline only stops a hang.
void check_overlap(Transport& t) {
  const int right = (t.rank() + 1) % t.size(), left = (t.rank() + t.size() - 1) % t.size();
  constexpr size_t kInts = size_t{8} << 20;  // 32 MiB
  std::vector<int32_t> out(kInts, t.rank()), in(kInts, -1);
  t.barrier();
  Request r = t.irecv(left, 900, in.data(), kInts * sizeof(int32_t));
  Request s = t.isend(right, 900, out.data(), kInts * sizeof(int32_t));
  const auto arrived = [&] {
    return std::atomic_ref<int32_t>(in.front()).load() == left &&
           std::atomic_ref<int32_t>(in.back()).load() == left;
  };
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  int polls = 0;
  while (!arrived() && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ++polls;
  }
  const bool before_wait = arrived();
  r.wait();
  s.wait();
  EXPECT_OR_FAIL(in[0] == left && in[kInts - 1] == left, "32 MiB block from rank ", left);
  std::printf("rank %d: 32 MiB block arrived %s waiting, after %d polls\n", t.rank(),
              before_wait ? "before" : "only when", polls);
  EXPECT_OR_FAIL(before_wait, "the 32 MiB block from rank ", left,
                 " arrived only once this rank waited: sends did not progress");
}

void check_tokens_back(Transport& t) {
  // Token ids flow from the last rank back to rank 0 (the pipeline's return edge).
  const int last = t.size() - 1;
  std::vector<int32_t> ids(64);
  if (t.rank() == last) {
    for (int i = 0; i < 64; ++i) ids[i] = 50000 + i;
    t.send(0, 903, ids.data(), ids.size() * sizeof(int32_t));
  } else if (t.rank() == 0) {
    t.recv(last, 903, ids.data(), ids.size() * sizeof(int32_t));
    EXPECT_OR_FAIL(ids[0] == 50000 && ids[63] == 50063, "token ids from rank ", last);
  }
}

void check_nccl_refused(const World& w) {
  try {
    choose_transport("nccl", w, -1);
  } catch (const Error& e) {
    EXPECT_OR_FAIL(e.exit_status() == kExitBadInput, "exit status ", e.exit_status());
    return;
  }
  EXPECT_OR_FAIL(false, "--transport nccl accepted on CPU-only ranks");
}

int run_ring() {
  const World& w = world();
  check_world(w);
  check_nccl_refused(w);
  auto t = choose_transport("auto", w, -1);
  EXPECT_OR_FAIL(std::string(t->name()) == "mpi", "auto chose ", t->name(), " on CPU ranks");
  for (int step = 0; step < 3; ++step) ring(*t, 16, 64 << 10, step);  // 16 x 256 KiB per step
  check_overlap(*t);
  check_tokens_back(*t);
  t->barrier();
  std::printf("rank %d/%d local %d/%d on %s: ok\n", w.rank, w.size, w.local_rank, w.local_size,
              w.host.c_str());
  return 0;
}

int run_dying(const std::string& how) {
  const World& w = world();
  auto t = choose_transport("mpi", w, -1);
  const int victim = w.size - 1;
  for (int step = 0;; ++step) {
    if (w.rank == victim && step == 3) {
      std::fprintf(stderr, "rank %d: dying by %s at step %d\n", w.rank, how.c_str(), step);
      if (how == "kill") raise(SIGKILL);
      if (how == "exit") std::exit(1);
      STRATA_CHECK(false, "injected failure at step ", step);
    }
    ring(*t, 4, 1 << 10, step % 8);
  }
}

int run_single() {
  const World& w = world();
  EXPECT_OR_FAIL(w.size == 1 && w.rank == 0 && w.local_size == 1, "one rank");
  const bool want_mpi = std::getenv("STRATA_MPI") && std::strcmp(std::getenv("STRATA_MPI"), "0");
  EXPECT_OR_FAIL(w.mpi == want_mpi, "mpi ", w.mpi);
  auto t = w.mpi ? make_mpi_transport(w) : choose_transport("auto", w, -1);
  std::vector<int32_t> out(1 << 20, 5), in(1 << 20, 0);
  Request r = t->irecv(0, 1, in.data(), in.size() * 4);
  t->send(0, 1, out.data(), out.size() * 4);
  r.wait();
  t->barrier();
  EXPECT_OR_FAIL(in[12345] == 5, "self message");
  std::printf("single rank (%s): ok\n", t->name());
  return 0;
}

}  // namespace
}  // namespace strata::parallel

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "ring";
  try {
    if (mode == "ring") return strata::parallel::run_ring();
    if (mode == "single") return strata::parallel::run_single();
    return strata::parallel::run_dying(mode);
  } catch (const strata::Error& e) {
    // The same exit path as src/cli/main.cpp.
    strata::parallel::abort_job_if_parallel(e.exit_status(), e.what());
    std::fprintf(stderr, "strata_mpi_test: error: %s\n", e.what());
    return e.exit_status();
  }
}
