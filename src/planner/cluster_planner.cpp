#include "planner/cluster_planner.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <tuple>

#include "core/error.h"
#include "core/units.h"
#include "planner/cost_model.h"
#include "planner/planner.h"
#include "runtime/stages.h"

namespace strata {
namespace {

constexpr double kTieShare = 0.005;  // throughputs this close: the smaller block wins
const int64_t kBatchSizes[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};
// GPU batches per rank: at least one per rank keeps every stage busy.
const int64_t kBatchesPerRank[] = {1, 2, 3, 4, 6, 8};
// Slice sizes the single-rank LP is solved for: its placement for a slice of n layers is the
// candidate that suits ranks holding about n.
const int64_t kSliceSizes[] = {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128};

using TierBytes = std::array<double, kNumTiers>;

// What a node may use: absolute caps, and on the CPU backend one bound on gpu + cpu together
// (both tiers are host memory there, and cpu_mem is the rank's host memory).
struct NodeCaps {
  TierCaps caps;
  uint64_t host_bytes = 0;
  bool allow_disk = true;
};

NodeCaps caps_of(const ClusterNode& node) {
  PlanRequest r;
  r.caps = node.caps;
  r.allow_disk = !node.no_disk;
  NodeCaps c;
  c.caps = effective_caps(node.hardware, r);
  c.allow_disk = !node.no_disk && c.caps.disk_bytes > 0;
  if (!node.hardware.has_gpu) {
    c.host_bytes = c.caps.cpu_bytes;
    if (node.caps.gpu_bytes == 0) c.caps.gpu_bytes = c.caps.cpu_bytes;
  }
  return c;
}

ModelConfig with_layers(const ModelConfig& config, int64_t n_layers) {
  ModelConfig c = config;
  c.n_layers = n_layers;
  return c;
}

// A policy's cost-model figures, apart from the rank's position: seconds for the workload per
// decoder layer and for the embedding and head stages, and bytes per tier.
struct PolicyFigures {
  Policy policy;
  double prefill_layer_s = 0, decode_layer_s = 0;
  double prefill_embed_s = 0, decode_embed_s = 0;
  double prefill_head_s = 0, decode_head_s = 0;
  TierBytes layer_bytes{}, base_bytes{}, embed_bytes{}, head_bytes{};

  TierBytes bytes(int64_t n_layers, bool embed, bool head) const {
    TierBytes b{};
    for (int t = 0; t < kNumTiers; ++t) {
      b[t] = base_bytes[t] + static_cast<double>(n_layers) * layer_bytes[t] +
             (embed ? embed_bytes[t] : 0) + (head ? head_bytes[t] : 0);
    }
    return b;
  }
};

PolicyFigures figures_of(const HardwareProfile& hw, const ModelConfig& config, const Policy& policy,
                         int64_t prompt_len, int64_t gen_len) {
  PolicyFigures f;
  f.policy = policy;
  const CostShape shape = CostShape::of(policy, prompt_len, gen_len);
  const Placement x = Placement::of(policy);
  const double layers = static_cast<double>(config.n_layers);
  for (const StageCost& sc : stage_costs(hw, config, shape)) {
    double step = 0;
    for (const CostTerm& term : sc.terms) step = std::max(step, term.seconds().at(x));
    const bool prefill = sc.phase == Phase::kPrefill;
    if (sc.stage == "embed") {
      (prefill ? f.prefill_embed_s : f.decode_embed_s) += sc.repeats * step;
    } else if (sc.stage == "head") {
      (prefill ? f.prefill_head_s : f.decode_head_s) += sc.repeats * step;
    } else {  // decoder, or its attention and MLP halves: `repeats` counts every layer
      (prefill ? f.prefill_layer_s : f.decode_layer_s) += sc.repeats / layers * step;
    }
  }
  // Bytes per layer from the memory model at one and two layers; the embedding's and head's
  // weights from their sizes at the per-element bytes of each tier (the weight fraction of tier
  // t is placement variable t).
  const Residency r{policy.weights.gpu_percent >= 100, policy.cache.gpu_percent >= 100,
                    policy.activations.gpu_percent >= 100};
  const MemoryModel one = memory_model(hw, with_layers(config, 1), shape, r);
  const MemoryModel two = memory_model(hw, with_layers(config, 2), shape, r);
  const auto layouts = stage_layouts(with_layers(config, 1), false);
  const double layer_numel = static_cast<double>(layouts[1].numel);
  for (int t = 0; t < kNumTiers; ++t) {
    f.layer_bytes[t] = two.tier[t].at(x) - one.tier[t].at(x);
    const double per_element =
        (two.tier[t].coef[static_cast<size_t>(t)] - one.tier[t].coef[static_cast<size_t>(t)]) /
        layer_numel * x.f[static_cast<size_t>(t)];
    f.embed_bytes[t] = static_cast<double>(layouts.front().numel) * per_element;
    f.head_bytes[t] = static_cast<double>(layouts.back().numel) * per_element;
    f.base_bytes[t] = one.tier[t].at(x) - f.layer_bytes[t] - f.embed_bytes[t] - f.head_bytes[t];
  }
  return f;
}

// The most layers a rank at this position can hold under the policy, at most `limit`.
int64_t max_layers(const PolicyFigures& f, const NodeCaps& caps, bool embed, bool head,
                   int64_t limit) {
  const TierBytes fixed = f.bytes(0, embed, head);
  const double cap[kNumTiers] = {static_cast<double>(caps.caps.gpu_bytes),
                                 static_cast<double>(caps.caps.cpu_bytes),
                                 caps.allow_disk ? static_cast<double>(caps.caps.disk_bytes) : 0};
  double most = static_cast<double>(limit);
  auto bound = [&](double room, double per_layer) {
    if (room < -1) {
      most = -1;  // the fixed part alone does not fit
    } else if (per_layer > 0) {
      most = std::min(most, std::floor((room + 1) / per_layer));
    }
  };
  for (int t = 0; t < kNumTiers; ++t) bound(cap[t] - fixed[t], f.layer_bytes[t]);
  if (caps.host_bytes > 0) {
    bound(static_cast<double>(caps.host_bytes) - fixed[0] - fixed[1],
          f.layer_bytes[0] + f.layer_bytes[1]);
  }
  return std::max<int64_t>(0, static_cast<int64_t>(most));
}

struct Shape {
  int64_t gpu_batch_size, num_gpu_batches;
  bool operator<(const Shape& o) const {
    return std::tie(gpu_batch_size, num_gpu_batches) <
           std::tie(o.gpu_batch_size, o.num_gpu_batches);
  }
};

// Candidate policies per kind of node (same profile, device and caps) and shape, computed once.
class CandidateCache {
 public:
  CandidateCache(const Cluster& cluster, const ModelConfig& config, const ClusterPlanRequest& req,
                 std::vector<int64_t> slices)
      : config_(config), request_(req), slices_(std::move(slices)) {
    std::map<std::string, int> kinds;
    for (const ClusterNode& node : cluster.ranks) {
      const std::string key = node.hardware.to_json().dump() + node_device_name(node.device) +
                              std::to_string(node.caps.gpu_bytes) + "/" +
                              std::to_string(node.caps.cpu_bytes) + "/" +
                              std::to_string(node.caps.disk_bytes) + (node.no_disk ? "n" : "");
      const auto [it, added] = kinds.emplace(key, static_cast<int>(kinds.size()));
      if (added) nodes_.push_back(&node);
      kind_of_rank_.push_back(it->second);
    }
  }

  int kind_of(int64_t rank) const { return kind_of_rank_[static_cast<size_t>(rank)]; }
  const ClusterNode& node_of(int64_t rank) const {
    return *nodes_[static_cast<size_t>(kind_of(rank))];
  }

  const std::vector<PolicyFigures>& get(int kind, const Shape& shape) {
    auto& slot = cache_[{kind, shape}];
    if (slot.computed) return slot.figures;
    slot.computed = true;
    const ClusterNode& node = *nodes_[static_cast<size_t>(kind)];
    const NodeCaps caps = caps_of(node);
    CostShape cs;
    cs.prompt_len = request_.prompt_len;
    cs.gen_len = request_.gen_len;
    cs.gpu_batch_size = shape.gpu_batch_size;
    cs.num_gpu_batches = shape.num_gpu_batches;
    cs.compress_weight = request_.compress_weight;
    cs.compress_cache = request_.compress_cache;
    std::map<std::string, bool> seen;
    for (int64_t n : slices_) {
      const auto policy = best_policy_for_shape(node.hardware, with_layers(config_, n), cs,
                                                caps.caps, caps.host_bytes, caps.allow_disk);
      if (!policy) break;  // a larger slice needs more memory still
      if (seen.emplace(policy->to_json().dump(), true).second) {
        slot.figures.push_back(
            figures_of(node.hardware, config_, *policy, request_.prompt_len, request_.gen_len));
      }
    }
    return slot.figures;
  }

 private:
  struct Slot {
    bool computed = false;
    std::vector<PolicyFigures> figures;
  };
  const ModelConfig& config_;
  const ClusterPlanRequest& request_;
  std::vector<int64_t> slices_;
  std::vector<const ClusterNode*> nodes_;
  std::vector<int> kind_of_rank_;
  std::map<std::pair<int, Shape>, Slot> cache_;
};

struct ShapeResult {
  Shape shape;
  SplitSolution split;
  std::vector<const PolicyFigures*> figures;  // per rank
  double throughput = 0;
};

// The MILP for one shape: each rank's candidates at its position, dominated ones dropped.
std::optional<ShapeResult> solve_shape(CandidateCache& cache, const Shape& shape, int64_t n_layers,
                                       int64_t n_ranks, const ClusterPlanRequest& request) {
  std::vector<std::vector<StageCandidate>> cands(static_cast<size_t>(n_ranks));
  std::vector<std::vector<const PolicyFigures*>> origin(static_cast<size_t>(n_ranks));
  for (int64_t r = 0; r < n_ranks; ++r) {
    const bool embed = r == 0, head = r == n_ranks - 1;
    const NodeCaps caps = caps_of(cache.node_of(r));
    std::vector<StageCandidate> all;
    const auto& figures = cache.get(cache.kind_of(r), shape);
    for (const PolicyFigures& f : figures) {
      StageCandidate c;
      c.prefill_per_layer_s = f.prefill_layer_s;
      c.decode_per_layer_s = f.decode_layer_s;
      c.prefill_extra_s = (embed ? f.prefill_embed_s : 0) + (head ? f.prefill_head_s : 0);
      c.decode_extra_s = (embed ? f.decode_embed_s : 0) + (head ? f.decode_head_s : 0);
      c.max_layers = max_layers(f, caps, embed, head, n_layers);
      all.push_back(c);
    }
    for (size_t i = 0; i < all.size(); ++i) {
      const StageCandidate& a = all[i];
      bool dominated = a.max_layers < 1;
      for (size_t j = 0; j < all.size() && !dominated; ++j) {
        const StageCandidate& b = all[j];
        const bool no_worse = b.prefill_per_layer_s <= a.prefill_per_layer_s &&
                              b.decode_per_layer_s <= a.decode_per_layer_s &&
                              b.prefill_extra_s <= a.prefill_extra_s &&
                              b.decode_extra_s <= a.decode_extra_s && b.max_layers >= a.max_layers;
        dominated = no_worse &&
                    (j < i || b.prefill_per_layer_s < a.prefill_per_layer_s ||
                     b.decode_per_layer_s < a.decode_per_layer_s || b.max_layers > a.max_layers);
      }
      if (dominated) continue;
      cands[static_cast<size_t>(r)].push_back(a);
      origin[static_cast<size_t>(r)].push_back(&figures[i]);
    }
    if (cands[static_cast<size_t>(r)].empty()) return std::nullopt;
  }
  auto split = solve_split(cands, n_layers, request.layers_per_rank);
  if (!split) return std::nullopt;
  ShapeResult out{shape, *split, {}, 0};
  for (int64_t r = 0; r < n_ranks; ++r) {
    out.figures.push_back(
        origin[static_cast<size_t>(r)][static_cast<size_t>(split->choice[static_cast<size_t>(r)])]);
  }
  const double block = static_cast<double>(shape.gpu_batch_size * shape.num_gpu_batches);
  out.throughput =
      block * static_cast<double>(request.gen_len) / (split->prefill_s + split->decode_s);
  return out;
}

std::vector<int64_t> slice_sizes(int64_t n_layers, int64_t n_ranks,
                                 const std::vector<int64_t>& hand) {
  std::vector<int64_t> s;
  for (int64_t n : kSliceSizes) {
    if (n <= n_layers - n_ranks + 1) s.push_back(n);
  }
  for (int64_t n : hand) s.push_back(n);
  s.push_back(n_layers / n_ranks);
  s.push_back((n_layers + n_ranks - 1) / n_ranks);
  std::sort(s.begin(), s.end());
  s.erase(std::unique(s.begin(), s.end()), s.end());
  return s;
}

// The request against the cluster and the model, with the messages the flags' checks give.
void check_cluster_request(const Cluster& cluster, const ModelConfig& config,
                           const ClusterPlanRequest& request) {
  const int64_t n_ranks = cluster.n_ranks();
  const int64_t n_layers = config.n_layers;
  if (request.n_ranks > 0) check_rank_count(cluster, request.n_ranks);
  STRATA_INPUT_CHECK(n_ranks <= n_layers, cluster.source, " has ", n_ranks,
                     " ranks but the model has ", n_layers,
                     " layers: each rank needs at least one layer");
  if (!request.layers_per_rank.empty()) {
    std::string text;
    for (int64_t v : request.layers_per_rank) text += (text.empty() ? "" : ",") + std::to_string(v);
    parse_layer_split(text, n_layers, n_ranks);  // the same checks and messages
  }
  STRATA_INPUT_CHECK(request.prompt_len >= 1 && request.gen_len >= 1,
                     "--prompt-len and --gen-len must be >= 1");
  STRATA_INPUT_CHECK(request.prompt_len + request.gen_len <= config.max_positions, "--prompt-len ",
                     request.prompt_len, " plus --gen-len ", request.gen_len,
                     " is longer than the model allows (max_position_embeddings ",
                     config.max_positions, ")");
  STRATA_INPUT_CHECK(request.gpu_batch_size >= 0, "--gpu-batch-size must be >= 1");
  STRATA_INPUT_CHECK(request.num_gpu_batches == 0 || request.num_gpu_batches >= n_ranks,
                     "--num-gpu-batches ", request.num_gpu_batches, " is fewer than the ", n_ranks,
                     " ranks: a pipeline needs a GPU batch in flight per stage");
}

// The shapes searched: the request's, or every GPU batch size and a few GPU batches per rank.
struct ShapeGrid {
  std::vector<int64_t> sizes, counts;
};

ShapeGrid shape_grid(const ClusterPlanRequest& request, int64_t n_ranks) {
  ShapeGrid grid;
  if (request.gpu_batch_size > 0) {
    grid.sizes = {request.gpu_batch_size};
  } else {
    grid.sizes.assign(std::begin(kBatchSizes), std::end(kBatchSizes));
  }
  if (request.num_gpu_batches > 0) {
    grid.counts = {request.num_gpu_batches};
  } else {
    for (int64_t k : kBatchesPerRank) grid.counts.push_back(k * n_ranks);
  }
  return grid;
}

// Higher throughput wins; within kTieShare, the smaller block.
bool better(const ShapeResult& result, const std::optional<ShapeResult>& best) {
  const auto block = [](const ShapeResult& s) {
    return s.shape.gpu_batch_size * s.shape.num_gpu_batches;
  };
  return !best || result.throughput > best->throughput * (1 + kTieShare) ||
         (result.throughput >= best->throughput * (1 - kTieShare) && block(result) < block(*best));
}

struct SearchResult {
  ShapeResult best;
  int64_t milp_count = 0;
};

// The best shape of the grid; an input error when none fits. Its figures point into `cache`.
SearchResult search_shapes(CandidateCache& cache, const Cluster& cluster, const ModelConfig& config,
                           const ClusterPlanRequest& request) {
  const int64_t n_ranks = cluster.n_ranks();
  const int64_t n_layers = config.n_layers;
  const ShapeGrid grid = shape_grid(request, n_ranks);
  std::optional<ShapeResult> best;
  int64_t milp_count = 0;
  for (int64_t gbs : grid.sizes) {
    bool any_fit = false;
    for (int64_t nb : grid.counts) {
      auto result = solve_shape(cache, {gbs, nb}, n_layers, n_ranks, request);
      if (!result) break;  // more batches only need more memory
      any_fit = true;
      milp_count += result->split.milp_count;
      if (better(*result, best)) best = std::move(result);
    }
    if (!any_fit && best) break;  // larger GPU batches need more memory still
  }
  STRATA_INPUT_CHECK(best.has_value(), "no ",
                     request.layers_per_rank.empty() ? "layer split" : "policy for this split",
                     " fits ", cluster.source, ": the ranks' gpu, cpu and disk caps cannot hold ",
                     request.layers_per_rank.empty() ? "the model's " : "their ", n_layers,
                     " layers with the KV cache of ", request.prompt_len, " + ", request.gen_len,
                     " tokens", request.gpu_batch_size > 0 ? " at this --gpu-batch-size" : "");
  return {std::move(*best), milp_count};
}

// A rank's place in the pipeline.
struct RankPosition {
  int64_t rank = 0;
  int64_t first_layer = 0;
  int64_t n_layers = 0;
  bool embed = false;
  bool head = false;
};

RankPlan rank_plan(const ClusterNode& node, const PolicyFigures& f, const RankPosition& at) {
  RankPlan rp;
  rp.rank = at.rank;
  rp.node = node.name;
  rp.device = node.device;
  rp.first_layer = at.first_layer;
  rp.n_layers = at.n_layers;
  rp.embed = at.embed;
  rp.head = at.head;
  rp.policy = f.policy;
  const double n = static_cast<double>(rp.n_layers);
  rp.prefill_s =
      n * f.prefill_layer_s + (rp.embed ? f.prefill_embed_s : 0) + (rp.head ? f.prefill_head_s : 0);
  rp.decode_s =
      n * f.decode_layer_s + (rp.embed ? f.decode_embed_s : 0) + (rp.head ? f.decode_head_s : 0);
  const TierBytes bytes = f.bytes(rp.n_layers, rp.embed, rp.head);
  const NodeCaps caps = caps_of(node);
  const uint64_t cap[kNumTiers] = {caps.caps.gpu_bytes, caps.caps.cpu_bytes,
                                   caps.allow_disk ? caps.caps.disk_bytes : 0};
  for (int t = 0; t < kNumTiers; ++t) {
    rp.peak_bytes[t] = static_cast<uint64_t>(std::ceil(std::max(0.0, bytes[t])));
    rp.cap_bytes[t] = cap[t];
  }
  return rp;
}

// The pipeline's figures from its ranks': the slowest stage sets each phase's pace.
void add_totals(ClusterPlan& plan) {
  for (const RankPlan& r : plan.ranks) {
    if (r.decode_s > plan.decode_s) plan.decode_s = r.decode_s, plan.bottleneck_rank = r.rank;
    if (r.prefill_s > plan.prefill_s) {
      plan.prefill_s = r.prefill_s, plan.prefill_bottleneck_rank = r.rank;
    }
  }
  const double block = static_cast<double>(plan.effective_batch());
  plan.prefill_tokens_per_s = block * static_cast<double>(plan.prompt_len) / plan.prefill_s;
  if (plan.gen_len > 1) {
    plan.decode_tokens_per_s = block * static_cast<double>(plan.gen_len - 1) / plan.decode_s;
  }
  plan.generation_tokens_per_s =
      block * static_cast<double>(plan.gen_len) / (plan.prefill_s + plan.decode_s);
}

}  // namespace

std::vector<int64_t> ClusterPlan::layers_per_rank() const {
  std::vector<int64_t> out;
  for (const RankPlan& r : ranks) out.push_back(r.n_layers);
  return out;
}

std::string ClusterPlan::split_text() const {
  std::string text;
  for (const RankPlan& r : ranks) text += (text.empty() ? "" : ",") + std::to_string(r.n_layers);
  return text;
}

nlohmann::json ClusterPlan::to_json() const {
  nlohmann::json ranks_json = nlohmann::json::array();
  for (const RankPlan& r : ranks) {
    nlohmann::json peak, caps;
    for (int t = 0; t < kNumTiers; ++t) {
      peak[tier_name(static_cast<Tier>(t))] = r.peak_bytes[t];
      caps[tier_name(static_cast<Tier>(t))] = r.cap_bytes[t];
    }
    ranks_json.push_back({{"rank", r.rank},
                          {"node", r.node},
                          {"device", node_device_name(r.device)},
                          {"first_layer", r.first_layer},
                          {"n_layers", r.n_layers},
                          {"embed", r.embed},
                          {"head", r.head},
                          {"policy", r.policy.to_json()},
                          {"prefill_s", r.prefill_s},
                          {"decode_s", r.decode_s},
                          {"stage_s", r.stage_s()},
                          {"peak_bytes", peak},
                          {"cap_bytes", caps}});
  }
  return {{"layers_per_rank", layers_per_rank()},
          {"hand_split", hand_split},
          {"gpu_batch_size", gpu_batch_size},
          {"num_gpu_batches", num_gpu_batches},
          {"prompt_len", prompt_len},
          {"gen_len", gen_len},
          {"ranks", ranks_json},
          {"predicted",
           {{"prefill_s", prefill_s},
            {"decode_s", decode_s},
            {"prefill_tokens_per_s", prefill_tokens_per_s},
            {"decode_tokens_per_s", decode_tokens_per_s},
            {"generation_tokens_per_s", generation_tokens_per_s},
            {"bottleneck_rank", bottleneck_rank},
            {"prefill_bottleneck_rank", prefill_bottleneck_rank}}},
          {"milp_count", milp_count},
          {"solve_s", solve_s}};
}

ClusterPlan plan_cluster(const Cluster& cluster, const ModelConfig& config,
                         const ClusterPlanRequest& request) {
  const auto begin = std::chrono::steady_clock::now();
  check_cluster_request(cluster, config, request);
  const int64_t n_ranks = cluster.n_ranks();
  CandidateCache cache(cluster, config, request,
                       slice_sizes(config.n_layers, n_ranks, request.layers_per_rank));
  const SearchResult found = search_shapes(cache, cluster, config, request);
  const ShapeResult& best = found.best;

  ClusterPlan plan;
  plan.gpu_batch_size = best.shape.gpu_batch_size;
  plan.num_gpu_batches = best.shape.num_gpu_batches;
  plan.prompt_len = request.prompt_len;
  plan.gen_len = request.gen_len;
  plan.hand_split = !request.layers_per_rank.empty();
  int64_t first = 0;
  for (int64_t r = 0; r < n_ranks; ++r) {
    const RankPosition at{r, first, best.split.layers[static_cast<size_t>(r)], r == 0,
                          r == n_ranks - 1};
    plan.ranks.push_back(rank_plan(cluster.ranks[static_cast<size_t>(r)],
                                   *best.figures[static_cast<size_t>(r)], at));
    first += at.n_layers;
  }
  add_totals(plan);
  plan.milp_count = found.milp_count;
  plan.solve_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  return plan;
}

}  // namespace strata
