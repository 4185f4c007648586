// Where this process sits in an MPI job: rank, size, and its place on its host.
#pragma once

#include <mutex>
#include <string>
#include <vector>

namespace strata::parallel {

struct World {
  int rank = 0;
  int size = 1;
  int local_rank = 0;  // index among the ranks on the same host, by host name
  int local_size = 1;
  std::string host;
  bool mpi = false;  // MPI is initialised (launched by mpirun / srun, or STRATA_MPI=1)
};

// The process's world. The first call initialises MPI when a launcher started us (or
// STRATA_MPI=1 forces a singleton init; STRATA_MPI=0 forbids MPI) and finalises it at exit;
// a plain one-process run touches no MPI at all. Thread-safe. A rank that exits with a
// non-zero status (return from main, exit()) after MPI init ends the whole job.
const World& world();

// True once world() has found more than one rank; never initialises MPI itself.
bool in_parallel_job();

// Prints "strata: rank R on HOST: message" once, then ends the whole job: MPI_Abort when more
// than one rank runs (a rank that only returned would leave the others waiting on it), else
// exit(code).
[[noreturn]] void abort_job(int code, const std::string& message);

// For main's catch blocks: ends the job as abort_job does when in_parallel_job(), else returns.
void abort_job_if_parallel(int code, const std::string& message);

// Held around every MPI call after init, so that MPI_THREAD_SERIALIZED suffices.
std::mutex& mpi_mutex();

// Every rank's `mine`, in rank order (a collective; just {mine} without MPI).
std::vector<std::string> allgather_strings(const World& world, const std::string& mine);

}  // namespace strata::parallel
