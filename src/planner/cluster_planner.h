// Layer split across pipeline ranks: a MILP in GLPK picks integer layer counts per rank (each
// >= 1, summing to the model's layers) and each rank's policy, minimising the slowest stage.
//
// Per rank, a few candidate policies come from the single-rank LP solved for slices of several
// sizes; the cost model gives each candidate's seconds per decoder layer (prefill and decode),
// its extra seconds for the embedding (rank 0) or the final norm and LM head (last rank), and,
// from its bytes per layer against the node's own caps, the most layers it can hold. A
// "pattern" p is one (candidate, layer count n) a group g of interchangeable ranks may run,
// with stage seconds P_p = n * prefill_per_layer + prefill_extra (and D_p for decode). The MILP:
//
//   min Tp + Td   s.t.  sum_p z[g,p] = |g|,  z[g,p] <= |g| * w[g,p],
//                       sum_{g,p} n_p z[g,p] = n_layers,
//                       Tp >= P_p w[g,p],  Td >= D_p w[g,p]     z integer, w binary
//
// (the memory caps are in the patterns: n only runs up to what the candidate's bytes allow).
// Tp and Td are the bottleneck stage's prefill and decode seconds: with at least as many GPU
// batches in flight as ranks, the pipeline runs at its slowest stage in each phase. A second
// solve with Tp + Td held at the optimum prefers the faster policies and the more even split
// among ties, so the printed plan has no needlessly slow rank.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "model/model_config.h"
#include "planner/cluster.h"
#include "runtime/policy.h"

namespace strata {

// "10,14": layer counts per rank; input error unless there are n_ranks whole numbers >= 1
// summing to n_layers.
std::vector<int64_t> parse_layer_split(const std::string& text, int64_t n_layers, int64_t n_ranks);

// One policy a rank could run, as the MILP sees it. Seconds are for the whole workload (every
// prefill and decode step of one block).
struct StageCandidate {
  double prefill_per_layer_s = 0;
  double decode_per_layer_s = 0;
  double prefill_extra_s = 0;  // embedding and / or head, by the rank's position
  double decode_extra_s = 0;
  int64_t max_layers = 0;  // the most layers whose bytes fit the rank's caps (0: none)
};

struct SplitSolution {
  std::vector<int64_t> layers;  // per rank
  std::vector<int> choice;      // candidate index per rank
  double prefill_s = 0;         // bottleneck stage, prefill
  double decode_s = 0;          // bottleneck stage, decode
  int64_t milp_count = 0;
};

// How the split is found. The planner runs the MILP seeded with the answer of an exact search
// over (Tp, Td) thresholds, which also prunes every (policy, layer count) slower than that
// answer; the MILP then proves or improves it within a time limit, and its second solve tidies
// the ties. Tests run each of the two alone against brute force.
enum class SplitSolver { kSeededMilp, kMilpOnly, kSearchOnly };

// The MILP over explicit candidates (candidates[rank][k]). Ranks with identical candidates are
// interchangeable, so the MILP counts how many run each (policy, layer count) rather than
// choosing per rank. `fixed`, when not empty, is a hand split: only the policies are chosen.
// Empty result: no split fits.
std::optional<SplitSolution> solve_split(const std::vector<std::vector<StageCandidate>>& candidates,
                                         int64_t n_layers, const std::vector<int64_t>& fixed = {},
                                         SplitSolver solver = SplitSolver::kSeededMilp);

struct ClusterPlanRequest {
  int64_t prompt_len = 512;
  int64_t gen_len = 32;
  int64_t gpu_batch_size = 0;   // 0: enumerated (the same on every rank)
  int64_t num_gpu_batches = 0;  // 0: enumerated, at least the rank count
  bool compress_weight = false;
  bool compress_cache = false;
  int64_t n_ranks = 0;                   // > 0: the cluster must have this many ranks
  std::vector<int64_t> layers_per_rank;  // not empty: a hand split to evaluate
};

struct RankPlan {
  int64_t rank = 0;
  std::string node;
  NodeDevice device = NodeDevice::kCpu;
  int64_t first_layer = 0;
  int64_t n_layers = 0;
  bool embed = false;  // rank 0
  bool head = false;   // the last rank
  Policy policy;
  double prefill_s = 0;  // this stage's seconds for the workload
  double decode_s = 0;
  uint64_t peak_bytes[kNumTiers] = {};  // the cost model's estimate
  uint64_t cap_bytes[kNumTiers] = {};
  double stage_s() const { return prefill_s + decode_s; }
};

struct ClusterPlan {
  std::vector<RankPlan> ranks;
  int64_t gpu_batch_size = 0;
  int64_t num_gpu_batches = 0;
  int64_t prompt_len = 0;
  int64_t gen_len = 0;
  double prefill_s = 0;  // the bottleneck stage's, per block
  double decode_s = 0;
  double prefill_tokens_per_s = 0;
  double decode_tokens_per_s = 0;
  double generation_tokens_per_s = 0;  // block * gen_len / (prefill_s + decode_s)
  int64_t bottleneck_rank = 0;         // the slowest stage in decode
  int64_t prefill_bottleneck_rank = 0;
  bool hand_split = false;
  int64_t milp_count = 0;
  double solve_s = 0;

  int64_t effective_batch() const { return gpu_batch_size * num_gpu_batches; }
  std::vector<int64_t> layers_per_rank() const;
  std::string split_text() const;  // "10,14"
  nlohmann::json to_json() const;
};

// Input errors before anything is loaded: rank count against request.n_ranks, more ranks than
// layers, a hand split of the wrong length, sum or with zeros, and no split that fits.
ClusterPlan plan_cluster(const Cluster& cluster, const ModelConfig& config,
                         const ClusterPlanRequest& request);

}  // namespace strata
