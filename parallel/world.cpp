#include "parallel/world.h"

// Only the C API is used; Open MPI's deprecated C++ bindings bring nothing but warnings.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#include <mpi.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "core/error.h"

namespace strata::parallel {
namespace {

#define STRATA_MPI_CHECK(call)                                                     \
  do {                                                                             \
    const int status_ = (call);                                                    \
    if (status_ != MPI_SUCCESS) {                                                  \
      char text_[MPI_MAX_ERROR_STRING] = {};                                       \
      int len_ = 0;                                                                \
      MPI_Error_string(status_, text_, &len_);                                     \
      STRATA_CHECK(status_ == MPI_SUCCESS, #call, ": ", std::string(text_, len_)); \
    }                                                                              \
  } while (0)

std::atomic<int> g_world_size{0};  // 0 until world() has run
std::atomic<bool> g_mpi{false};

// Launchers that start MPI jobs leave these in every rank's environment.
bool launched_by_mpi() {
  if (const char* force = std::getenv("STRATA_MPI")) return std::strcmp(force, "0") != 0;
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"})
    if (std::getenv(var)) return true;
  return false;
}

std::string host_name() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) return "?";
  return host;
}

// Runs at exit (glibc's on_exit, which sees the status). A rank leaving with a failure must
// not call MPI_Finalize: that waits for the other ranks, which wait on this one, so the job
// would hang. It aborts the job instead; a clean exit finalises.
void finish_mpi(int status, void*) {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (status != 0 && g_world_size.load() > 1)
    abort_job(status, detail::concat("exited with status ", status, "; ending the job"));
  MPI_Finalize();
}

World make_world() {
  World w;
  w.host = host_name();
  if (!launched_by_mpi()) return w;
  int provided = 0;
  // MULTIPLE costs nothing here; all we rely on is SERIALIZED (see mpi_mutex()).
  STRATA_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided));
  STRATA_CHECK(on_exit(finish_mpi, nullptr) == 0, "on_exit failed");
  STRATA_CHECK(provided >= MPI_THREAD_SERIALIZED, "MPI gives thread level ", provided,
               "; strata needs MPI_THREAD_SERIALIZED");
  w.mpi = true;
  STRATA_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &w.rank));
  STRATA_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &w.size));
  char name[MPI_MAX_PROCESSOR_NAME] = {};
  int len = 0;
  STRATA_MPI_CHECK(MPI_Get_processor_name(name, &len));
  w.host = std::string(name, len);
  const std::vector<std::string> hosts = allgather_strings(w, w.host);
  w.local_rank = 0;
  w.local_size = 0;
  for (int r = 0; r < w.size; ++r) {
    if (hosts[r] != w.host) continue;
    if (r < w.rank) ++w.local_rank;
    ++w.local_size;
  }
  return w;
}

}  // namespace

std::mutex& mpi_mutex() {
  static std::mutex mutex;
  return mutex;
}

const World& world() {
  static const World w = [] {
    World made = make_world();
    g_mpi = made.mpi;
    g_world_size = made.size;
    return made;
  }();
  return w;
}

bool in_parallel_job() {
  return g_world_size.load() > 1;
}

std::vector<std::string> allgather_strings(const World& world, const std::string& mine) {
  if (!world.mpi || world.size == 1) return {mine};
  std::lock_guard<std::mutex> lock(mpi_mutex());
  std::vector<int> lengths(world.size);
  int my_length = static_cast<int>(mine.size());
  STRATA_MPI_CHECK(
      MPI_Allgather(&my_length, 1, MPI_INT, lengths.data(), 1, MPI_INT, MPI_COMM_WORLD));
  std::vector<int> offsets(world.size, 0);
  for (int r = 1; r < world.size; ++r) offsets[r] = offsets[r - 1] + lengths[r - 1];
  std::string all(offsets.back() + lengths.back(), '\0');
  STRATA_MPI_CHECK(MPI_Allgatherv(mine.data(), my_length, MPI_CHAR, all.data(), lengths.data(),
                                  offsets.data(), MPI_CHAR, MPI_COMM_WORLD));
  std::vector<std::string> out;
  for (int r = 0; r < world.size; ++r) out.push_back(all.substr(offsets[r], lengths[r]));
  return out;
}

void abort_job(int code, const std::string& message) {
  static std::atomic<bool> printed{false};
  if (!printed.exchange(true)) {
    const int size = g_world_size.load();
    const World* w = size > 0 ? &world() : nullptr;
    // An error every rank meets (most input errors) is said once, by rank 0, whose MPI_Abort
    // ends the others during this grace; an error only this rank met is said after it.
    if (w && w->rank != 0 && size > 1) std::this_thread::sleep_for(std::chrono::seconds(1));
    std::fprintf(stderr, "strata: rank %d on %s: %s\n", w ? w->rank : 0,
                 w ? w->host.c_str() : host_name().c_str(), message.c_str());
    std::fflush(stderr);
  }
  std::fflush(stdout);
  // No mpi_mutex here: the progress thread may hold it inside a wait that never ends.
  if (g_world_size.load() > 1) MPI_Abort(MPI_COMM_WORLD, code == 0 ? 1 : code);
  std::exit(code);
}

void abort_job_if_parallel(int code, const std::string& message) {
  if (in_parallel_job()) abort_job(code, message);
}

}  // namespace strata::parallel
