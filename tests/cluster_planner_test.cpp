// The cluster planner: the split MILP against brute-force enumeration, splits on equal, unequal
// and capped nodes, cluster files and hand splits that must be refused, and the CLI.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "core/error.h"
#include "model/model_config.h"
#include "planner/cluster.h"
#include "planner/cluster_planner.h"
#include "test_util.h"

namespace strata {
namespace {

const std::string kConfigs = test::kDataDir + "/../../configs";

// A CPU node with round rates; `speed` scales every compute and copy rate.
nlohmann::json cpu_node_profile(double speed = 1) {
  return {{"name", "test-cpu"},
          {"has_gpu", false},
          {"disk_read_gbps", 1.5},
          {"disk_write_gbps", 1.0},
          {"host_copy_gbps", 10 * speed},
          {"expand_gbps", 4 * speed},
          {"cpu_gemm_gflops", 300 * speed},
          {"cpu_attention_gflops", 5 * speed},
          {"cpu_mem_bytes", 64ull << 30},
          {"disk_bytes", 100ull << 30}};
}

nlohmann::json node(const nlohmann::json& hardware, const std::string& cpu_mem = "32GiB",
                    const std::string& disk_mem = "64GiB") {
  return {{"hardware", hardware}, {"device", "cpu"}, {"cpu_mem", cpu_mem}, {"disk_mem", disk_mem}};
}

Cluster cluster_of(const std::vector<nlohmann::json>& nodes) {
  return Cluster::from_json({{"name", "test"}, {"nodes", nodes}}, "test-cluster.json", ".");
}

// h = 256 with a small vocabulary: the embedding and head cost little next to a layer.
ModelConfig small_config(int64_t n_layers, int64_t vocab = 1000) {
  ModelConfig c;
  c.hidden_size = 256;
  c.n_layers = n_layers;
  c.n_heads = 4;
  c.ffn_dim = 1024;
  c.vocab_size = vocab;
  c.max_positions = 512;
  c.word_embed_proj_dim = 256;
  return c;
}

ClusterPlanRequest small_request() {
  ClusterPlanRequest r;
  r.prompt_len = 64;
  r.gen_len = 8;
  r.gpu_batch_size = 8;
  r.num_gpu_batches = 4;
  return r;
}

// --- The MILP against brute force over every split and every policy choice. ---

struct Brute {
  double objective = std::numeric_limits<double>::infinity();
  std::vector<int64_t> layers;
};

// Every composition of n_layers into positive parts, every candidate per rank that holds its
// part: the smallest (slowest prefill stage + slowest decode stage).
Brute brute_force(const std::vector<std::vector<StageCandidate>>& cands, int64_t n_layers) {
  Brute best;
  const size_t ranks = cands.size();
  std::vector<int64_t> split(ranks, 0);
  std::vector<int> pick(ranks, 0);
  std::function<void(size_t, int64_t)> layers_at = [&](size_t r, int64_t left) {
    if (r + 1 == ranks) {
      split[r] = left;
      std::function<void(size_t, double, double)> choose = [&](size_t q, double tp, double td) {
        if (q == ranks) {
          if (tp + td < best.objective) best = {tp + td, split};
          return;
        }
        for (const StageCandidate& c : cands[q]) {
          if (c.max_layers < split[q]) continue;
          const double n = static_cast<double>(split[q]);
          choose(q + 1, std::max(tp, n * c.prefill_per_layer_s + c.prefill_extra_s),
                 std::max(td, n * c.decode_per_layer_s + c.decode_extra_s));
        }
      };
      choose(0, 0, 0);
      return;
    }
    for (int64_t n = 1; n <= left - static_cast<int64_t>(ranks - r - 1); ++n) {
      split[r] = n;
      layers_at(r + 1, left - n);
    }
  };
  layers_at(0, n_layers);
  return best;
}

double objective_of(const SplitSolution& s) {
  return s.prefill_s + s.decode_s;
}

TEST(SplitMilp, MatchesBruteForceOnRandomCases) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> time(0.1, 2.0), extra(0.0, 3.0);
  std::uniform_int_distribution<int> ranks_d(1, 4), cands_d(1, 3), layers_d(0, 9), copy_d(0, 2);
  int compared = 0, infeasible = 0, uneven = 0;
  for (int trial = 0; trial < 150; ++trial) {
    const int64_t n_ranks = ranks_d(rng);
    const int64_t n_layers = n_ranks + layers_d(rng);
    std::vector<std::vector<StageCandidate>> cands(static_cast<size_t>(n_ranks));
    for (size_t r = 0; r < cands.size(); ++r) {
      auto& rank = cands[r];
      // Some ranks are copies of the one before: the MILP groups interchangeable ranks.
      if (r > 0 && copy_d(rng) == 0) {
        rank = cands[r - 1];
        continue;
      }
      for (int k = cands_d(rng); k > 0; --k) {
        StageCandidate c;
        c.prefill_per_layer_s = time(rng);
        c.decode_per_layer_s = time(rng) * 3;
        c.prefill_extra_s = extra(rng);
        c.decode_extra_s = extra(rng);
        c.max_layers = std::uniform_int_distribution<int64_t>(0, n_layers)(rng);
        rank.push_back(c);
      }
    }
    const Brute want = brute_force(cands, n_layers);
    // The planner's seeded MILP, and the MILP and the threshold search each on their own.
    for (const SplitSolver solver :
         {SplitSolver::kSeededMilp, SplitSolver::kMilpOnly, SplitSolver::kSearchOnly}) {
      const auto got = solve_split(cands, n_layers, {}, solver);
      const std::string where =
          "trial " + std::to_string(trial) + " solver " + std::to_string(static_cast<int>(solver));
      if (!std::isfinite(want.objective)) {
        EXPECT_FALSE(got.has_value()) << where;
        continue;
      }
      ASSERT_TRUE(got.has_value()) << where;
      EXPECT_NEAR(objective_of(*got), want.objective, 1e-9 * want.objective) << where;
      int64_t sum = 0;
      for (size_t r = 0; r < got->layers.size(); ++r) {
        EXPECT_GE(got->layers[r], 1) << where;
        EXPECT_LE(got->layers[r], cands[r][static_cast<size_t>(got->choice[r])].max_layers)
            << where;
        sum += got->layers[r];
      }
      EXPECT_EQ(sum, n_layers) << where;
    }
    if (!std::isfinite(want.objective)) {
      ++infeasible;
      continue;
    }
    // Negative control: the even split is often worse, so the comparison can tell.
    if (n_ranks > 1) {
      std::vector<int64_t> even(static_cast<size_t>(n_ranks), n_layers / n_ranks);
      for (int64_t r = 0; r < n_layers % n_ranks; ++r) even[static_cast<size_t>(r)] += 1;
      const auto fixed = solve_split(cands, n_layers, even);
      if (fixed && objective_of(*fixed) > want.objective * (1 + 1e-6)) ++uneven;
    }
    ++compared;
  }
  EXPECT_GT(compared, 50);
  EXPECT_GT(infeasible, 0);
  EXPECT_GT(uneven, 10);
}

TEST(SplitMilp, ManyEqualRanksAgreeWithTheSearch) {
  // 48 ranks, the middle ones interchangeable, 96 layers: too many splits to enumerate, so the
  // unseeded MILP and the threshold search check each other.
  const StageCandidate fast{1.0, 3.0, 0, 0, 3}, roomy{1.5, 4.0, 0, 0, 96};
  std::vector<std::vector<StageCandidate>> cands(48, {fast, roomy});
  cands.front() = {{1.0, 3.0, 2.0, 0.5, 3}, {1.5, 4.0, 2.0, 0.5, 96}};
  cands.back() = {{1.0, 3.0, 0.5, 6.0, 3}, {1.5, 4.0, 0.5, 6.0, 96}};
  const auto milp = solve_split(cands, 96, {}, SplitSolver::kMilpOnly);
  const auto search = solve_split(cands, 96, {}, SplitSolver::kSearchOnly);
  const auto seeded = solve_split(cands, 96);
  ASSERT_TRUE(milp && search && seeded);
  EXPECT_NEAR(objective_of(*milp), objective_of(*search), 1e-9);
  EXPECT_NEAR(objective_of(*seeded), objective_of(*search), 1e-9);
  // By hand: the last rank's one layer makes Td >= 3 + 6, the first rank's one layer makes
  // Tp >= 1 + 2, and at those the middle ranks hold the rest with room to spare.
  EXPECT_EQ(seeded->layers.front(), 1);
  EXPECT_EQ(seeded->layers.back(), 1);
  EXPECT_DOUBLE_EQ(objective_of(*seeded), 3.0 + 9.0);
}

TEST(SplitMilp, HandSplitOnlyChoosesPolicies) {
  // Rank 1's fast policy holds two layers at most; with three it must take the slow one.
  std::vector<std::vector<StageCandidate>> cands = {{{1, 1, 0, 0, 10}},
                                                    {{1, 1, 0, 0, 2}, {2, 2, 0, 0, 10}}};
  auto s = solve_split(cands, 5, {2, 3});
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->layers, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(s->choice[1], 1);
  EXPECT_DOUBLE_EQ(objective_of(*s), 12);
  s = solve_split(cands, 5);  // free: 3 + 2 on the fast policy
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->layers, (std::vector<int64_t>{3, 2}));
  EXPECT_DOUBLE_EQ(objective_of(*s), 6);
  EXPECT_FALSE(solve_split({{{1, 1, 0, 0, 2}}, {{1, 1, 0, 0, 2}}}, 5).has_value());
}

// --- The planner on cost-model nodes. ---

int64_t sum_of(const std::vector<int64_t>& v) {
  int64_t s = 0;
  for (int64_t x : v) s += x;
  return s;
}

void expect_within_caps(const ClusterPlan& plan) {
  for (const RankPlan& r : plan.ranks) {
    for (int t = 0; t < kNumTiers; ++t) {
      EXPECT_LE(r.peak_bytes[t], r.cap_bytes[t]) << "rank " << r.rank << " tier " << t;
    }
  }
}

TEST(ClusterPlanner, EqualNodesGetABalancedSplit) {
  const auto n = node(cpu_node_profile());
  const ClusterPlan plan =
      plan_cluster(cluster_of({n, n, n, n}), small_config(12), small_request());
  EXPECT_EQ(plan.layers_per_rank(), (std::vector<int64_t>{3, 3, 3, 3}));
  EXPECT_EQ(plan.ranks.front().first_layer, 0);
  EXPECT_EQ(plan.ranks.back().first_layer, 9);
  EXPECT_TRUE(plan.ranks.front().embed && plan.ranks.back().head);
  EXPECT_GT(plan.generation_tokens_per_s, 0);
  expect_within_caps(plan);
  // Uneven counts still spread within one layer of each other.
  const ClusterPlan odd = plan_cluster(cluster_of({n, n, n}), small_config(10), small_request());
  const auto layers = odd.layers_per_rank();
  EXPECT_EQ(sum_of(layers), 10);
  EXPECT_LE(*std::max_element(layers.begin(), layers.end()) -
                *std::min_element(layers.begin(), layers.end()),
            1);
}

TEST(ClusterPlanner, HeavyHeadLeavesTheLastRankFewerLayers) {
  // A 50k vocabulary and a long generation: the LM head's GEMM per token outweighs several
  // decoder layers in decode.
  const auto n = node(cpu_node_profile());
  ClusterPlanRequest request = small_request();
  request.gen_len = 64;
  const ClusterPlan plan = plan_cluster(cluster_of({n, n, n}), small_config(12, 50272), request);
  const auto layers = plan.layers_per_rank();
  EXPECT_EQ(sum_of(layers), 12);
  EXPECT_LT(layers[2], layers[1]);
  EXPECT_GT(plan.ranks[2].decode_s, plan.ranks[2].prefill_s);
}

TEST(ClusterPlanner, HalfTheComputeGetsFewerLayers) {
  const ClusterPlan plan =
      plan_cluster(cluster_of({node(cpu_node_profile(1)), node(cpu_node_profile(0.5))}),
                   small_config(12), small_request());
  const auto layers = plan.layers_per_rank();
  EXPECT_EQ(sum_of(layers), 12);
  EXPECT_LT(layers[1], layers[0]);
  EXPECT_NEAR(static_cast<double>(layers[0]) / static_cast<double>(layers[1]), 2.0, 0.5);
  // The uniform split is evaluated through the same cost model and is slower.
  ClusterPlanRequest even = small_request();
  even.layers_per_rank = {6, 6};
  const ClusterPlan uniform = plan_cluster(
      cluster_of({node(cpu_node_profile(1)), node(cpu_node_profile(0.5))}), small_config(12), even);
  EXPECT_TRUE(uniform.hand_split);
  EXPECT_LT(uniform.generation_tokens_per_s, plan.generation_tokens_per_s * 0.9);
}

TEST(ClusterPlanner, CapsForceASplitTheUnconstrainedOptimumWouldNotPick) {
  const ModelConfig config = small_config(12);
  const auto big = node(cpu_node_profile());
  const ClusterPlan free = plan_cluster(cluster_of({big, big}), config, small_request());
  EXPECT_EQ(free.layers_per_rank(), (std::vector<int64_t>{6, 6}));
  // Rank 1 may not use disk and has room for a few layers only: rank 0 takes the rest.
  const auto small = node(cpu_node_profile(), "48MiB", "0");
  const ClusterPlan capped = plan_cluster(cluster_of({big, small}), config, small_request());
  const auto layers = capped.layers_per_rank();
  EXPECT_EQ(sum_of(layers), 12);
  EXPECT_GE(layers[1], 1);
  EXPECT_LT(layers[1], 6);
  EXPECT_EQ(capped.ranks[1].peak_bytes[2], 0u);
  EXPECT_LT(capped.generation_tokens_per_s, free.generation_tokens_per_s);
  expect_within_caps(capped);
  // A hand split that puts six layers there does not fit.
  ClusterPlanRequest hand = small_request();
  hand.layers_per_rank = {6, 6};
  EXPECT_THROW(plan_cluster(cluster_of({big, small}), config, hand), Error);
}

TEST(ClusterPlanner, PlannedSplitBeatsEveryHandSplit) {
  // Three unequal nodes, 7 layers: every split evaluated by hand is no faster than the MILP's.
  const Cluster cluster = cluster_of({node(cpu_node_profile(1)), node(cpu_node_profile(0.6)),
                                      node(cpu_node_profile(0.3), "40MiB", "0")});
  const ModelConfig config = small_config(7);
  const ClusterPlan planned = plan_cluster(cluster, config, small_request());
  double best = 0;
  std::vector<int64_t> best_split;
  for (int64_t a = 1; a <= 5; ++a) {
    for (int64_t b = 1; a + b <= 6; ++b) {
      ClusterPlanRequest hand = small_request();
      hand.layers_per_rank = {a, b, 7 - a - b};
      double tps = 0;
      try {
        tps = plan_cluster(cluster, config, hand).generation_tokens_per_s;
      } catch (const Error&) {
        continue;  // does not fit the third node
      }
      if (tps > best) best = tps, best_split = hand.layers_per_rank;
    }
  }
  EXPECT_NEAR(planned.generation_tokens_per_s, best, best * 1e-9)
      << "planned " << planned.split_text() << ", brute force best " << best_split[0] << ","
      << best_split[1] << "," << best_split[2];
}

// --- Input errors. ---

void expect_input_error(const std::function<void()>& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_EQ(e.exit_status(), kExitBadInput) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    for (const auto& p : parts) EXPECT_NE(what.find(p), std::string::npos) << what;
  }
}

TEST(ClusterFile, BadFilesNameTheFileAndField) {
  test::TempDir dir;
  auto load = [&](const std::string& text) {
    test::write_text(dir.file("c.json"), text);
    return [&dir] { Cluster::load(dir.file("c.json")); };
  };
  const std::string hw = cpu_node_profile().dump();
  expect_input_error(load("{\"nodes\": ["), {"c.json", "not JSON"});
  expect_input_error(load("{\"nodes\": []}"), {"c.json", "nodes"});
  expect_input_error(load("{\"nodes\": [{\"hardware\": " + hw + "}]}"),
                     {"c.json", "nodes[0].device"});
  expect_input_error(load("{\"nodes\": [{\"device\": \"tpu\", \"hardware\": " + hw + "}]}"),
                     {"c.json", "nodes[0].device", "tpu"});
  expect_input_error(load("{\"nodes\": [{\"device\": \"cpu\"}]}"), {"c.json", "nodes[0].hardware"});
  expect_input_error(
      load("{\"nodes\": [{\"device\": \"cpu\", \"hardware\": \"no/such/profile.json\"}]}"),
      {"c.json", "nodes[0].hardware", "no/such/profile.json"});
  expect_input_error(load("{\"nodes\": [{\"device\": \"cuda\", \"hardware\": " + hw + "}]}"),
                     {"c.json", "nodes[0].device", "no GPU"});
  expect_input_error(
      load("{\"nodes\": [{\"device\": \"cpu\", \"cpu_mem\": \"lots\", \"hardware\": " + hw + "}]}"),
      {"c.json", "nodes[0].cpu_mem", "lots"});
  expect_input_error(
      load("{\"nodes\": [{\"device\": \"cpu\", \"cpu_mem\": \"1TiB\", \"hardware\": " + hw + "}]}"),
      {"c.json", "nodes[0].cpu_mem", "more than"});
  expect_input_error(
      load("{\"nodes\": [{\"device\": \"cpu\", \"cpu_mem\": \"1GiB\", \"hardware\": " + hw +
           "}, {\"device\": \"cpu\", \"gpu\": 1, \"hardware\": " + hw + "}]}"),
      {"c.json", "nodes[1]", "unknown field 'gpu'"});
  expect_input_error(
      load("{\"nodes\": [{\"device\": \"cpu\", \"count\": 0, \"hardware\": " + hw + "}]}"),
      {"c.json", "nodes[0].count"});
  // A GPU profile on a cpu device needs the CPU backend's fields (the shipped ones have them).
  auto gpu_only =
      nlohmann::json::parse(test::read_text(kConfigs + "/hardware/gcp-t4-flexgen.json"));
  gpu_only.erase("host_copy_gbps");
  test::write_text(dir.file("gpu-only.json"), gpu_only.dump());
  expect_input_error(load("{\"nodes\": [{\"device\": \"cpu\", \"hardware\": \"" +
                          dir.file("gpu-only.json") + "\"}]}"),
                     {"c.json", "nodes[0].hardware", "cpu device", "host_copy_gbps"});
  // count repeats an entry.
  test::write_text(dir.file("ok.json"),
                   "{\"nodes\": [{\"device\": \"cpu\", \"count\": 3, \"hardware\": " + hw + "}]}");
  EXPECT_EQ(Cluster::load(dir.file("ok.json")).n_ranks(), 3);
}

TEST(ClusterFile, RepositoryFilesLoad) {
  for (const char* name : {"workstation-1gpu", "weak-nodes-4", "unequal-2"}) {
    const Cluster c = Cluster::load(kConfigs + "/clusters/" + name + ".json");
    EXPECT_GE(c.n_ranks(), 2) << name;
  }
  const Cluster w = Cluster::load(kConfigs + "/clusters/workstation-1gpu.json");
  EXPECT_EQ(w.ranks[0].device, NodeDevice::kCpu);
  EXPECT_FALSE(w.ranks[0].hardware.has_gpu);
  EXPECT_EQ(w.ranks[1].device, NodeDevice::kCuda);
  EXPECT_EQ(Cluster::load(kConfigs + "/clusters/weak-nodes-4.json").n_ranks(), 4);
  EXPECT_TRUE(HardwareProfile::load(kConfigs + "/hardware/h100-node.json").has_gpu);
  EXPECT_EQ(w.replicated(5).n_ranks(), 5);
  EXPECT_EQ(w.replicated(5).ranks[3].device, NodeDevice::kCuda);
  EXPECT_EQ(w.replicated(5).ranks[4].device, NodeDevice::kCpu);
}

TEST(LayerSplit, HandSplitsParseOrFailOnOneLine) {
  EXPECT_EQ(parse_layer_split("10,14", 24, 2), (std::vector<int64_t>{10, 14}));
  expect_input_error([] { parse_layer_split("10,13", 24, 2); }, {"10,13", "sums to 23", "24"});
  expect_input_error([] { parse_layer_split("0,24", 24, 2); }, {"0,24", "at least one layer"});
  expect_input_error([] { parse_layer_split("24", 24, 2); }, {"1 counts for 2 ranks"});
  expect_input_error([] { parse_layer_split("10,x", 24, 2); }, {"'x'", "whole number"});
  expect_input_error([] { parse_layer_split("10,-4", 24, 2); }, {"'-4'"});
  expect_input_error([] { parse_layer_split("10,14,", 24, 2); }, {"10,14,"});
}

TEST(ClusterPlanner, RankCountsAreCheckedFirst) {
  const auto n = node(cpu_node_profile());
  ClusterPlanRequest r = small_request();
  r.n_ranks = 3;
  expect_input_error(
      [&] {
        plan_cluster(cluster_of({n, n}), small_config(4), r);
      },
      {"test-cluster.json", "2 ranks", "3 were started"});
  expect_input_error(
      [&] {
        plan_cluster(cluster_of({n, n, n}), small_config(2), small_request());
      },
      {"3 ranks", "2 layers"});
  r = small_request();
  r.layers_per_rank = {3, 2};
  expect_input_error([&] { plan_cluster(cluster_of({n, n}), small_config(4), r); }, {"sums to 5"});
}

// --- The CLI. ---

TEST(ClusterCli, PlanPrintsTheSplitAndPrediction) {
  const std::string weak = kConfigs + "/clusters/weak-nodes-4.json";
  auto r = test::run_strata("plan --cluster " + weak +
                            " --model opt-1.3b --prompt-len 128 --gen-len 32 --json");
  ASSERT_EQ(r.exit_status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  const auto layers = j["layers_per_rank"].get<std::vector<int64_t>>();
  ASSERT_EQ(layers.size(), 4u);
  EXPECT_EQ(sum_of(layers), 24);
  EXPECT_GT(j["predicted"]["generation_tokens_per_s"].get<double>(), 0);
  EXPECT_EQ(j["ranks"][3]["head"], true);

  r = test::run_strata("plan --cluster " + weak + " --model opt-1.3b --layers-per-rank 6,6,6,6");
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_NE(r.out.find("layers per rank: 6,6,6,6 (--layers-per-rank)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("predicted pipeline"), std::string::npos) << r.out;

  for (const std::string& bad : {std::string("--layers-per-rank 6,6,6,5"), std::string("--ranks 2"),
                                 std::string("--hardware x.json")}) {
    r = test::run_strata("plan --cluster " + weak + " --model opt-1.3b " + bad);
    EXPECT_EQ(r.exit_status, 2) << bad << ": " << r.out;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

TEST(ClusterCli, SimulateProjectsLargerClusters) {
  const auto r = test::run_strata("simulate --cluster " + kConfigs +
                                  "/clusters/weak-nodes-4.json --model opt-1.3b --prompt-len 128 "
                                  "--gen-len 32 --nodes 1,2,4,8,32");
  ASSERT_EQ(r.exit_status, 0) << r.err;
  std::vector<std::string> lines;
  std::stringstream in(r.out);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 5u) << r.out;  // header, 1, 2, 4, 8 (32 is more than 24 layers)
  EXPECT_EQ(lines[0].rfind("nodes,layers_per_rank,", 0), 0u);
  EXPECT_EQ(lines[4].rfind("8,", 0), 0u) << lines[4];
  EXPECT_NE(r.err.find("skipping 32 nodes"), std::string::npos) << r.err;
  double last = 0;
  for (size_t i = 1; i < lines.size(); ++i) {
    const double tps = std::stod(lines[i].substr(lines[i].rfind(',', lines[i].rfind(',') - 1) + 1));
    EXPECT_GT(tps, last) << lines[i];  // more weak nodes, more throughput
    last = tps;
  }
}

}  // namespace
}  // namespace strata
