// The one place that knows which transports this build has.
#include <sstream>

#include "core/error.h"
#include "parallel/link_transport.h"
#include "parallel/transport.h"

#if STRATA_HAVE_NCCL
#include "parallel/nccl_transport.h"
#endif

namespace strata::parallel {
namespace {

constexpr bool kHaveNccl = STRATA_HAVE_NCCL;

// The rank sharing r's GPU, or -1.
int gpu_sharer(const std::vector<RankDevice>& ranks, int r) {
  for (int other = 0; other < static_cast<int>(ranks.size()); ++other) {
    if (other != r && ranks[other].gpu >= 0 && ranks[other].gpu == ranks[r].gpu &&
        ranks[other].host == ranks[r].host)
      return other;
  }
  return -1;
}

bool owns_gpu(const std::vector<RankDevice>& ranks, int r) {
  return ranks[r].gpu >= 0 && gpu_sharer(ranks, r) < 0;
}

#if STRATA_HAVE_NCCL
class NcclLinkAdapter final : public Link {
 public:
  NcclLinkAdapter(int gpu, const std::string& id, bool sender, int peer, double timeout_s)
      : link_(gpu, id, sender, peer, timeout_s) {}
  void send(const void* data, size_t bytes) override { link_.send(data, bytes); }
  void recv(void* data, size_t bytes) override { link_.recv(data, bytes); }
  void abort() override { link_.abort(); }

 private:
  NcclLink link_;
};

LinkFactory nccl_link_factory(int gpu) {
  return {[] { return nccl_unique_id(); },
          [gpu](const std::string& id, int peer, bool sender,
                double timeout_s) -> std::unique_ptr<Link> {
            return std::make_unique<NcclLinkAdapter>(gpu, id, sender, peer, timeout_s);
          }};
}
#endif

}  // namespace

std::vector<bool> nccl_peers(const std::string& choice, const std::vector<RankDevice>& ranks,
                             int me, bool have_nccl) {
  const int n = static_cast<int>(ranks.size());
  STRATA_CHECK(me >= 0 && me < n, "rank ", me, " outside 0..", n - 1);
  std::vector<bool> peers(n, false);
  if (choice == "mpi") return peers;
  if (choice == "nccl") {
    STRATA_INPUT_CHECK(have_nccl,
                       "--transport nccl: this build has no NCCL (configure with STRATA_NCCL=ON "
                       "where NCCL is installed); use --transport mpi or auto");
    for (int r = 0; r < n; ++r) {
      STRATA_INPUT_CHECK(ranks[r].gpu >= 0, "--transport nccl: rank ", r, " on ", ranks[r].host,
                         " has no GPU; use --transport mpi or auto");
      const int sharer = gpu_sharer(ranks, r);
      STRATA_INPUT_CHECK(sharer < 0, "--transport nccl: ranks ", std::min(r, sharer), " and ",
                         std::max(r, sharer), " share GPU ", ranks[r].gpu, " on ", ranks[r].host,
                         " (NCCL needs one GPU per rank); use --transport mpi or auto");
    }
    for (int p = 0; p < n; ++p) peers[p] = p != me;
    return peers;
  }
  STRATA_INPUT_CHECK(choice == "auto", "--transport must be mpi, nccl or auto, got '", choice, "'");
  if (!have_nccl || !owns_gpu(ranks, me)) return peers;
  for (int p = 0; p < n; ++p) peers[p] = p != me && owns_gpu(ranks, p);
  return peers;
}

std::unique_ptr<Transport> choose_transport(const std::string& choice, const World& world,
                                            int gpu) {
  // Checks the choice on every rank alike, before any collective.
  const std::vector<RankDevice> me_only = {{world.host, gpu}};
  if (world.size == 1) {
    nccl_peers(choice, me_only, 0, kHaveNccl);
    return std::move(make_in_process_transports(1)[0]);
  }
  STRATA_INPUT_CHECK(choice == "mpi" || choice == "nccl" || choice == "auto",
                     "--transport must be mpi, nccl or auto, got '", choice, "'");
  std::vector<RankDevice> ranks;
  for (const std::string& entry :
       allgather_strings(world, std::to_string(gpu) + " " + world.host)) {
    std::istringstream in(entry);
    RankDevice device;
    in >> device.gpu;
    std::getline(in >> std::ws, device.host);
    ranks.push_back(device);
  }
  const std::vector<bool> peers = nccl_peers(choice, ranks, world.rank, kHaveNccl);
  auto base = make_mpi_transport(world);
  bool any = false;
  for (bool p : peers) any |= p;
  if (!any) return base;
#if STRATA_HAVE_NCCL
  return make_link_transport(std::move(base), nccl_link_factory(gpu), peers, "nccl");
#else
  STRATA_CHECK(false, "NCCL chosen in a build without it");
#endif
}

}  // namespace strata::parallel
