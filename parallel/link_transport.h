// A transport that sends to some peers over dedicated links (one 2-rank NCCL communicator per
// direction) and to the rest, plus barriers and link set-up, over a base transport (MPI).
//
// One communicator per direction, each driven by its own thread, because NCCL point-to-point
// calls block their stream until the peer posts the matching call: a send and a receive
// queued on one stream (or one communicator) deadlock in a ring. Links carry no tags: to one
// peer, sends and receives must be posted in the same order on both ends.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "parallel/transport.h"

namespace strata::parallel {

// One direction to one peer; send and recv block until the transfer is complete.
class Link {
 public:
  virtual ~Link() = default;
  virtual void send(const void* data, size_t bytes) = 0;
  virtual void recv(void* data, size_t bytes) = 0;
  // From another thread: makes a blocked send or recv throw (closing while a peer is gone).
  virtual void abort() = 0;
};

struct LinkFactory {
  // On the sending side: a fresh rendezvous id (an ncclUniqueId's bytes).
  std::function<std::string()> make_id;
  // Both ends call it with the same id; it returns once both have joined, or throws after
  // timeout_s naming the peer.
  std::function<std::unique_ptr<Link>(const std::string& id, int peer, bool sender,
                                      double timeout_s)>
      open;
};

// link_peers[p]: traffic with rank p goes over links. Every rank calls it at the same point: it
// opens all of its links there (the base carries each link's id from the sender to the
// receiver), then meets the others at a barrier.
std::unique_ptr<Transport> make_link_transport(std::unique_ptr<Transport> base, LinkFactory factory,
                                               std::vector<bool> link_peers, const char* name);

}  // namespace strata::parallel
