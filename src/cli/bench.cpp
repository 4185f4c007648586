#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/flag_values.h"
#include "cli/pipeline_flags.h"
#include "core/error.h"
#include "core/units.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/ops.h"
#include "model/weight_source.h"
#include "parallel/pipeline.h"
#include "runtime/disk_store.h"
#include "runtime/engine.h"
#include "runtime/machine_fit.h"
#include "runtime/memory_plan.h"
#include "runtime/probes/cpu_probe.h"
#include "runtime/probes/disk_probe.h"
#include "runtime/probes/gpu_probe.h"
#include "runtime/sampler.h"

namespace strata::cli {
namespace {

std::vector<Prompt> random_prompts(const ModelConfig& config, int64_t count, int64_t length,
                                   uint64_t seed) {
  std::vector<Prompt> prompts(static_cast<size_t>(count));
  RandomStream random(seed, 0);
  for (size_t i = 0; i < prompts.size(); ++i) {
    prompts[i].index = i;
    prompts[i].ids.push_back(config.bos_token_id);
    while (static_cast<int64_t>(prompts[i].ids.size()) < length) {
      prompts[i].ids.push_back(3 +
                               static_cast<int32_t>(random.uniform() * (config.vocab_size - 3)));
    }
  }
  return prompts;
}

nlohmann::json tier_json(const EngineStats& s, uint64_t TierStats::*field) {
  nlohmann::json j;
  for (int t = 0; t < kNumTiers; ++t) j[tier_name(static_cast<Tier>(t))] = s.tiers[t].*field;
  return j;
}

// --num-prompts random prompts (default `count`) of --seed.
std::vector<Prompt> prompts_from_flags(const cxxopts::ParseResult& flags, const ModelConfig& config,
                                       int64_t count, int64_t prompt_len) {
  const int64_t n_prompts =
      flags.count("num-prompts") ? int_flag(flags, "num-prompts", 1, kMaxBatchFlag) : count;
  return random_prompts(config, n_prompts, prompt_len, uint64_flag(flags, "seed"));
}

// The lines every bench prints; the rates come from the report `j`.
void print_throughput(const GenerationStats& stats, const nlohmann::json& j) {
  std::printf("prefill %.2f s (%.1f tok/s), decode %.2f s (%.2f tok/s)\n", stats.prefill_s,
              j.value("prefill_tokens_per_s", 0.0), stats.decode_s,
              j.value("decode_tokens_per_s", 0.0));
  std::printf("generation throughput %.2f tok/s\n", j.value("generation_tokens_per_s", 0.0));
}

void add_bench_flags(cxxopts::Options& options) {
  options.add_options()("model", "model directory or synthetic:ARCH",
                        cxxopts::value<std::string>())(
      "prompt-len", "tokens per prompt", number_value("128"))("gen-len", "new tokens per prompt",
                                                              number_value("32"))(
      "num-prompts", "prompts in all (default: one block, the effective batch)", number_value())(
      "threads", "compute threads (0: one per core)", number_value("0"))(
      "seed", "prompt seed", number_value("1"))("json", "also write the figures to this JSON file",
                                                cxxopts::value<std::string>())(
      "no-bounds", "skip measuring the sgemm and disk bounds (quick runs)");
  add_policy_flags(options, "32");
  add_pipeline_flags(options);
}

// Bounds, measured in the same run: a GPU run is judged against the pinned host-to-device rate,
// a CPU run against sgemm, probed before and after the run (the faster counts: a neighbour's
// load during one probe must not lower the bound) and, for decode, the read rate of memory.
struct Bounds {
  bool cuda = false;
  double sgemm_gflops = 0;
  double sgemm_before_gflops = 0;
  double sgemm_after_gflops = 0;
  double read_gbps = 0;
  double h2d_peak_gbps = 0;
  double disk_probe_gbps = 0;
};

// Read by the disk probe before and after the run.
constexpr uint64_t kDiskProbeBytes = 1ull << 30;

Bounds measure_bounds(const cxxopts::ParseResult& flags, const ModelConfig& config,
                      const EngineOptions& options) {
  const bool measure = !flags.count("no-bounds");
  Bounds b;
  b.cuda = resolved_device(options) == Device::kCuda;
  b.sgemm_before_gflops = measure && !b.cuda ? measure_sgemm_gflops() : 0.0;
  b.sgemm_gflops = b.sgemm_before_gflops;
  b.read_gbps = measure && !b.cuda ? measure_read_gbps() : 0.0;
  b.h2d_peak_gbps = measure && b.cuda ? measure_pinned_h2d_gbps(options.gpu_index) : 0.0;
  const MemoryPlan plan = plan_memory(config, options);
  if (measure && plan.total(Tier::kDisk) > 0 && !options.offload_dir.empty()) {
    b.disk_probe_gbps = measure_disk_read_gbps(options.offload_dir, kDiskProbeBytes);
  }
  return b;
}

// The sgemm and disk probes again once the run is over; the faster reading of each counts.
void finish_bounds(Bounds& b, const EngineOptions& options) {
  if (b.disk_probe_gbps > 0) {
    b.disk_probe_gbps =
        std::max(b.disk_probe_gbps, measure_disk_read_gbps(options.offload_dir, kDiskProbeBytes));
  }
  if (b.sgemm_before_gflops <= 0) return;
  b.sgemm_after_gflops = measure_sgemm_gflops();
  b.sgemm_gflops = std::max(b.sgemm_before_gflops, b.sgemm_after_gflops);
}

// What the run measured, and the rates derived from it.
struct BenchRun {
  GenerationStats stats;
  EngineStats es;
  double total_s = 0;
  double gemm_s = 0;
  double gemm_gflops = 0;
  double bound_s = 0;         // seconds the work takes at the sgemm peak
  double decode_bound_s = 0;  // the same for the decode steps' work
  double decode_read_gb = 0;  // what the decode steps read at least (fp32 weights and cache)
  double decode_read_s = 0;   // that at the read rate of memory
  double disk_read_gbps = 0;
  double h2d_gbps = 0;
  int64_t decode_tokens = 0;
};

// Generates the prompts a block at a time, counting the GEMMs.
BenchRun run_blocks(Engine& engine, const std::vector<Prompt>& prompts, int64_t block,
                    int64_t gen_len) {
  GenerateOptions gen;
  gen.gen_len = gen_len;
  gen.ignore_eos = true;
  cpu::gemm_counters().reset();
  BenchRun r;
  GenerationStats& stats = r.stats;
  for (size_t first = 0; first < prompts.size(); first += static_cast<size_t>(block)) {
    const size_t last = std::min(prompts.size(), first + static_cast<size_t>(block));
    engine.generate(std::span<const Prompt>(prompts).subspan(first, last - first), gen, &stats);
  }
  r.es = engine.stats();
  const EngineStats& es = r.es;
  r.total_s = stats.prefill_s + stats.decode_s;
  r.gemm_s = static_cast<double>(cpu::gemm_counters().nanoseconds.load()) * 1e-9;
  r.gemm_gflops = static_cast<double>(cpu::gemm_counters().flops.load()) / 1e9 / r.gemm_s;
  // The rate while the disk was busy: the run's share of time spent on I/O is in the busy figures.
  r.disk_read_gbps = es.disk_busy_s > 0 ? (es.tiers[2].bytes_read + es.tiers[2].bytes_written) /
                                              es.disk_busy_s / 1e9
                                        : 0.0;
  r.decode_tokens = stats.generated_tokens - static_cast<int64_t>(prompts.size());
  // Host-to-device rate while the load stream was busy (CPU-tier bytes: weights and cache).
  r.h2d_gbps =
      es.load_busy_s > 0 ? static_cast<double>(es.tiers[1].bytes_read) / es.load_busy_s / 1e9 : 0;
  return r;
}

// The run's time against the bounds. The memory floor holds for the CPU engine's fp32 weights
// and cache; compressed ones read fewer bytes, so it is left out for them.
void judge(BenchRun& r, const Bounds& b, const Policy& policy) {
  if (b.sgemm_gflops > 0) {
    r.bound_s = r.stats.flops / (b.sgemm_gflops * 1e9);
    r.decode_bound_s = r.stats.decode_flops / (b.sgemm_gflops * 1e9);
  }
  if (b.read_gbps > 0 && !policy.compress_weight && !policy.compress_cache) {
    r.decode_read_gb = r.stats.decode_read_elements * 4 / 1e9;
    r.decode_read_s = r.decode_read_gb / b.read_gbps;
  }
}

// What a report names besides the measurements.
struct BenchSetup {
  std::string model;
  int64_t prompt_len = 0;
  int64_t gen_len = 0;
  int64_t n_prompts = 0;
  const Policy& policy;
};

nlohmann::json bench_json(const BenchSetup& setup, const BenchRun& r, const Bounds& b) {
  const GenerationStats& stats = r.stats;
  const EngineStats& es = r.es;
  nlohmann::json j = {
      {"model", setup.model},
      {"prompt_len", setup.prompt_len},
      {"gen_len", setup.gen_len},
      {"num_prompts", setup.n_prompts},
      {"policy", setup.policy.to_json()},
      {"prefill_s", stats.prefill_s},
      {"decode_s", stats.decode_s},
      {"prefill_tokens_per_s", stats.prompt_tokens / stats.prefill_s},
      {"decode_tokens_per_s", stats.decode_s > 0 ? r.decode_tokens / stats.decode_s : 0.0},
      {"generation_tokens_per_s", stats.generated_tokens / r.total_s},
      {"overlap_efficiency", es.overlap_efficiency()},
      {"busy_s",
       {{"compute", es.compute_busy_s},
        {"load", es.load_busy_s},
        {"store", es.store_busy_s},
        {"disk", es.disk_busy_s}}},
      {"wall_s", es.wall_s},
      {"peak_bytes", tier_json(es, &TierStats::peak_bytes)},
      {"weight_bytes", tier_json(es, &TierStats::weight_bytes)},
      {"cache_bytes", tier_json(es, &TierStats::cache_bytes)},
      {"activation_bytes", tier_json(es, &TierStats::activation_bytes)},
      {"bytes_read", tier_json(es, &TierStats::bytes_read)},
      {"bytes_written", tier_json(es, &TierStats::bytes_written)},
      {"total_gflop", stats.flops / 1e9},
      {"gemm_time_share", r.gemm_s / r.total_s},
      {"gemm_gflops", r.gemm_gflops},
      {"disk_read_gbps", r.disk_read_gbps},
      {"device", device_name(b.cuda ? Device::kCuda : Device::kCpu)},
      {"h2d_achieved_gbps", r.h2d_gbps},
  };
  // Bounds only when measured (--no-bounds skips them): a ratio to an unmeasured bound is no
  // figure at all.
  if (b.sgemm_gflops > 0) {
    j["sgemm_peak_gflops"] = b.sgemm_gflops;
    j["sgemm_peak_before_gflops"] = b.sgemm_before_gflops;
    j["sgemm_peak_after_gflops"] = b.sgemm_after_gflops;
    j["compute_bound_fraction"] = r.bound_s / r.total_s;
    j["prefill_compute_bound_fraction"] = (r.bound_s - r.decode_bound_s) / stats.prefill_s;
    j["decode_compute_bound_fraction"] = r.decode_bound_s / stats.decode_s;
  }
  if (r.decode_read_s > 0) {
    j["memory_read_gbps"] = b.read_gbps;
    j["decode_read_gb"] = r.decode_read_gb;
    j["decode_memory_bound_fraction"] = r.decode_read_s / stats.decode_s;
  }
  if (b.disk_probe_gbps > 0) j["disk_probe_read_gbps"] = b.disk_probe_gbps;
  if (b.h2d_peak_gbps > 0) j["h2d_pinned_gbps"] = b.h2d_peak_gbps;
  // A rate over no time (no GEMM ran, no decode step) is left out rather than written as null.
  for (auto it = j.begin(); it != j.end();) {
    if (it->is_number_float() && !std::isfinite(it->get<double>())) {
      it = j.erase(it);
    } else {
      ++it;
    }
  }
  return j;
}

void print_tiers(const EngineStats& es) {
  std::printf("%-6s %12s %12s %12s %12s %12s\n", "tier", "peak", "weights", "cache", "read",
              "written");
  for (int t = 0; t < kNumTiers; ++t) {
    const TierStats& ts = es.tiers[t];
    std::printf("%-6s %12s %12s %12s %12s %12s\n", tier_name(static_cast<Tier>(t)),
                format_bytes(ts.peak_bytes).c_str(), format_bytes(ts.weight_bytes).c_str(),
                format_bytes(ts.cache_bytes).c_str(), format_bytes(ts.bytes_read).c_str(),
                format_bytes(ts.bytes_written).c_str());
  }
}

// The run against the bounds measured before it.
void print_against_bounds(const BenchRun& r, const Bounds& b) {
  const EngineStats& es = r.es;
  if (b.disk_probe_gbps > 0) {
    std::printf(
        "disk: %.3f GB/s while busy (%.1f s) against %.3f GB/s O_DIRECT sequential read "
        "(faster of before and after the run): %.2f\n",
        r.disk_read_gbps, es.disk_busy_s, b.disk_probe_gbps, r.disk_read_gbps / b.disk_probe_gbps);
  }
  if (b.cuda && b.h2d_peak_gbps > 0) {
    std::printf(
        "h2d: %.2f GB/s while loading (%.2f s of loads) against %.2f GB/s pinned peak (same "
        "run): %.2f\n",
        r.h2d_gbps, es.load_busy_s, b.h2d_peak_gbps, r.h2d_gbps / b.h2d_peak_gbps);
  } else if (b.cuda) {
    std::printf("h2d: %.2f GB/s while loading (%.2f s of loads)\n", r.h2d_gbps, es.load_busy_s);
  } else if (b.sgemm_gflops > 0) {
    std::printf(
        "sgemm peak %.1f GFLOP/s (2048^3, best of OpenBLAS and %s; %.1f before the run, %.1f "
        "after); work %.1f GFLOP -> compute bound %.2f s; achieved %.2f of the bound\n",
        b.sgemm_gflops, cpu::gemm_library().c_str(), b.sgemm_before_gflops, b.sgemm_after_gflops,
        r.stats.flops / 1e9, r.bound_s, r.bound_s / r.total_s);
    if (r.stats.decode_s > 0) {
      std::printf("prefill at %.2f of its bound (%.2f s), decode at %.2f of its bound (%.2f s)\n",
                  (r.bound_s - r.decode_bound_s) / r.stats.prefill_s, r.bound_s - r.decode_bound_s,
                  r.decode_bound_s / r.stats.decode_s, r.decode_bound_s);
    }
    if (r.decode_read_s > 0) {
      std::printf(
          "decode reads %.1f GB of weights and cache at least: %.2f s at %.1f GB/s (memory read, "
          "same run); %.2f s = %.2f of compute and memory bounds added\n",
          r.decode_read_gb, r.decode_read_s, b.read_gbps, r.stats.decode_s,
          (r.decode_bound_s + r.decode_read_s) / r.stats.decode_s);
    }
    if (r.gemm_s > 0) {
      std::printf("GEMM: %.2f s = %.1f%% of the time at %.1f GFLOP/s (%.2f of peak)\n", r.gemm_s,
                  100.0 * r.gemm_s / r.total_s, r.gemm_gflops, r.gemm_gflops / b.sgemm_gflops);
    }
  } else if (r.gemm_s > 0) {  // --no-bounds: the GEMM figures without a peak to hold them to
    std::printf("GEMM: %.2f s = %.1f%% of the time at %.1f GFLOP/s\n", r.gemm_s,
                100.0 * r.gemm_s / r.total_s, r.gemm_gflops);
  }
}

void print_report(const BenchSetup& setup, const BenchRun& r, const Bounds& b,
                  const nlohmann::json& j) {
  const EngineStats& es = r.es;
  std::printf(
      "model %s on %s, %lld prompts x %lld tokens + %lld new; gpu batch %lld x %lld batches\n",
      setup.model.c_str(), b.cuda ? "cuda" : "cpu", static_cast<long long>(setup.n_prompts),
      static_cast<long long>(setup.prompt_len), static_cast<long long>(setup.gen_len),
      static_cast<long long>(setup.policy.gpu_batch_size),
      static_cast<long long>(setup.policy.num_gpu_batches));
  std::printf("policy %s\n", setup.policy.to_json().dump().c_str());
  print_throughput(r.stats, j);
  print_tiers(es);
  std::printf(
      "busy: compute %.2f s, load %.2f s, store %.2f s of %.2f s wall; overlap efficiency %.2f\n",
      es.compute_busy_s, es.load_busy_s, es.store_busy_s, es.wall_s, es.overlap_efficiency());
  print_against_bounds(r, b);
}

// The cost model's prediction (--policy auto) beside the measured rates, printed and in `j`.
void compare_prediction(const Prediction& predicted, nlohmann::json& j) {
  const double measured[3] = {j.value("prefill_tokens_per_s", 0.0),
                              j.value("decode_tokens_per_s", 0.0),
                              j.value("generation_tokens_per_s", 0.0)};
  const double model[3] = {predicted.prefill_tokens_per_s, predicted.decode_tokens_per_s,
                           predicted.generation_tokens_per_s};
  const char* names[3] = {"prefill", "decode", "generation"};
  for (int i = 0; i < 3; ++i) {
    j["predicted"][std::string(names[i]) + "_tokens_per_s"] = model[i];
    std::printf("%-10s predicted %10.2f tok/s, measured %10.2f tok/s: measured / predicted %.2f\n",
                names[i], model[i], measured[i], model[i] > 0 ? measured[i] / model[i] : 0.0);
  }
  j["predicted"]["prefill_bound"] = predicted.prefill_bound;
  j["predicted"]["decode_bound"] = predicted.decode_bound;
  std::printf("predicted bounds: prefill by %s, decode by %s\n", predicted.prefill_bound.c_str(),
              predicted.decode_bound.c_str());
}

}  // namespace

// Several ranks: generation throughput of the pipeline, reported by rank 0.
int bench_pipeline(const cxxopts::ParseResult& flags, const WeightSource& source,
                   PipelineRank& pipeline, int64_t prompt_len, int64_t gen_len) {
  const EngineOptions& o = pipeline.options;
  const int64_t wave = o.policy.effective_batch() * o.n_groups;
  const auto prompts = prompts_from_flags(flags, source.config(), wave, prompt_len);
  const auto n_prompts = static_cast<int64_t>(prompts.size());
  GenerateOptions gen;
  gen.gen_len = gen_len;
  gen.ignore_eos = true;
  GenerationStats stats;
  parallel::pipeline_generate(source, o, *pipeline.transport, prompts, gen, &stats);
  if (pipeline.transport->rank() != 0) return 0;
  const double total_s = stats.prefill_s + stats.decode_s;
  const int64_t decode_tokens = stats.generated_tokens - n_prompts;
  nlohmann::json j = {
      {"model", source.description()},
      {"ranks", pipeline.transport->size()},
      {"transport", pipeline.transport->name()},
      {"layers_per_rank", pipeline.layers_per_rank},
      {"policy_rank0", o.policy.to_json()},
      {"groups", o.n_groups},
      {"prompts", n_prompts},
      {"prompt_len", prompt_len},
      {"gen_len", gen_len},
      {"prefill_s", stats.prefill_s},
      {"decode_s", stats.decode_s},
      {"prefill_tokens_per_s", stats.prefill_s > 0 ? stats.prompt_tokens / stats.prefill_s : 0.0},
      {"decode_tokens_per_s", stats.decode_s > 0 ? decode_tokens / stats.decode_s : 0.0},
      {"generation_tokens_per_s", total_s > 0 ? stats.generated_tokens / total_s : 0.0}};
  std::printf("model %s on %d ranks (%s), %lld prompts x %lld tokens + %lld new; %lld groups\n",
              source.description().c_str(), pipeline.transport->size(), pipeline.transport->name(),
              static_cast<long long>(n_prompts), static_cast<long long>(prompt_len),
              static_cast<long long>(gen_len), static_cast<long long>(o.n_groups));
  print_throughput(stats, j);
  if (flags.count("json")) write_output_file(flags["json"].as<std::string>(), j.dump(2), "--json");
  return 0;
}

int run_bench(int argc, char** argv) {
  cxxopts::Options options("strata bench",
                           "Throughput of generation on random prompts, against bounds measured "
                           "in the same run (sgemm rate, disk bandwidth).");
  add_bench_flags(options);
  const auto flags = parse_flags(options, argc, argv);
  STRATA_INPUT_CHECK(flags.count("model"), "--model is required");
  for (const char* name : {"json", "trace"}) {  // before the work, not after it
    if (flags.count(name))
      check_output_file(flags[name].as<std::string>(), std::string("--") + name);
  }
  EngineOptions engine_options = engine_options_from_flags(flags);
  const Policy& policy = engine_options.policy;
  const int64_t prompt_len = int_flag(flags, "prompt-len", 1, kMaxLengthFlag);
  const int64_t gen_len = int_flag(flags, "gen-len", 1, kMaxLengthFlag);
  set_threads(threads_flag(flags));

  auto source = open_weight_source(flags["model"].as<std::string>());
  const ModelConfig& config = source->config();
  STRATA_INPUT_CHECK(prompt_len + gen_len <= config.max_positions, "--prompt-len ", prompt_len,
                     " plus --gen-len ", gen_len, " is longer than max_position_embeddings ",
                     config.max_positions);
  engine_options.max_prompt_len = prompt_len;
  engine_options.gen_len = gen_len;
  if (auto pipeline = pipeline_rank_from_flags(flags, config, engine_options)) {
    return bench_pipeline(flags, *source, *pipeline, prompt_len, gen_len);
  }
  const auto predicted = plan_from_flags(flags, config, engine_options);  // --policy auto
  const int64_t block = policy.effective_batch();
  // The engine checks again as it is built; here it comes before the prompts are made, which
  // for a batch that cannot fit would take all memory themselves.
  const MemoryPlan plan = plan_memory(config, engine_options);
  check_caps(plan, engine_options.caps);
  check_fits_machine(config, engine_options, plan, resolved_device(engine_options));
  const auto prompts = prompts_from_flags(flags, config, block, prompt_len);
  Bounds bounds = measure_bounds(flags, config, engine_options);

  const auto engine = make_engine(*source, engine_options);
  BenchRun run = run_blocks(*engine, prompts, block, gen_len);
  finish_bounds(bounds, engine_options);
  judge(run, bounds, policy);
  const BenchSetup setup{source->description(), prompt_len, gen_len,
                         static_cast<int64_t>(prompts.size()), policy};
  nlohmann::json j = bench_json(setup, run, bounds);
  print_report(setup, run, bounds, j);
  if (predicted) compare_prediction(*predicted, j);
  if (flags.count("json")) write_output_file(flags["json"].as<std::string>(), j.dump(2), "--json");
  if (flags.count("trace")) {
    write_output_file(flags["trace"].as<std::string>(), engine->trace().dump(), "--trace");
  }
  return 0;
}

}  // namespace strata::cli
