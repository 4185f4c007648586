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

// One direction to one peer: a thread that opens the link on first use, then runs ops in order.
class LinkWorker {
 public:
  LinkWorker(Transport& base, const LinkFactory& factory, int peer, bool sender)
      : base_(base), factory_(factory), peer_(peer), sender_(sender) {
    thread_ = std::thread([this] { loop(); });
  }

  ~LinkWorker() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
      if (link_) link_->abort();
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
  void open() {
    std::string id;
    if (sender_) {
      id = factory_.make_id();
      const uint64_t length = id.size();
      base_.send(peer_, kSetupTag, &length, sizeof(length));
      base_.send(peer_, kSetupTag, id.data(), id.size());
    } else {
      uint64_t length = 0;
      base_.recv(peer_, kSetupTag, &length, sizeof(length));
      STRATA_CHECK(length < (1u << 20), "link id of ", length, " bytes from rank ", peer_);
      id.resize(length);
      base_.recv(peer_, kSetupTag, id.data(), id.size());
    }
    auto link = factory_.open(id, peer_, sender_);
    std::lock_guard<std::mutex> lock(mutex_);
    link_ = std::move(link);
    if (stop_) link_->abort();
  }

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
        if (!link_) open();
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

  Transport& base_;
  const LinkFactory& factory_;
  const int peer_;
  const bool sender_;
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
  Request enqueue(bool send, int peer, void* data, size_t bytes, std::string what) {
    auto state = std::make_shared<RequestState>(std::move(what), timeout_s());
    LinkWorker* worker;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto& slot = workers_[{peer, send}];
      if (!slot) slot = std::make_unique<LinkWorker>(*base_, factory_, peer, send);
      worker = slot.get();
    }
    worker->push({send, static_cast<char*>(data), bytes, state});
    return Request(std::move(state));
  }

  std::unique_ptr<Transport> base_;
  const LinkFactory factory_;
  const std::vector<bool> peers_;
  const char* name_;
  std::mutex mutex_;
  std::map<std::pair<int, bool>, std::unique_ptr<LinkWorker>> workers_;
};

}  // namespace

std::unique_ptr<Transport> make_link_transport(std::unique_ptr<Transport> base, LinkFactory factory,
                                               std::vector<bool> link_peers, const char* name) {
  return std::make_unique<LinkTransport>(std::move(base), std::move(factory), std::move(link_peers),
                                         name);
}

}  // namespace strata::parallel
