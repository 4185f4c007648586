#include "planner/planner.h"

#include <glpk.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "core/error.h"
#include "core/units.h"
#include "runtime/cuda/cuda_layout.h"
#include "runtime/engine.h"
#include "runtime/memory_plan.h"

namespace strata {
namespace {

// Shares of a node's memory a plan may use: the OS, the CUDA context and other processes
// need the rest.
constexpr double kUsableGpu = 0.9;
constexpr double kUsableRam = 0.8;
constexpr double kUsableDisk = 0.9;
constexpr double kBindingShare = 0.98;     // a tier this full binds
constexpr double kTieShare = 0.005;        // throughputs this close: the smaller block wins
constexpr double kCapMarginBytes = 65536;  // taken off a cap that rounding overshot

const int64_t kBatchSizes[] = {1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512};
const int64_t kBatchCounts[] = {1, 2, 3, 4, 6, 8, 12, 16, 24, 32};

struct ProblemDeleter {
  void operator()(glp_prob* p) const { glp_delete_prob(p); }
};

// Row-wise constraint: lower <= sum(coef * column) <= upper.
struct Row {
  std::vector<std::pair<int, double>> entries;  // 1-based GLPK columns
  int type;
  double lower, upper;
};

struct LpResult {
  Placement placement;
  double total_s = 0;
};

// Caps in bytes for the LP; ram_bytes bounds gpu + cpu together on the CPU backend, where both
// tiers are host memory.
struct LpCaps {
  double tier[kNumTiers];
  double ram_bytes;  // 0: no shared bound
};

std::optional<LpResult> solve_lp(const std::vector<StageCost>& costs, const MemoryModel& memory,
                                 const LpCaps& caps, const Residency& residency, bool allow_disk) {
  constexpr double kBytesUnit = 1e9;  // memory rows in GB keep the matrix well scaled
  const int n_frac = kNumPlacementVars;
  const int n_cols = n_frac + static_cast<int>(costs.size());
  std::vector<Row> rows;
  for (int kind = 0; kind < 3; ++kind) {
    rows.push_back({{{3 * kind + 1, 1.0}, {3 * kind + 2, 1.0}, {3 * kind + 3, 1.0}}, GLP_FX, 1, 1});
  }
  for (size_t i = 0; i < costs.size(); ++i) {
    const int t_col = n_frac + static_cast<int>(i) + 1;
    for (const CostTerm& term : costs[i].terms) {
      const Affine a = term.seconds();
      Row r{{{t_col, 1.0}}, GLP_LO, a.constant, 0};
      for (int v = 0; v < n_frac; ++v) {
        if (a.coef[static_cast<size_t>(v)] != 0)
          r.entries.push_back({v + 1, -a.coef[static_cast<size_t>(v)]});
      }
      rows.push_back(std::move(r));
    }
  }
  auto memory_row = [&](std::initializer_list<int> tiers, double cap) {
    Row r{{}, GLP_UP, 0, 0};
    double constant = 0;
    std::array<double, kNumPlacementVars> coef{};
    for (int t : tiers) {
      constant += memory.tier[t].constant;
      for (int v = 0; v < n_frac; ++v)
        coef[static_cast<size_t>(v)] += memory.tier[t].coef[static_cast<size_t>(v)];
    }
    for (int v = 0; v < n_frac; ++v) {
      if (coef[static_cast<size_t>(v)] != 0)
        r.entries.push_back({v + 1, coef[static_cast<size_t>(v)] / kBytesUnit});
    }
    r.upper = (cap - constant) / kBytesUnit;
    rows.push_back(std::move(r));
  };
  for (int t = 0; t < kNumTiers; ++t) memory_row({t}, caps.tier[t]);
  if (caps.ram_bytes > 0) memory_row({0, 1}, caps.ram_bytes);

  std::unique_ptr<glp_prob, ProblemDeleter> lp(glp_create_prob());
  glp_set_obj_dir(lp.get(), GLP_MIN);
  glp_add_cols(lp.get(), n_cols);
  for (int v = 0; v < n_frac; ++v) {
    const bool disk = v % 3 == 2;
    const bool resident = (v == kWg && residency.weights) || (v == kCg && residency.cache) ||
                          (v == kHg && residency.activations);
    if (resident) {
      glp_set_col_bnds(lp.get(), v + 1, GLP_FX, 1, 1);
    } else if (disk && !allow_disk) {
      glp_set_col_bnds(lp.get(), v + 1, GLP_FX, 0, 0);
    } else {
      glp_set_col_bnds(lp.get(), v + 1, GLP_DB, 0, 1);
    }
  }
  for (size_t i = 0; i < costs.size(); ++i) {
    const int col = n_frac + static_cast<int>(i) + 1;
    glp_set_col_bnds(lp.get(), col, GLP_LO, 0, 0);
    glp_set_obj_coef(lp.get(), col, costs[i].repeats);
  }
  glp_add_rows(lp.get(), static_cast<int>(rows.size()));
  std::vector<int> ia{0}, ja{0};
  std::vector<double> ar{0};
  for (size_t r = 0; r < rows.size(); ++r) {
    const Row& row = rows[r];
    glp_set_row_bnds(lp.get(), static_cast<int>(r) + 1, row.type, row.lower, row.upper);
    for (const auto& [col, value] : row.entries) {
      ia.push_back(static_cast<int>(r) + 1);
      ja.push_back(col);
      ar.push_back(value);
    }
  }
  glp_load_matrix(lp.get(), static_cast<int>(ar.size()) - 1, ia.data(), ja.data(), ar.data());
  glp_smcp parm;
  glp_init_smcp(&parm);
  parm.msg_lev = GLP_MSG_OFF;
  parm.presolve = GLP_ON;  // reports infeasibility instead of failing on it
  const int rc = glp_simplex(lp.get(), &parm);
  if (rc != 0 || glp_get_status(lp.get()) != GLP_OPT) return std::nullopt;
  LpResult result;
  for (int v = 0; v < n_frac; ++v) {
    result.placement.f[static_cast<size_t>(v)] =
        std::clamp(glp_get_col_prim(lp.get(), v + 1), 0.0, 1.0);
  }
  result.total_s = glp_get_obj_val(lp.get());
  return result;
}

struct Candidate {
  Policy policy;
  double throughput = 0;
  double total_s = 0;
};

Policy policy_of(const CostShape& shape, const Placement& x) {
  Policy p;
  p.gpu_batch_size = shape.gpu_batch_size;
  p.num_gpu_batches = shape.num_gpu_batches;
  p.sep_layer = shape.sep_layer;
  p.cpu_cache_compute = shape.cpu_cache_compute;
  p.compress_weight = shape.compress_weight;
  p.compress_cache = shape.compress_cache;
  p.hetegen_alpha = shape.hetegen;
  x.apply_to(p);
  return p;
}

// Bytes per tier the policy will take: the engine's own plan on the CPU backend, the model's
// estimate on a GPU node.
std::array<double, kNumTiers> peak_of(const HardwareProfile& hw, const ModelConfig& config,
                                      const Policy& policy, int64_t prompt_len, int64_t gen_len) {
  // The engine's own memory plan, CPU or CUDA: the bytes it will allocate.
  EngineOptions o;
  o.policy = policy;
  o.max_prompt_len = prompt_len;
  o.gen_len = gen_len;
  const MemoryPlan plan = hw.has_gpu ? plan_cuda_memory(config, o) : plan_cpu_memory(config, o);
  std::array<double, kNumTiers> peak{};
  for (int t = 0; t < kNumTiers; ++t) {
    peak[static_cast<size_t>(t)] = static_cast<double>(plan.total(static_cast<Tier>(t)));
  }
  return peak;
}

// Best policy for one (gpu_batch_size, num_gpu_batches): the LP for every residency choice (and,
// on a GPU, with and without CPU attention; with choose_alpha, each phase with and without its
// balanced HeteGen alphas), each checked against the real peaks.
std::optional<Candidate> best_for_shape(const HardwareProfile& hw, const ModelConfig& config,
                                        CostShape shape, const LpCaps& caps, bool allow_disk,
                                        int64_t& lp_count, bool choose_alpha = false) {
  std::optional<Candidate> best;
  // Per phase: the balance, or no split where the overlapped transfer alone is faster.
  std::vector<HeteGenAlpha> alphas = {shape.hetegen};
  if (choose_alpha && hw.has_gpu) {
    const HeteGenAlpha b = balanced_alphas(hw, config, shape);
    alphas = {HeteGenAlpha{}, {b.prefill, {}}, {{}, b.decode}, b};
  }
  std::vector<std::pair<bool, HeteGenAlpha>> variants;  // (cpu attention, alphas)
  for (const bool cpu_attention :
       hw.has_gpu ? std::vector<bool>{false, true} : std::vector<bool>{false}) {
    for (const HeteGenAlpha& alpha : alphas) variants.emplace_back(cpu_attention, alpha);
  }
  for (const auto& [cpu_attention, alpha] : variants) {
    shape.cpu_cache_compute = cpu_attention;
    shape.hetegen = alpha;
    const auto costs = stage_costs(hw, config, shape);
    for (int mask = 0; mask < 8; ++mask) {
      const Residency r{(mask & 1) != 0, (mask & 2) != 0, (mask & 4) != 0};
      const MemoryModel memory = memory_model(hw, config, shape, r);
      LpCaps lp_caps = caps;
      // Rounding and alignment can put the engine's real need a little over the LP's: shrink
      // the cap by the overshoot and solve again.
      for (int attempt = 0; attempt < 4; ++attempt) {
        ++lp_count;
        const auto result = solve_lp(costs, memory, lp_caps, r, allow_disk);
        if (!result) break;
        const Policy policy = policy_of(shape, result->placement);
        const auto peak = peak_of(hw, config, policy, shape.prompt_len, shape.gen_len);
        bool fits = true;
        for (int t = 0; t < kNumTiers; ++t) {
          const double over = peak[static_cast<size_t>(t)] - caps.tier[t];
          if (over > 0) {
            lp_caps.tier[t] -= over + kCapMarginBytes;
            fits = false;
          }
        }
        const double ram_over = peak[0] + peak[1] - caps.ram_bytes;
        if (caps.ram_bytes > 0 && ram_over > 0) {
          lp_caps.ram_bytes -= ram_over + kCapMarginBytes;
          fits = false;
        }
        if (!fits) continue;
        Policy chosen = policy;
        // A chosen split applies to CPU-tier weights only: with none there, alpha is 0.
        if (choose_alpha && chosen.weights.cpu_percent <= 0) chosen.hetegen_alpha = {};
        const Prediction p = predict(costs, Placement::of(chosen), shape);
        if (!best || p.generation_tokens_per_s > best->throughput) {
          best = Candidate{chosen, p.generation_tokens_per_s, p.prefill_s + p.decode_s};
        }
        break;
      }
    }
  }
  return best;
}

double weights_bytes(const ModelConfig& config, bool compress) {
  return static_cast<double>(config.n_params()) * (compress ? kCompressedBytesPerElement : 2.0);
}

LpCaps lp_caps_of(const HardwareProfile& hw, const TierCaps& caps) {
  return {{static_cast<double>(caps.gpu_bytes), static_cast<double>(caps.cpu_bytes),
           static_cast<double>(caps.disk_bytes)},
          hw.has_gpu ? 0.0 : static_cast<double>(hw.cpu_mem_bytes) * kUsableRam};
}

// Prediction, peaks per tier and what binds, for plan.policy.
void describe(const HardwareProfile& hw, const ModelConfig& config, const PlanRequest& request,
              const LpCaps& lp_caps, Plan& plan) {
  plan.predicted = predict_policy(hw, config, plan.policy, request.prompt_len, request.gen_len);
  const auto peak = peak_of(hw, config, plan.policy, request.prompt_len, request.gen_len);
  std::string binding;
  for (int t = 0; t < kNumTiers; ++t) {
    plan.peak_bytes[t] = static_cast<uint64_t>(std::ceil(peak[static_cast<size_t>(t)]));
    plan.cap_bytes[t] = static_cast<uint64_t>(lp_caps.tier[t]);
    if (lp_caps.tier[t] > 0 && peak[static_cast<size_t>(t)] >= kBindingShare * lp_caps.tier[t]) {
      const bool over = peak[static_cast<size_t>(t)] > lp_caps.tier[t];
      binding += std::string(binding.empty() ? "" : ", ") + tier_name(static_cast<Tier>(t)) +
                 (over ? " memory OVER its cap (" : " memory (") +
                 format_bytes(peak[static_cast<size_t>(t)]) + " of " +
                 format_bytes(lp_caps.tier[t]) + ")";
    }
  }
  if (lp_caps.ram_bytes > 0 && peak[0] + peak[1] >= kBindingShare * lp_caps.ram_bytes) {
    binding += std::string(binding.empty() ? "" : ", ") +
               "host memory shared by the gpu and cpu tiers (" + format_bytes(peak[0] + peak[1]) +
               " of " + format_bytes(lp_caps.ram_bytes) + ")";
  }
  if (binding.empty()) {
    binding = "no memory cap binds; decode is bound by " + plan.predicted.decode_bound;
  }
  plan.binding = binding;
}

}  // namespace

TierCaps effective_caps(const HardwareProfile& hw, const PlanRequest& r) {
  TierCaps caps = r.caps;
  const auto ram = static_cast<uint64_t>(static_cast<double>(hw.cpu_mem_bytes) * kUsableRam);
  if (caps.gpu_bytes == 0) {
    caps.gpu_bytes = hw.has_gpu
                         ? static_cast<uint64_t>(static_cast<double>(hw.gpu_mem_bytes) * kUsableGpu)
                         : ram;
  }
  if (caps.cpu_bytes == 0) caps.cpu_bytes = ram;
  if (!r.allow_disk) {
    caps.disk_bytes = 0;
  } else if (caps.disk_bytes == 0) {
    caps.disk_bytes = static_cast<uint64_t>(static_cast<double>(hw.disk_bytes) * kUsableDisk);
  }
  return caps;
}

Plan make_plan(const HardwareProfile& hw, const ModelConfig& config, const PlanRequest& request) {
  const auto begin = std::chrono::steady_clock::now();
  STRATA_INPUT_CHECK(request.prompt_len >= 1, "--prompt-len must be >= 1");
  STRATA_INPUT_CHECK(request.gen_len >= 1, "--gen-len must be >= 1");
  STRATA_INPUT_CHECK(request.prompt_len + request.gen_len <= config.max_positions, "--prompt-len ",
                     request.prompt_len, " plus --gen-len ", request.gen_len,
                     " is longer than the model allows (max_position_embeddings ",
                     config.max_positions, ")");
  STRATA_INPUT_CHECK(request.gpu_batch_size >= 0 && request.num_gpu_batches >= 0,
                     "--gpu-batch-size and --num-gpu-batches must be >= 1");
  STRATA_INPUT_CHECK(!(request.hetegen && request.alpha >= 0),
                     "--hetegen lets the planner choose alpha: drop --alpha");
  STRATA_INPUT_CHECK(request.alpha < 1, "--alpha ", request.alpha, " must be in [0, 1)");
  STRATA_INPUT_CHECK(!request.hetegen || !hw.has_gpu || hw.cpu_gemm_rate_gflops(1) > 0,
                     "--hetegen needs cpu_gemm_gflops (the CPU's GEMM rate) in the hardware "
                     "profile '",
                     hw.name, "'");
  const TierCaps caps = effective_caps(hw, request);
  const bool allow_disk = request.allow_disk && caps.disk_bytes > 0;
  const LpCaps lp_caps = lp_caps_of(hw, caps);
  double host = lp_caps.tier[0] + lp_caps.tier[1];
  if (lp_caps.ram_bytes > 0) host = std::min(host, lp_caps.ram_bytes);
  const double all_tiers = host + (allow_disk ? lp_caps.tier[2] : 0);
  const double model_bytes = weights_bytes(config, request.compress_weight);
  STRATA_INPUT_CHECK(model_bytes <= all_tiers, "the model's weights take ",
                     format_bytes(model_bytes), " but the tiers together hold ",
                     format_bytes(all_tiers), " (gpu ", format_bytes(lp_caps.tier[0]), ", cpu ",
                     format_bytes(lp_caps.tier[1]), ", disk ",
                     allow_disk ? format_bytes(lp_caps.tier[2]) : std::string("none"),
                     "); give more memory or --offload-dir with free space");

  std::vector<int64_t> sizes, counts;
  if (request.gpu_batch_size > 0)
    sizes = {request.gpu_batch_size};
  else
    sizes.assign(std::begin(kBatchSizes), std::end(kBatchSizes));
  if (request.num_gpu_batches > 0)
    counts = {request.num_gpu_batches};
  else
    counts.assign(std::begin(kBatchCounts), std::end(kBatchCounts));

  Plan plan;
  std::optional<Candidate> best;
  for (int64_t gbs : sizes) {
    bool any_fit = false;
    if (request.max_block > 0 && gbs > request.max_block && gbs != sizes.front()) break;
    for (int64_t nb : counts) {
      if (request.max_block > 0 && gbs * nb > request.max_block && nb != counts.front()) break;
      CostShape shape;
      shape.prompt_len = request.prompt_len;
      shape.gen_len = request.gen_len;
      shape.gpu_batch_size = gbs;
      shape.num_gpu_batches = nb;
      shape.sep_layer = request.sep_layer;
      shape.compress_weight = request.compress_weight;
      shape.compress_cache = request.compress_cache;
      if (request.alpha >= 0) shape.hetegen = HeteGenAlpha::all(request.alpha);
      const auto c =
          best_for_shape(hw, config, shape, lp_caps, allow_disk, plan.lp_count, request.hetegen);
      if (!c) break;  // more batches only need more memory
      any_fit = true;
      const bool better = !best || c->throughput > best->throughput * (1 + kTieShare) ||
                          (c->throughput >= best->throughput * (1 - kTieShare) &&
                           c->policy.effective_batch() < best->policy.effective_batch());
      if (better) best = c;
    }
    if (!any_fit && best) break;  // larger GPU batches need more memory still
  }
  STRATA_INPUT_CHECK(best.has_value(), "no policy fits: gpu ", format_bytes(lp_caps.tier[0]),
                     ", cpu ", format_bytes(lp_caps.tier[1]), ", disk ",
                     allow_disk ? format_bytes(lp_caps.tier[2]) : std::string("none"),
                     " cannot hold the weights, the KV cache of ", request.prompt_len, " + ",
                     request.gen_len, " tokens and the working buffers",
                     request.gpu_batch_size > 0 ? " at this --gpu-batch-size" : "");
  plan.policy = best->policy;
  describe(hw, config, request, lp_caps, plan);
  plan.solve_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  return plan;
}

Plan evaluate_policy(const HardwareProfile& hw, const ModelConfig& config, const Policy& policy,
                     const PlanRequest& request) {
  STRATA_INPUT_CHECK(request.prompt_len + request.gen_len <= config.max_positions, "--prompt-len ",
                     request.prompt_len, " plus --gen-len ", request.gen_len,
                     " is longer than the model allows (max_position_embeddings ",
                     config.max_positions, ")");
  policy.validate();
  Plan plan;
  plan.policy = policy;
  describe(hw, config, request, lp_caps_of(hw, effective_caps(hw, request)), plan);
  return plan;
}

std::optional<Policy> best_policy_for_shape(const HardwareProfile& hw, const ModelConfig& config,
                                            const CostShape& shape, const TierCaps& caps,
                                            uint64_t host_bytes, bool allow_disk) {
  const LpCaps lp_caps{{static_cast<double>(caps.gpu_bytes), static_cast<double>(caps.cpu_bytes),
                        static_cast<double>(caps.disk_bytes)},
                       static_cast<double>(host_bytes)};
  int64_t lp_count = 0;
  const auto best =
      best_for_shape(hw, config, shape, lp_caps, allow_disk && caps.disk_bytes > 0, lp_count);
  if (!best) return std::nullopt;
  return best->policy;
}

Prediction predict_policy(const HardwareProfile& hw, const ModelConfig& config,
                          const Policy& policy, int64_t prompt_len, int64_t gen_len) {
  const CostShape shape = CostShape::of(policy, prompt_len, gen_len);
  return predict(stage_costs(hw, config, shape), Placement::of(policy), shape);
}

nlohmann::json Plan::to_json() const {
  nlohmann::json tiers, caps;
  for (int t = 0; t < kNumTiers; ++t) {
    tiers[tier_name(static_cast<Tier>(t))] = peak_bytes[t];
    caps[tier_name(static_cast<Tier>(t))] = cap_bytes[t];
  }
  return {{"policy", policy.to_json()},
          {"predicted",
           {{"prefill_tokens_per_s", predicted.prefill_tokens_per_s},
            {"decode_tokens_per_s", predicted.decode_tokens_per_s},
            {"generation_tokens_per_s", predicted.generation_tokens_per_s},
            {"prefill_s", predicted.prefill_s},
            {"decode_s", predicted.decode_s},
            {"prefill_bound", predicted.prefill_bound},
            {"decode_bound", predicted.decode_bound}}},
          {"peak_bytes", tiers},
          {"cap_bytes", caps},
          {"binding", binding},
          {"solve_s", solve_s},
          {"lp_count", lp_count}};
}

}  // namespace strata
