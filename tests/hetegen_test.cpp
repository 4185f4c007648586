// HeteGen's split linear layers: the split kernel against the unsplit one, the engine with alphas
// against the engine without, the cost model's balance on hand-computed cases, the planner's
// choice as the batch grows, and the bad-input paths of the flags and the policy JSON.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "kernels/cpu/ops.h"
#include "model/model_config.h"
#include "model/weight_source.h"
#include "planner/cost_model.h"
#include "planner/planner.h"
#include "runtime/cpu_engine.h"
#include "test_util.h"

namespace strata {
namespace {

// A bound on |a - b| for two fp32 evaluations of the same dot product of length k plus a bias,
// however each orders its sums: each is within gamma(k + 1) * sum|x_i w_i| + |b| of the exact
// value (Higham, 3.1), so the two are within twice that.
double dot_bound(const float* x, const float* w, float bias, int64_t k) {
  const double u = std::numeric_limits<float>::epsilon() / 2;
  const double n = static_cast<double>(k + 1);
  double mag = std::abs(static_cast<double>(bias));
  for (int64_t i = 0; i < k; ++i) mag += std::abs(static_cast<double>(x[i]) * w[i]);
  return 2 * n * u / (1 - n * u) * mag;
}

// How many of y's entries are further from want than the bound allows.
int64_t out_of_bound(const std::vector<float>& x, const std::vector<float>& w,
                     const std::vector<float>& bias, const std::vector<float>& y,
                     const std::vector<float>& want, int64_t m, int64_t n, int64_t k) {
  int64_t bad = 0;
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      const double d = std::abs(static_cast<double>(y[i * n + j]) - want[i * n + j]);
      const float b = bias.empty() ? 0.0f : bias[j];
      if (!(d <= dot_bound(&x[i * k], &w[j * k], b, k))) ++bad;  // NaN counts
    }
  }
  return bad;
}

TEST(LinearSplit, SplitColumnRoundsAlphaTimesN) {
  EXPECT_EQ(cpu::split_column(0, 7), 0);
  EXPECT_EQ(cpu::split_column(0.3, 10), 3);
  EXPECT_EQ(cpu::split_column(0.5, 7), 4);      // round(3.5)
  EXPECT_EQ(cpu::split_column(0.999, 10), 10);  // every column on the CPU, none on the GPU
  EXPECT_EQ(cpu::split_column(0.04, 10), 0);
  EXPECT_THROW(cpu::split_column(1.0, 10), Error);
  EXPECT_THROW(cpu::split_column(-0.1, 10), Error);
}

// Within the fp32 bound, not bit for bit: OpenBLAS picks kernels and blockings by the GEMM's N,
// so the halves' sums may be ordered unlike the whole's.
TEST(LinearSplit, EqualsUnsplitOnOddShapes) {
  std::mt19937 rng(10);
  std::uniform_real_distribution<float> u(-1, 1);
  int64_t exact = 0, total = 0;
  for (int64_t m : {1, 3, 17}) {
    for (int64_t n : {1, 2, 7, 65, 130}) {
      for (int64_t k : {1, 5, 33, 100}) {
        std::vector<float> x(static_cast<size_t>(m * k)), w(static_cast<size_t>(n * k));
        std::vector<float> bias(static_cast<size_t>(n));
        for (auto* v : {&x, &w, &bias}) {
          for (float& f : *v) f = u(rng);
        }
        for (bool with_bias : {false, true}) {
          const std::vector<float> b = with_bias ? bias : std::vector<float>{};
          std::vector<float> want(static_cast<size_t>(m * n));
          cpu::linear(x.data(), w.data(), with_bias ? b.data() : nullptr, want.data(), m, n, k);
          for (double alpha : {0.0, 0.01, 0.3, 0.5, 0.77, 0.999}) {
            SCOPED_TRACE(testing::Message() << "m " << m << " n " << n << " k " << k << " alpha "
                                            << alpha << " bias " << with_bias);
            std::vector<float> y(static_cast<size_t>(m * n), NAN);
            cpu::linear_split(x.data(), w.data(), with_bias ? b.data() : nullptr, y.data(), m, n, k,
                              alpha);
            EXPECT_EQ(out_of_bound(x, w, b, y, want, m, n, k), 0);
            exact += y == want;
            ++total;
          }
        }
      }
    }
  }
  std::printf("split == unsplit bit for bit in %lld of %lld cases\n", static_cast<long long>(exact),
              static_cast<long long>(total));
}

// Negative control: the bound catches a wrong join (the two columns at the seam swapped) and
// a NaN.
TEST(LinearSplit, BoundCatchesAWrongJoin) {
  const int64_t m = 3, n = 10, k = 33;
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> x(m * k), w(n * k), want(m * n), y(m * n);
  for (float& f : x) f = u(rng);
  for (float& f : w) f = u(rng);
  cpu::linear(x.data(), w.data(), nullptr, want.data(), m, n, k);
  cpu::linear_split(x.data(), w.data(), nullptr, y.data(), m, n, k, 0.4);
  ASSERT_EQ(out_of_bound(x, w, {}, y, want, m, n, k), 0);
  for (int64_t i = 0; i < m; ++i) std::swap(y[i * n + 3], y[i * n + 4]);
  EXPECT_EQ(out_of_bound(x, w, {}, y, want, m, n, k), 2 * m);
  y[0] = NAN;  // an unwritten (poisoned) output counts too
  EXPECT_EQ(out_of_bound(x, w, {}, y, want, m, n, k), 2 * m + 1);
}

TEST(LinearSplit, CountsFlopsOnceAndTheSplit) {
  const int64_t m = 2, n = 9, k = 4;
  std::vector<float> x(m * k, 1), w(n * k, 1), y(m * n);
  cpu::gemm_counters().reset();
  cpu::linear_split(x.data(), w.data(), nullptr, y.data(), m, n, k, 0.5);
  EXPECT_EQ(cpu::gemm_counters().flops.load(), static_cast<uint64_t>(2 * m * n * k));
  EXPECT_EQ(cpu::gemm_counters().splits.load(), 1u);
  cpu::linear_split(x.data(), w.data(), nullptr, y.data(), m, n, k, 0.0);
  EXPECT_EQ(cpu::gemm_counters().splits.load(), 1u);
  for (float v : y) EXPECT_EQ(v, 4.0f);
}

using test::run_engine;
using test::Workload;
using test::workload;

class HeteGenEngine : public ::testing::TestWithParam<std::string> {};

// Greedy ids equal; log-probabilities within 1e-5 (the split's last-bit differences, carried
// through the layers) and the ids equal to Hugging Face's.
TEST_P(HeteGenEngine, AlphasGiveTheUnsplitResult) {
  auto source = open_weight_source(test::model_dir(GetParam()));
  const Workload w = workload(GetParam());
  Policy plain;
  plain.gpu_batch_size = 3;
  plain.num_gpu_batches = 2;
  plain.weights = {0, 100};
  const auto want = run_engine(*source, w, plain);
  for (const bool sep_layer : {false, true}) {
    Policy split = plain;
    split.sep_layer = sep_layer;
    split.hetegen_alpha = {{0.3, 0.61, 0.45}, {0.7, 0.25, 0.999}};
    SCOPED_TRACE(split.to_json().dump());
    cpu::gemm_counters().reset();
    const auto got = run_engine(*source, w, split);
    EXPECT_GT(cpu::gemm_counters().splits.load(), 0u) << "the split path did not run";
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].output_ids, want[i].output_ids) << "prompt " << i;
      EXPECT_EQ(got[i].output_ids, w.golden_ids[i]) << "prompt " << i;
      ASSERT_EQ(got[i].token_logprobs.size(), want[i].token_logprobs.size());
      for (size_t t = 0; t < got[i].token_logprobs.size(); ++t) {
        EXPECT_NEAR(got[i].token_logprobs[t], want[i].token_logprobs[t], 1e-5) << "prompt " << i;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(ReferenceModels, HeteGenEngine,
                         ::testing::ValuesIn(test::kReferenceModels));

// Round rates: h2d 10 GB/s, GPU GEMM 1000 (prefill) / 100 (decode) GFLOP/s, CPU GEMM 100 GFLOP/s,
// host memory 50 GB/s.
HardwareProfile gpu_profile() {
  HardwareProfile hw = test::gpu_profile();
  hw.cpu_gemm_gflops = 100;
  hw.host_copy_gbps = 50;
  hw.cpu_mem_bytes = 64ull << 30;
  return hw;
}

TEST(HeteGenCost, BalanceOnHandComputedCases) {
  const HardwareProfile hw = gpu_profile();
  // A 1000 x 1000 fp16 layer at batch 1 in decode: 2e6 FLOPs, 2e6 bytes. CPU: memory bound,
  // 2e6 / 50e9 = 4e-5 s (FLOPs alone 2e-5); PCIe 2e6 / 10e9 = 2e-4; GPU 2e6 / 100e9 = 2e-5.
  SplitTimes t = split_times(hw, Phase::kDecode, 1, 1, 1e6, 2, true);
  EXPECT_DOUBLE_EQ(t.cpu_s, 4e-5);
  EXPECT_DOUBLE_EQ(t.pcie_s, 2e-4);
  EXPECT_DOUBLE_EQ(t.gpu_s, 2e-5);
  double a = balanced_alpha(t);
  EXPECT_NEAR(a, 2.2e-4 / 2.6e-4, 1e-12);
  // Balanced: both sides take alpha * cpu = 8.8e-9 / 2.6e-4 s.
  EXPECT_NEAR(split_seconds(t, a), 4e-5 * 2.2e-4 / 2.6e-4, 1e-15);
  EXPECT_NEAR(split_seconds(t, a), (1 - a) * 2.2e-4, 1e-15);
  EXPECT_DOUBLE_EQ(split_seconds(t, 0), 2.2e-4);
  EXPECT_GT(split_seconds(t, 0.95), split_seconds(t, a));  // off balance, the CPU binds

  // Batch 64: compute bound on the CPU, 1.28e8 / 100e9 = 1.28e-3; GPU 1.28e-3 too.
  t = split_times(hw, Phase::kDecode, 64, 1, 1e6, 2, true);
  EXPECT_DOUBLE_EQ(t.cpu_s, 1.28e-3);
  EXPECT_DOUBLE_EQ(t.gpu_s, 1.28e-3);
  EXPECT_NEAR(balanced_alpha(t), 1.48e-3 / 2.76e-3, 1e-12);

  // Prefill, 512 rows x 2 GPU batches: FLOPs 2.048e9; CPU 0.02048 s, GPU (1000 GFLOP/s)
  // 2.048e-3 s, PCIe once 2e-4 s.
  t = split_times(hw, Phase::kPrefill, 512, 2, 1e6, 2, true);
  EXPECT_DOUBLE_EQ(t.cpu_s, 0.02048);
  EXPECT_DOUBLE_EQ(t.gpu_s, 2.048e-3);
  EXPECT_DOUBLE_EQ(t.pcie_s, 2e-4);
  EXPECT_NEAR(balanced_alpha(t), 2.248e-3 / 0.022728, 1e-12);

  // Weights on the GPU: nothing crosses PCIe, nothing to split.
  EXPECT_EQ(balanced_alpha(split_times(hw, Phase::kDecode, 1, 1, 1e6, 2, false)), 0);
  // No CPU GEMM rate in the profile: the CPU side cannot be modelled.
  HardwareProfile no_cpu = hw;
  no_cpu.cpu_gemm_gflops = 0;
  EXPECT_EQ(balanced_alpha(split_times(no_cpu, Phase::kDecode, 1, 1, 1e6, 2, true)), 0);
}

// While the CPU is memory bound (batch 1 here) its time stays put as the GPU's grows, so alpha
// rises a little; once it is compute bound alpha only falls.
TEST(HeteGenCost, AlphaFallsAsRowsGrow) {
  const HardwareProfile hw = gpu_profile();
  auto alpha = [&](double rows) {
    return balanced_alpha(split_times(hw, Phase::kDecode, rows, 1, 1e6, 2, true));
  };
  double last = alpha(2);
  for (double rows = 4; rows <= 4096; rows *= 2) {
    EXPECT_LE(alpha(rows), last) << "rows " << rows;
    last = alpha(rows);
  }
  EXPECT_GT(alpha(1), last);
  EXPECT_GT(last, 0.5);  // towards the GPU's share of FLOPs alone: 100 / (100 + 100)
  EXPECT_LT(last, 0.51);
}

const ModelConfig& opt_1_3b() {
  static const ModelConfig c = parse_model_config(builtin_config_json("opt-1.3b"), "opt-1.3b");
  return c;
}

TEST(HeteGenCost, StageTermsUseTheSplit) {
  const HardwareProfile hw = gpu_profile();
  const ModelConfig& c = opt_1_3b();
  Policy p;
  p.gpu_batch_size = 1;
  p.weights = {0, 100};
  const CostShape plain = CostShape::of(p, 8, 4);
  p.hetegen_alpha = balanced_alphas(hw, c, plain);
  const CostShape split = CostShape::of(p, 8, 4);
  const double h = static_cast<double>(c.hidden_size), f = static_cast<double>(c.ffn_dim);
  const SplitTimes fc = split_times(hw, Phase::kDecode, 1, 1, h * f, 2, true);
  EXPECT_NEAR(p.hetegen_alpha.decode.fc1, balanced_alpha(fc), 1e-12);
  EXPECT_EQ(balanced_alphas(hw, c, plain).decode.fc1, p.hetegen_alpha.decode.fc2);
  const Placement x = Placement::of(p);
  auto term = [&](const CostShape& s, const std::string& stream) {
    for (const StageCost& sc : stage_costs(hw, c, s)) {
      if (sc.stage != "mlp" || sc.phase != Phase::kDecode) continue;
      for (const CostTerm& t : sc.terms) {
        if (t.stream == stream) return t.seconds().at(x);
      }
    }
    return -1.0;
  };
  const double a = p.hetegen_alpha.decode.fc1;
  EXPECT_EQ(term(plain, "hetegen cpu"), -1.0);  // no split, no terms
  EXPECT_NEAR(term(split, "hetegen cpu"), 2 * a * fc.cpu_s, 1e-12);
  EXPECT_NEAR(term(split, "hetegen gpu"), 2 * (1 - a) * (fc.pcie_s + fc.gpu_s), 1e-12);
  // Only the GPU's columns cross PCIe.
  EXPECT_NEAR(term(plain, "load") - term(split, "load"), 2 * a * fc.pcie_s, 1e-12);
  // With the split the decode step is faster: the link was the bottleneck.
  EXPECT_LT(predict_policy(hw, c, p, 8, 4).decode_s,
            0.5 * predict(stage_costs(hw, c, plain), x, plain).decode_s);
  // The CPU backend has no split to make.
  HardwareProfile cpu = hw;
  cpu.has_gpu = false;
  EXPECT_FALSE(balanced_alphas(cpu, c, plain).any());
}

// A GPU 20 times the CPU in decode GEMMs: splitting stops paying at large batches.
HardwareProfile planner_profile() {
  HardwareProfile hw = gpu_profile();
  hw.gpu_gemm_decode_gflops = 2000;
  return hw;
}

PlanRequest offloaded_request(int64_t gpu_batch_size) {
  PlanRequest r;
  r.prompt_len = 64;
  r.gen_len = 8;
  r.gpu_batch_size = gpu_batch_size;
  r.num_gpu_batches = 1;
  r.allow_disk = false;
  r.caps.gpu_bytes = 5ull << 28;  // 1.25 GiB; 2.6 GB of fp16 weights: most stay on the CPU tier
  return r;
}

TEST(HeteGenPlanner, AlphaFallsAsTheBatchGrows) {
  const HardwareProfile hw = planner_profile();
  double last = 1;
  for (int64_t gbs : {1, 4, 32, 128}) {
    PlanRequest r = offloaded_request(gbs);
    r.hetegen = true;
    const Plan plan = make_plan(hw, opt_1_3b(), r);
    SCOPED_TRACE(plan.policy.to_json().dump());
    ASSERT_GT(plan.policy.weights.cpu_percent, 0);
    const double a = plan.policy.hetegen_alpha.decode.fc1;
    EXPECT_LE(a, last) << "batch " << gbs;
    // Each phase: its balance, or 0 where the overlapped transfer alone is faster.
    const HeteGenAlpha balance =
        balanced_alphas(hw, opt_1_3b(), CostShape::of(plan.policy, r.prompt_len, r.gen_len));
    EXPECT_TRUE(a == 0 || a == balance.decode.fc1);
    const double prefill = plan.policy.hetegen_alpha.prefill.fc1;
    EXPECT_TRUE(prefill == 0 || prefill == balance.prefill.fc1);
    EXPECT_LT(balance.prefill.fc1, balance.decode.fc1);  // 64 times the rows
    last = a;
    if (gbs == 1) {
      EXPECT_GT(a, 0.5);
    }
    // Never worse than without HeteGen.
    const Plan without = make_plan(hw, opt_1_3b(), offloaded_request(gbs));
    EXPECT_FALSE(without.policy.hetegen_alpha.any());
    EXPECT_GE(plan.predicted.generation_tokens_per_s,
              0.999 * without.predicted.generation_tokens_per_s);
  }
  EXPECT_EQ(last, 0);  // at batch 128 the split loses to the overlapped transfer: alpha 0
}

TEST(HeteGenPlanner, ForcedAlphaIsKept) {
  PlanRequest r = offloaded_request(4);
  r.alpha = 0.25;
  const Plan plan = make_plan(planner_profile(), opt_1_3b(), r);
  EXPECT_EQ(plan.policy.hetegen_alpha.decode.attention, 0.25);
  EXPECT_EQ(plan.policy.hetegen_alpha.prefill.fc2, 0.25);
}

std::string first_line(const std::string& s) {
  return s.substr(0, s.find('\n'));
}

TEST(HeteGenErrors, PolicyJsonFieldsAndRange) {
  Policy p;
  p.hetegen_alpha = {{0.1, 0.2, 0.3}, {0.4, 0.5, 0.6}};
  EXPECT_EQ(Policy::from_json(p.to_json(), "t").to_json(), p.to_json());
  auto j = nlohmann::json::parse(R"({"hetegen_alpha": 0.3})");
  EXPECT_EQ(Policy::from_json(j, "t").hetegen_alpha.decode.fc2, 0.3);
  j = nlohmann::json::parse(R"({"hetegen_alpha": {"decode": {"fc1": 0.4}}})");
  const Policy q = Policy::from_json(j, "t");
  EXPECT_EQ(q.hetegen_alpha.decode.fc1, 0.4);
  EXPECT_EQ(q.hetegen_alpha.decode.fc2, 0);
  auto message = [](const nlohmann::json& json) {
    try {
      Policy::from_json(json, "p.json").validate();
    } catch (const Error& e) {
      EXPECT_EQ(e.exit_status(), kExitBadInput);
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(nlohmann::json::parse(R"({"hetegen_alpha": {"decode": {"fc1": 1.2}}})"))
                .find("hetegen_alpha.decode.fc1 1.2 must be in [0, 1)"),
            std::string::npos);
  EXPECT_NE(message(nlohmann::json::parse(R"({"hetegen_alpha": -0.1})"))
                .find("hetegen_alpha.prefill.attention -0.1 must be in [0, 1)"),
            std::string::npos);
  EXPECT_NE(message(nlohmann::json::parse(R"({"hetegen_alpha": {"decode": {"fc3": 0.1}}})"))
                .find("'hetegen_alpha.decode.fc3'"),
            std::string::npos);
  EXPECT_NE(message(nlohmann::json::parse(R"({"hetegen_alpha": {"middle": {}}})"))
                .find("'hetegen_alpha.middle'"),
            std::string::npos);
  EXPECT_NE(message(nlohmann::json::parse(R"({"hetegen_alpha": "0.3"})")).find("hetegen_alpha"),
            std::string::npos);
}

TEST(HeteGenErrors, FlagsExitTwoWithOneLine) {
  test::TempDir dir;
  auto hw = gpu_profile().to_json();
  test::write_text(dir.file("hw.json"), hw.dump());
  const std::string plan =
      "plan --model opt-1.3b --prompt-len 64 --gen-len 8 --gpu-mem 1GiB --no-disk --hardware " +
      dir.file("hw.json");
  struct Case {
    std::string args, message;
  };
  // A GPU profile without the CPU's GEMM rate cannot weigh a split.
  hw.erase("cpu_gemm_gflops");
  test::write_text(dir.file("no-cpu-gemm.json"), hw.dump());
  for (const Case& c : std::vector<Case>{
           {plan + " --alpha 1.5", "--alpha 1.5 must be in [0, 1)"},
           {plan + " --alpha -0.2", "--alpha -0.2 must be in [0, 1)"},
           {plan + " --hetegen --alpha 0.3", "drop --alpha"},
           {"plan --model opt-1.3b --prompt-len 64 --gen-len 8 --hetegen --hardware " +
                dir.file("no-cpu-gemm.json"),
            "--hetegen needs cpu_gemm_gflops"},
           {"generate --model " + test::model_dir("opt-pub-tiny") +
                " --prompt hi --gen-len 2 --alpha 1",
            "--alpha 1 must be in [0, 1)"},
           {"generate --model " + test::model_dir("opt-pub-tiny") +
                " --prompt hi --gen-len 2 --hetegen",
            "--hetegen lets the planner choose alpha: it needs --policy auto"},
       }) {
    const auto r = test::run_strata(c.args);
    EXPECT_EQ(r.exit_status, 2) << c.args << "\n" << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << c.args << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  // The planner's alphas in the text and in --json, which loads back as a policy.
  auto r = test::run_strata(plan + " --gpu-batch-size 1 --num-gpu-batches 1 --hetegen");
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_NE(r.out.find("hetegen alpha"), std::string::npos) << r.out;
  r = test::run_strata(plan + " --gpu-batch-size 1 --num-gpu-batches 1 --hetegen --json");
  ASSERT_EQ(r.exit_status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_GT(j["policy"]["hetegen_alpha"]["decode"]["fc1"].get<double>(), 0.5) << first_line(r.out);
  test::write_text(dir.file("plan.json"), r.out);
  EXPECT_EQ(Policy::load(dir.file("plan.json")).to_json(), j["policy"]);
}

}  // namespace
}  // namespace strata
