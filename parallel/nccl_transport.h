// One direction of NCCL point-to-point traffic between two ranks, behind a plain C++ face (no
// CUDA or NCCL header leaks from here). parallel/link_transport.h drives it.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace strata::parallel {

// The bytes of a fresh ncclUniqueId, to be sent to the other end.
std::string nccl_unique_id();

class NcclLink {
 public:
  // Joins the 2-rank communicator named by unique_id on `device` (the sender is its rank 0);
  // returns once the peer (job rank peer_rank) has joined, or throws after timeout_s naming it.
  NcclLink(int device, const std::string& unique_id, bool sender, int peer_rank, double timeout_s);
  ~NcclLink();
  NcclLink(const NcclLink&) = delete;
  NcclLink& operator=(const NcclLink&) = delete;

  // Host buffers, staged through a device buffer that grows (stream-ordered) to the largest
  // message (this Open MPI is not CUDA-aware, so the engine's blocks arrive in host memory).
  void send(const void* host, size_t bytes);
  void recv(void* host, size_t bytes);
  // Thread-safe: a blocked send or recv aborts the communicator and throws.
  void abort();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace strata::parallel
