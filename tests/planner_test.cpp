// The planner: cost-model terms against hand-computed cases, the LP's policies against the
// engine's own memory plan (never over a cap), and the CLI's bad-input paths.
#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "model/model_config.h"
#include "planner/cost_model.h"
#include "planner/planner.h"
#include "runtime/cpu_engine.h"
#include "runtime/cuda/cuda_layout.h"
#include "runtime/stages.h"
#include "test_util.h"

namespace strata {
namespace {

// h = 64, f = 256, 2 layers: small enough to compute every term by hand.
ModelConfig tiny_config() {
  ModelConfig c;
  c.hidden_size = 64;
  c.n_layers = 2;
  c.n_heads = 4;
  c.ffn_dim = 256;
  c.vocab_size = 1000;
  c.max_positions = 256;
  c.word_embed_proj_dim = 64;
  return c;
}

// A Llama-family layer of the same width: GQA 4:2 with head_dim 24 (q_dim 96 != hidden),
// SwiGLU, RMSNorm, rotary, untied.
ModelConfig tiny_llama_config() {
  ModelConfig c = tiny_config();
  c.family = Family::kMistral;
  c.n_kv_heads = 2;
  c.head_size = 24;
  c.rms_norm = c.rotary = c.gated_mlp = true;
  c.qkv_bias = c.o_bias = c.mlp_bias = false;
  c.activation = Activation::kSilu;
  c.tie_word_embeddings = false;
  return c;
}

using test::gpu_profile;

HardwareProfile cpu_profile() {
  HardwareProfile hw;
  hw.name = "test-cpu";
  hw.disk_read_gbps = 1.5;
  hw.disk_write_gbps = 1;
  hw.host_copy_gbps = 10;
  hw.expand_gbps = 4;
  hw.cpu_gemm_gflops = 300;
  hw.cpu_attention_gflops = 5;
  hw.cpu_mem_bytes = 16ull << 30;
  hw.disk_bytes = 100ull << 30;
  return hw;
}

const StageCost& find_cost(const std::vector<StageCost>& costs, const std::string& stage,
                           Phase phase) {
  for (const auto& c : costs) {
    if (c.stage == stage && c.phase == phase) return c;
  }
  ADD_FAILURE() << "no stage " << stage;
  return costs.front();
}

double term_at(const StageCost& c, const std::string& stream, const Placement& x) {
  for (const auto& t : c.terms) {
    if (t.stream == stream) return t.seconds().at(x);
  }
  ADD_FAILURE() << "no stream " << stream;
  return -1;
}

double part_at(const StageCost& c, const std::string& stream, const std::string& part,
               const Placement& x) {
  for (const auto& t : c.terms) {
    for (const auto& [name, a] : t.parts) {
      if (t.stream == stream && name == part) return a.at(x);
    }
  }
  return 0;
}

Placement placement(double wg, double wc, double cg, double cc, double hg, double hc) {
  Policy p;
  p.weights = {wg, wc};
  p.cache = {cg, cc};
  p.activations = {hg, hc};
  return Placement::of(p);
}

constexpr double h = 64, f = 256;
// Attention stage: q, k, v, out weights and biases, one layer norm; MLP: fc1, fc2, a layer norm.
constexpr double kAttnNumel = 4 * h * h + 4 * h + 2 * h;
constexpr double kMlpNumel = 2 * h * f + f + h + 2 * h;

TEST(CostModel, StageSizesAreTheEngineLayouts) {
  const auto layouts = stage_layouts(tiny_config(), true);
  ASSERT_EQ(layouts.size(), 2u + 2 * 2);
  EXPECT_EQ(layouts[1].numel, kAttnNumel);
  EXPECT_EQ(layouts[2].numel, kMlpNumel);
}

TEST(CostModel, GpuPrefillWeightsFromDisk) {
  CostShape s;
  s.prompt_len = 16;
  s.gen_len = 5;
  s.gpu_batch_size = 2;
  s.num_gpu_batches = 3;
  const auto costs = stage_costs(gpu_profile(), tiny_config(), s);
  const Placement x = placement(0, 0, 100, 0, 100, 0);  // weights on disk, the rest on the GPU
  const StageCost& attn = find_cost(costs, "attention", Phase::kPrefill);
  EXPECT_EQ(attn.repeats, 2);  // two layers, one prefill step
  // fp16 bytes over PCIe then from disk, one after the other.
  EXPECT_NEAR(term_at(attn, "load", x), kAttnNumel * 2 * (1 / 10e9 + 1 / 1e9), 1e-15);
  // Projections: 2 * 4h^2 per row, rows = 3 batches x 2 x 16; attention 4h s(s+1)/2 per sequence.
  const double gemm = 3 * 2 * 16 * 2 * 4 * h * h / 1000e9;
  const double scores = 3 * 2 * 4 * h * 16 * 17 / 2 / 500e9;
  EXPECT_NEAR(term_at(attn, "compute", x), gemm + scores, 1e-15);
  EXPECT_NEAR(term_at(attn, "store", x), 0, 1e-18);  // cache and activations stay on the GPU
  const StageCost& decode = find_cost(costs, "mlp", Phase::kDecode);
  EXPECT_EQ(decode.repeats, 2 * 4);  // gen_len - 1 decode steps
  EXPECT_NEAR(term_at(decode, "compute", x), 3 * 2 * 2 * 2 * h * f / 100e9, 1e-15);
}

// With the device's memory bandwidth known, a decode GEMM or attention takes at least its fp16
// weights or cache at that rate per GPU batch (memory-bound at small batches).
TEST(CostModel, GpuDecodeIsBoundByDeviceMemory) {
  CostShape s;
  s.prompt_len = 16;
  s.gen_len = 5;
  s.gpu_batch_size = 2;
  s.num_gpu_batches = 3;
  HardwareProfile hw = gpu_profile();
  hw.gpu_mem_gbps = 0.5;
  const auto costs = stage_costs(hw, tiny_config(), s);
  const Placement x = placement(100, 0, 100, 0, 100, 0);
  const StageCost& mlp = find_cost(costs, "mlp", Phase::kDecode);
  EXPECT_NEAR(part_at(mlp, "compute", "gemm", x), 3 * kMlpNumel * 2 / 0.5e9, 1e-15);
  const StageCost& attn = find_cost(costs, "attention", Phase::kDecode);
  const double cached = 16 + (5 - 2) / 2.0;
  EXPECT_NEAR(part_at(attn, "compute", "attention", x), 3 * 2 * 2 * (cached + 1) * h * 2 / 0.5e9,
              1e-15);
  // A fast memory leaves the FLOP rates in charge.
  hw.gpu_mem_gbps = 1e6;
  const auto fast = stage_costs(hw, tiny_config(), s);
  EXPECT_NEAR(part_at(find_cost(fast, "mlp", Phase::kDecode), "compute", "gemm", x),
              3 * 2 * 2 * 2 * h * f / 100e9, 1e-15);
}

TEST(CostModel, GpuDecodeCacheOnCpuWithCpuAttention) {
  CostShape s;
  s.prompt_len = 10;
  s.gen_len = 6;
  s.gpu_batch_size = 4;
  s.num_gpu_batches = 1;
  s.cpu_cache_compute = true;
  const auto costs = stage_costs(gpu_profile(), tiny_config(), s);
  const Placement x = placement(100, 0, 0, 100, 100, 0);
  const StageCost& attn = find_cost(costs, "attention", Phase::kDecode);
  const double cached = 10 + (6 - 2) / 2.0;  // mean over decode steps
  EXPECT_NEAR(part_at(attn, "compute", "attention", x), 4 * 4 * h * (cached + 1) / 10e9, 1e-15);
  EXPECT_NEAR(part_at(attn, "load", "cache", x), 0, 1e-18);  // computed where it lives
  // The new token's keys and values go back over PCIe (fp16).
  EXPECT_NEAR(part_at(attn, "store", "cache", x), 4 * 2 * h * 2 / 5e9, 1e-15);
  // Without CPU attention the whole valid cache crosses PCIe instead.
  s.cpu_cache_compute = false;
  const auto moved = stage_costs(gpu_profile(), tiny_config(), s);
  EXPECT_NEAR(part_at(find_cost(moved, "attention", Phase::kDecode), "load", "cache", x),
              4 * 2 * cached * h * 2 / 10e9, 1e-15);
}

TEST(CostModel, CompressionShrinksBytes) {
  CostShape s;
  s.prompt_len = 8;
  s.gen_len = 2;
  s.compress_weight = true;
  const auto costs = stage_costs(gpu_profile(), tiny_config(), s);
  const Placement x = placement(0, 100, 100, 0, 100, 0);
  EXPECT_NEAR(term_at(find_cost(costs, "mlp", Phase::kPrefill), "load", x),
              kMlpNumel * (0.5 + 4.0 / 64) / 10e9, 1e-15);
}

TEST(CostModel, CpuBackendExpandsOffloadedWeights) {
  CostShape s;
  s.prompt_len = 4;
  s.gen_len = 3;
  s.gpu_batch_size = 1;
  const HardwareProfile hw = cpu_profile();
  const auto costs = stage_costs(hw, tiny_config(), s);
  // Half the weights on the CPU tier, half on disk; cache and activations on the CPU tier.
  const Placement x = placement(0, 50, 0, 100, 0, 100);
  const StageCost& mlp = find_cost(costs, "mlp", Phase::kDecode);
  // Only the disk half is loaded (fp16); both halves are expanded to fp32 on the compute stream.
  EXPECT_NEAR(part_at(mlp, "load", "weights", x), 0.5 * kMlpNumel * 2 / 1.5e9, 1e-15);
  EXPECT_NEAR(part_at(mlp, "compute", "expand weights", x), kMlpNumel * 4 / 4e9, 1e-15);
  // One row: the GEMM rate of one row (no curve in this profile: the peak rate).
  EXPECT_NEAR(part_at(mlp, "compute", "gemm", x), 2 * 2 * h * f / 300e9, 1e-15);
  // Passes over the row outside GEMMs: norms, biases, activation, residual.
  EXPECT_NEAR(part_at(mlp, "compute", "elementwise", x), (6 * h + 3 * f) * 4 / 10e9, 1e-15);
  // fp32 activations of one row, copied in and out by the streams' threads, which take the
  // cores the GEMMs use: charged to compute; from the CPU tier nothing waits on the disk.
  EXPECT_NEAR(part_at(mlp, "compute", "tier copies", x), 2 * h * 4 / 10e9, 1e-15);
  EXPECT_NEAR(part_at(mlp, "load", "activations", x), 0, 1e-18);
  const StageCost& attn = find_cost(costs, "attention", Phase::kDecode);
  // Keys and values of 4.5 cached tokens on average in, one new token out.
  EXPECT_NEAR(part_at(attn, "compute", "tier copies", x), (2 * 4.5 + 2 + 2) * h * 4 / 10e9, 1e-15);
}

TEST(CostModel, CpuGemmRateFollowsTheRowsCurve) {
  HardwareProfile hw = cpu_profile();
  hw.cpu_gemm_gflops_by_rows = {{1, 10}, {100, 100}};
  EXPECT_DOUBLE_EQ(hw.cpu_gemm_rate_gflops(0.5), 10);
  EXPECT_DOUBLE_EQ(hw.cpu_gemm_rate_gflops(10), 55);  // halfway in log(rows)
  EXPECT_DOUBLE_EQ(hw.cpu_gemm_rate_gflops(1000), 100);
  CostShape s;
  s.prompt_len = 10;
  s.gen_len = 2;
  s.gpu_batch_size = 10;
  const auto costs = stage_costs(hw, tiny_config(), s);
  const Placement x = placement(100, 0, 100, 0, 100, 0);
  // Decode: 10 rows at 55 GFLOP/s; prefill: 100 rows at 100.
  EXPECT_NEAR(part_at(find_cost(costs, "mlp", Phase::kDecode), "compute", "gemm", x),
              10 * 2 * 2 * h * f / 55e9, 1e-15);
  EXPECT_NEAR(part_at(find_cost(costs, "mlp", Phase::kPrefill), "compute", "gemm", x),
              100 * 2 * 2 * h * f / 100e9, 1e-15);
}

TEST(CostModel, PredictionSumsStagesAndCountsTokens) {
  CostShape s;
  s.prompt_len = 16;
  s.gen_len = 4;
  s.gpu_batch_size = 2;
  s.num_gpu_batches = 2;
  const auto costs = stage_costs(gpu_profile(), tiny_config(), s);
  const Placement x = placement(0, 100, 100, 0, 100, 0);
  double prefill = 0, decode = 0;
  for (const auto& c : costs) {
    double t = 0;
    for (const auto& term : c.terms) t = std::max(t, term.seconds().at(x));
    (c.phase == Phase::kPrefill ? prefill : decode) += c.repeats * t;
  }
  const Prediction p = predict(costs, x, s);
  EXPECT_DOUBLE_EQ(p.prefill_s, prefill);
  EXPECT_DOUBLE_EQ(p.decode_s, decode);
  EXPECT_DOUBLE_EQ(p.generation_tokens_per_s, 4 * 4 / (prefill + decode));
  EXPECT_DOUBLE_EQ(p.decode_tokens_per_s, 4 * 3 / decode);
  EXPECT_EQ(p.decode_bound, "load: weights");  // weights over PCIe every step
}

TEST(CostModel, CpuMemoryModelMatchesTheEngine) {
  std::mt19937 random(7);
  std::uniform_real_distribution<double> u(0, 1);
  for (int i = 0; i < 100; ++i) {
    const ModelConfig c = i % 2 ? tiny_llama_config() : tiny_config();
    EngineOptions o;
    auto split = [&] {
      const double g = u(random) < 0.3 ? 100 : std::floor(u(random) * 100);
      return TierSplit{g, std::floor(u(random) * (100 - g))};
    };
    o.policy.weights = split();
    o.policy.cache = split();
    o.policy.activations = split();
    o.policy.gpu_batch_size = 1 + static_cast<int64_t>(u(random) * 8);
    o.policy.num_gpu_batches = 1 + static_cast<int64_t>(u(random) * 3);
    o.max_prompt_len = 1 + static_cast<int64_t>(u(random) * 60);
    o.gen_len = 1 + static_cast<int64_t>(u(random) * 20);
    const MemoryPlan plan = plan_memory(c, o);
    const CostShape s = CostShape::of(o.policy, o.max_prompt_len, o.gen_len);
    const Residency r{o.policy.weights.gpu_percent >= 100, o.policy.cache.gpu_percent >= 100,
                      o.policy.activations.gpu_percent >= 100};
    const MemoryModel m = memory_model(cpu_profile(), c, s, r);
    const Placement x = Placement::of(o.policy);
    // The GPU tier exactly (up to whole elements), the disk up to 4 KiB blocks per array, the
    // CPU tier as an upper bound (staging counted as a sum, not a max).
    const double arrays = static_cast<double>(
        c.n_layers * 2 + 2 + c.n_layers * o.policy.num_gpu_batches + o.policy.num_gpu_batches);
    EXPECT_NEAR(m.tier[0].at(x), static_cast<double>(plan.total(Tier::kGpu)), 4 * arrays) << i;
    EXPECT_NEAR(m.tier[2].at(x), static_cast<double>(plan.total(Tier::kDisk)), 4096 * arrays) << i;
    EXPECT_GE(m.tier[1].at(x) + 5 * 4096 + 4 * arrays, static_cast<double>(plan.total(Tier::kCpu)))
        << i;
  }
}

// A step's read floor counted from the checkpoint's tensor list: every 2-D weight but the
// embedding tables (rows looked up, not read whole), the head when it is tied to the embedding,
// and each sequence's cache rows, keys and values, in every layer.
TEST(CostModel, ReadElementsAreTheLinearWeightsAndTheCache) {
  for (const std::string arch : {"opt-125m", "opt-350m", "llama-3.2-1b", "qwen2.5-0.5b"}) {
    SCOPED_TRACE(arch);
    const auto c = parse_model_config(builtin_config_json(arch), arch);
    double weights = 0;
    for (const TensorSpec& t : model_tensor_specs(c)) {
      if (t.shape.size() != 2 || t.name.rfind("embed_", 0) == 0) continue;
      weights += static_cast<double>(t.shape[0] * t.shape[1]);
    }
    if (c.tie_word_embeddings) weights += static_cast<double>(c.vocab_size * c.word_embed_proj_dim);
    const std::vector<int64_t> n_new = {1, 1, 3}, n_cached = {10, 0, 5};
    const double cache = static_cast<double>(c.n_layers * (11 + 1 + 8) * 2 * c.kv_dim());
    EXPECT_EQ(forward_read_elements(c, n_new, n_cached), weights + cache);
  }
}

// The cache is kv_dim wide per token and layer: 2 KV heads of 24 (48) against hidden_size 64.
TEST(CostModel, CacheFollowsGqa) {
  const ModelConfig mha = tiny_config(), gqa = tiny_llama_config();
  const CostShape s = CostShape::of(Policy{}, 32, 8);
  const Residency r{true, true, true};
  for (const HardwareProfile& hw : {cpu_profile(), gpu_profile()}) {
    const double mha_cache = memory_model(hw, mha, s, r).tier[0].coef[kCg];
    const double gqa_cache = memory_model(hw, gqa, s, r).tier[0].coef[kCg];
    EXPECT_DOUBLE_EQ(gqa_cache / mha_cache, 48.0 / 64.0);
  }
}

TEST(Planner, NeverExceedsATierOnTheCpuBackend) {
  const auto config = parse_model_config(builtin_config_json("opt-125m"), "opt-125m");
  const uint64_t mib = 1ull << 20;
  int offloaded = 0;
  for (const uint64_t gpu_mib : {200, 350, 400, 500, 700, 900, 4000}) {
    for (const uint64_t cpu_mib : {64, 300, 2000}) {
      PlanRequest r;
      r.prompt_len = 64;
      r.gen_len = 8;
      r.caps = {gpu_mib * mib, cpu_mib * mib, 2000 * mib};
      r.gpu_batch_size = 4;  // keeps the enumeration short
      Plan plan;
      try {
        plan = make_plan(cpu_profile(), config, r);
      } catch (const Error&) {
        continue;  // nothing fits: the caps are too small
      }
      EngineOptions o;
      o.policy = plan.policy;
      o.max_prompt_len = r.prompt_len;
      o.gen_len = r.gen_len;
      const MemoryPlan engine = plan_memory(config, o);
      EXPECT_LE(engine.total(Tier::kGpu), r.caps.gpu_bytes) << gpu_mib << " " << cpu_mib;
      EXPECT_LE(engine.total(Tier::kCpu), r.caps.cpu_bytes) << gpu_mib << " " << cpu_mib;
      EXPECT_LE(engine.total(Tier::kDisk), r.caps.disk_bytes) << gpu_mib << " " << cpu_mib;
      EXPECT_NO_THROW(check_caps(engine, r.caps));
      offloaded += plan.policy.weights.gpu_percent < 100;
    }
  }
  EXPECT_GT(offloaded, 3);  // the small caps do force offloading
}

// On a GPU node the planner checks its plans with the CUDA engine's own memory plan (built
// without CUDA too), so what it picks fits the caps as the engine will allocate it, for OPT and
// for a GQA model alike.
TEST(Planner, NeverExceedsATierOnAGpu) {
  const uint64_t mib = 1ull << 20;
  for (const char* arch : {"opt-1.3b", "qwen2.5-0.5b"}) {
    const auto config = parse_model_config(builtin_config_json(arch), arch);
    int offloaded = 0;
    for (const uint64_t gpu_mib : {700, 1200, 2500, 6000}) {
      for (const uint64_t cpu_mib : {1000, 8000}) {
        PlanRequest r;
        r.prompt_len = 128;
        r.gen_len = 16;
        r.caps = {gpu_mib * mib, cpu_mib * mib, 20000 * mib};
        r.gpu_batch_size = 8;
        Plan plan;
        try {
          plan = make_plan(gpu_profile(), config, r);
        } catch (const Error&) {
          continue;  // nothing fits
        }
        EngineOptions o;
        o.policy = plan.policy;
        o.max_prompt_len = r.prompt_len;
        o.gen_len = r.gen_len;
        const MemoryPlan engine = plan_cuda_memory(config, o);
        SCOPED_TRACE(std::string(arch) + " " + std::to_string(gpu_mib) + " " +
                     std::to_string(cpu_mib));
        EXPECT_NO_THROW(check_caps(engine, r.caps));
        offloaded += plan.policy.weights.gpu_percent < 100;
      }
    }
    EXPECT_GT(offloaded, 2) << arch << ": the small caps do force offloading";
  }
}

// The CUDA plan's GPU tier is the pool (cuBLAS's workspace inside it) plus the reserve the
// engine leaves outside it, so a --gpu-mem the plan fits leaves the device what loads later.
TEST(Planner, CudaPlanCountsBlasWorkspaceAndReserve) {
  for (const char* arch : {"opt-1.3b", "qwen2.5-0.5b", "opt-125m"}) {
    SCOPED_TRACE(arch);
    const auto config = parse_model_config(builtin_config_json(arch), arch);
    for (const int64_t gbs : {1, 8}) {
      EngineOptions o;
      o.policy.gpu_batch_size = gbs;
      o.policy.weights = {50, 50};
      o.max_prompt_len = 128;
      o.gen_len = 16;
      const auto layouts = slice_layouts(config, o);
      const CudaLayout l = cuda_layout(config, o, layouts, shapes_of(config, o, layouts));
      const MemoryPlan plan = plan_cuda_memory(config, o);
      EXPECT_EQ(l.reserve_bytes, kDeviceReserveBytes);
      EXPECT_EQ(plan.total(Tier::kGpu), l.device_bytes + l.reserve_bytes);
      // Twice the largest fp32 GEMM output, whole MiB, at most cuBLAS's Hopper default.
      const uint64_t widest = std::max<uint64_t>(
          {static_cast<uint64_t>(config.hidden_size), static_cast<uint64_t>(config.ffn_dim),
           static_cast<uint64_t>(config.q_dim()), static_cast<uint64_t>(config.mlp_width())});
      const uint64_t out = std::max(static_cast<uint64_t>(l.limits.max_rows) * widest,
                                    static_cast<uint64_t>(gbs * config.vocab_size));
      const uint64_t mib = 1ull << 20;
      EXPECT_EQ(l.blas_workspace_bytes, std::min(32 * mib, (8 * out + mib - 1) / mib * mib));
      // What the data and the runner take, plus the workspace, is the pool.
      const uint64_t data = plan.weights[0] + plan.cache[0] + plan.activations[0];
      EXPECT_GE(l.device_bytes,
                data + pool_bytes(l.blas_workspace_bytes) +
                    pool_bytes(cuda::StageRunner::workspace_bytes(config, l.limits)));
    }
  }
}

TEST(Planner, EverythingOnTheGpuTierWhenItFits) {
  const auto config = parse_model_config(builtin_config_json("opt-125m"), "opt-125m");
  PlanRequest r;
  r.prompt_len = 32;
  r.gen_len = 8;
  r.gpu_batch_size = 8;
  r.num_gpu_batches = 2;
  const Plan plan = make_plan(cpu_profile(), config, r);
  EXPECT_EQ(plan.policy.weights.gpu_percent, 100);
  EXPECT_EQ(plan.policy.cache.gpu_percent, 100);
  EXPECT_EQ(plan.policy.activations.gpu_percent, 100);
  EXPECT_EQ(plan.policy.effective_batch(), 16);
}

TEST(Planner, EffectiveBatchStaysWithinTheRequests) {
  const auto config = parse_model_config(builtin_config_json("opt-125m"), "opt-125m");
  PlanRequest r;
  r.prompt_len = 16;
  r.gen_len = 4;
  r.max_block = 3;
  HardwareProfile hw = cpu_profile();
  hw.cpu_gemm_gflops_by_rows = {{1, 5}, {1024, 300}};  // more rows, faster GEMMs
  const Plan plan = make_plan(hw, config, r);
  EXPECT_LE(plan.policy.effective_batch(), 3);
  r.max_block = 0;  // no cap: larger blocks run faster
  EXPECT_GT(make_plan(hw, config, r).policy.effective_batch(), 3);
}

TEST(Planner, T4PlansStayUnderTheCapsAndBeatNaivePolicies) {
  const HardwareProfile hw =
      HardwareProfile::load(test::kDataDir + "/../../configs/hardware/gcp-t4-flexgen.json");
  const auto config = parse_model_config(builtin_config_json("opt-30b"), "opt-30b");
  PlanRequest r;
  r.prompt_len = 512;
  r.gen_len = 32;
  const Plan plan = make_plan(hw, config, r);
  const TierCaps caps = effective_caps(hw, r);
  EXPECT_LE(plan.peak_bytes[0], caps.gpu_bytes);
  EXPECT_LE(plan.peak_bytes[1], caps.cpu_bytes);
  EXPECT_LE(plan.peak_bytes[2], caps.disk_bytes);
  // Weights of 60 GB cannot sit in 16 GB: some are offloaded.
  EXPECT_LT(plan.policy.weights.gpu_percent, 100);
  // A hand-made policy that fits (FlexGen's shape, all weights on the CPU) does no better.
  Policy manual;
  manual.gpu_batch_size = 48;
  manual.num_gpu_batches = 3;
  manual.weights = {0, 100};
  manual.cache = {0, 100};
  manual.activations = {0, 100};
  manual.cpu_cache_compute = true;
  const CostShape shape = CostShape::of(manual, 512, 32);
  const MemoryModel m = memory_model(hw, config, shape, Residency{});
  ASSERT_LE(m.tier[0].at(Placement::of(manual)), static_cast<double>(caps.gpu_bytes));
  ASSERT_LE(m.tier[1].at(Placement::of(manual)), static_cast<double>(caps.cpu_bytes));
  const Prediction theirs = predict_policy(hw, config, manual, 512, 32);
  EXPECT_GE(plan.predicted.generation_tokens_per_s, 0.999 * theirs.generation_tokens_per_s);
}

TEST(PlannerCli, JsonPolicyLoadsAndBadInputExitsTwo) {
  test::TempDir dir;
  const std::string t4 = test::kDataDir + "/../../configs/hardware/gcp-t4-flexgen.json";
  auto r = test::run_strata("plan --model opt-1.3b --hardware " + t4 +
                            " --prompt-len 128 --gen-len 16 --json");
  ASSERT_EQ(r.exit_status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  for (const char* key :
       {"prefill_tokens_per_s", "decode_tokens_per_s", "generation_tokens_per_s"}) {
    EXPECT_GT(j["predicted"][key].get<double>(), 0) << key;
  }
  for (const char* tier : {"gpu", "cpu", "disk"}) EXPECT_TRUE(j["peak_bytes"].contains(tier));
  EXPECT_TRUE(j["binding"].is_string());
  test::write_text(dir.file("plan.json"), r.out);
  EXPECT_EQ(Policy::load(dir.file("plan.json")).to_json(), j["policy"]);

  // A hardware file with a missing and a non-positive field.
  auto hw = nlohmann::json::parse(test::read_text(t4));
  hw.erase("h2d_gbps");
  test::write_text(dir.file("missing.json"), hw.dump());
  r = test::run_strata("plan --model opt-1.3b --hardware " + dir.file("missing.json") +
                       " --prompt-len 128 --gen-len 16");
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_NE(r.err.find("h2d_gbps"), std::string::npos) << r.err;
  hw = nlohmann::json::parse(test::read_text(t4));
  hw["disk_read_gbps"] = 0;
  test::write_text(dir.file("zero.json"), hw.dump());
  r = test::run_strata("plan --model opt-1.3b --hardware " + dir.file("zero.json") +
                       " --prompt-len 128 --gen-len 16");
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_NE(r.err.find("disk_read_gbps"), std::string::npos) << r.err;

  // Larger than every tier together; a prompt longer than the model allows.
  r = test::run_strata(
      "plan --model opt-175b --hardware " + t4 +
      " --prompt-len 128 --gen-len 16 --gpu-mem 1GiB --cpu-mem 2GiB --disk-mem 10GiB");
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_NE(r.err.find("tiers together"), std::string::npos) << r.err;
  r = test::run_strata("plan --model opt-1.3b --hardware " + t4 +
                       " --prompt-len 2040 --gen-len 16");
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_NE(r.err.find("max_position_embeddings"), std::string::npos) << r.err;
}

TEST(PlannerCli, BenchWithAutoPolicyPrintsPredictedAgainstMeasured) {
  test::TempDir dir;
  const std::string hw = test::kDataDir + "/../../configs/hardware/dev-2core.json";
  const auto r =
      test::run_strata("bench --model " + test::model_dir("opt-pub-tiny") +
                       " --prompt-len 8 --gen-len 4 --policy auto --gpu-mem 64MiB --hardware " +
                       hw + " --no-bounds --json " + dir.file("b.json"));
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_NE(r.out.find("measured / predicted"), std::string::npos) << r.out;
  const auto j = nlohmann::json::parse(test::read_text(dir.file("b.json")));
  EXPECT_GT(j["predicted"]["generation_tokens_per_s"].get<double>(), 0);
  EXPECT_LE(j["peak_bytes"]["gpu"].get<uint64_t>(), 64ull << 20);
}

}  // namespace
}  // namespace strata
