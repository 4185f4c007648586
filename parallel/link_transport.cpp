#include "parallel/link_transport.h"

#include <deque>
#include <map>
#include <thread>

#include "core/error.h"

namespace strata::parallel {
namespace {

// The base transport carries link ids on this tag; user traffic to link peers never uses the
// base, so it cannot collide.
constexpr int kSetupTag = kMaxTag;

struct LinkOp {
  bool send;
  char* data;
  size_t bytes;
  std::shared_ptr<RequestState> state;
};

// Opens one direction's link with `peer`: the sender makes the id and sends it over the base.
std::unique_ptr<Link> open_link(Transport& base, const LinkFactory& factory, int peer,
                                bool sender) {
  std::string id;
  if (sender) {
    id = factory.make_id();
    const uint64_t length = id.size();
    base.send(peer, kSetupTag, &length, sizeof(length));
    base.send(peer, kSetupTag, id.data(), id.size());
  } else {
    uint64_t length = 0;
    base.recv(peer, kSetupTag, &length, sizeof(length));
    STRATA_CHECK(length < (1u << 20), "link id of ", length, " bytes from rank ", peer);
    id.resize(length);
    base.recv(peer, kSetupTag, id.data(), id.size());
  }
  return factory.open(id, peer, sender, base.timeout_s());
}

// One direction to one peer over an open link: a thread that runs ops in order.
class LinkWorker {
 public:
  explicit LinkWorker(std::unique_ptr<Link> link) : link_(std::move(link)) {
    thread_ = std::thread([this] { loop(); });
  }

  ~LinkWorker() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
      link_->abort();
    }
    cv_.notify_all();
    thread_.join();
  }

  void push(LinkOp op) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(std::move(op));
    }
    cv_.notify_one();
  }

 private:
  void loop() {
    for (;;) {
      LinkOp op;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
        if (stop_) {
          for (auto& left : queue_) left.state->fail("the transport was closed");
          return;
        }
        op = std::move(queue_.front());
        queue_.pop_front();
      }
      if (op.state->abandoned()) {
        op.state->fail("abandoned");
        continue;
      }
      try {
        if (op.send)
          link_->send(op.data, op.bytes);
        else
          link_->recv(op.data, op.bytes);
        op.state->complete();
      } catch (const std::exception& e) {
        op.state->fail(e.what());
      }
    }
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<LinkOp> queue_;
  bool stop_ = false;
  std::unique_ptr<Link> link_;
  std::thread thread_;
};

class LinkTransport final : public Transport {
 public:
  LinkTransport(std::unique_ptr<Transport> base, LinkFactory factory, std::vector<bool> peers,
                const char* name)
      : base_(std::move(base)),
        factory_(std::move(factory)),
        peers_(std::move(peers)),
        name_(name) {
    STRATA_CHECK(static_cast<int>(peers_.size()) == base_->size(), "link peers: ", peers_.size(),
                 " flags for ", base_->size(), " ranks");
    set_timeout_s(base_->timeout_s());
    open_all();
  }

  ~LinkTransport() override { workers_.clear(); }

  int rank() const override { return base_->rank(); }
  int size() const override { return base_->size(); }
  const char* name() const override { return name_; }
  void barrier() override { base_->barrier(); }

  Request isend(int peer, int tag, const void* data, size_t bytes) override {
    if (!peers_.at(peer)) return base_->isend(peer, tag, data, bytes);
    return enqueue(true, peer, const_cast<void*>(data), bytes,
                   describe("send to rank ", peer, tag, bytes));
  }

  Request irecv(int peer, int tag, void* data, size_t bytes) override {
    if (!peers_.at(peer)) return base_->irecv(peer, tag, data, bytes);
    return enqueue(false, peer, data, bytes, describe("recv from rank ", peer, tag, bytes));
  }

 private:
  // Every link up front, then one barrier: no communicator is created while another one's
  // transfer runs, and a peer that never joins ends the job here, named. Each rank opens its
  // pairs (lo, hi) in increasing order, the lo -> hi direction first, so every rank waits only
  // on pairs all of whose earlier pairs are done.
  void open_all() {
    const int me = base_->rank();
    for (int peer = 0; peer < base_->size(); ++peer) {
      if (!peers_[static_cast<size_t>(peer)] || peer == me) continue;
      for (bool send : {me<peer, me> peer}) {
        workers_[{peer, send}] =
            std::make_unique<LinkWorker>(open_link(*base_, factory_, peer, send));
      }
    }
    base_->barrier();
  }

  Request enqueue(bool send, int peer, void* data, size_t bytes, std::string what) {
    auto state = std::make_shared<RequestState>(std::move(what), timeout_s());
    const auto it = workers_.find({peer, send});
    STRATA_CHECK(it != workers_.end(), "no link ", send ? "to" : "from", " rank ", peer);
    it->second->push({send, static_cast<char*>(data), bytes, state});
    return Request(std::move(state));
  }

  std::unique_ptr<Transport> base_;
  const LinkFactory factory_;
  const std::vector<bool> peers_;
  const char* name_;
  std::map<std::pair<int, bool>, std::unique_ptr<LinkWorker>> workers_;  // fixed once open
};

}  // namespace

std::unique_ptr<Transport> make_link_transport(std::unique_ptr<Transport> base, LinkFactory factory,
                                               std::vector<bool> link_peers, const char* name) {
  return std::make_unique<LinkTransport>(std::move(base), std::move(factory), std::move(link_peers),
                                         name);
}

}  // namespace strata::parallel
