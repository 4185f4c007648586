#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "kernels/cpu/ops.h"
#include "model/weight_source.h"
#include "planner/cpu_probe.h"
#include "runtime/generator.h"
#include "runtime/sampler.h"

namespace strata::cli {

int run_bench(int argc, char** argv) {
  cxxopts::Options options("strata bench",
                           "Throughput of generation on random prompts, against the sgemm bound.");
  options.add_options()
      ("model", "model directory or synthetic:ARCH", cxxopts::value<std::string>())
      ("prompt-len", "tokens per prompt", cxxopts::value<int64_t>()->default_value("128"))
      ("gen-len", "new tokens per prompt", cxxopts::value<int64_t>()->default_value("32"))
      ("num-prompts", "prompts in all", cxxopts::value<int64_t>()->default_value("32"))
      ("gpu-batch-size", "sequences computed together (default: all prompts)",
       cxxopts::value<int64_t>())
      ("threads", "compute threads (0: OpenBLAS default)", cxxopts::value<int>()->default_value("0"))
      ("seed", "prompt seed", cxxopts::value<uint64_t>()->default_value("1"))
      ("json", "also write the figures to this JSON file", cxxopts::value<std::string>());
  const auto flags = parse_flags(options, argc, argv);
  STRATA_INPUT_CHECK(flags.count("model"), "--model is required");
  const int64_t prompt_len = flags["prompt-len"].as<int64_t>();
  const int64_t gen_len = flags["gen-len"].as<int64_t>();
  const int64_t n_prompts = flags["num-prompts"].as<int64_t>();
  const int64_t batch = flags.count("gpu-batch-size") ? flags["gpu-batch-size"].as<int64_t>() : n_prompts;
  STRATA_INPUT_CHECK(prompt_len >= 1, "--prompt-len must be >= 1");
  STRATA_INPUT_CHECK(gen_len >= 1, "--gen-len must be >= 1");
  STRATA_INPUT_CHECK(n_prompts >= 1, "--num-prompts must be >= 1");
  STRATA_INPUT_CHECK(batch >= 1, "--gpu-batch-size must be >= 1");
  set_threads(flags["threads"].as<int>());

  auto source = open_weight_source(flags["model"].as<std::string>());
  const OptConfig& config = source->config();
  STRATA_INPUT_CHECK(prompt_len + gen_len <= config.max_positions, "--prompt-len ", prompt_len,
                     " plus --gen-len ", gen_len, " is longer than max_position_embeddings ",
                     config.max_positions);
  std::vector<Prompt> prompts(static_cast<size_t>(n_prompts));
  RandomStream random(flags["seed"].as<uint64_t>(), 0);
  for (size_t i = 0; i < prompts.size(); ++i) {
    prompts[i].index = i;
    prompts[i].ids.push_back(config.bos_token_id);
    while (static_cast<int64_t>(prompts[i].ids.size()) < prompt_len) {
      prompts[i].ids.push_back(3 + static_cast<int32_t>(random.uniform() * (config.vocab_size - 3)));
    }
  }
  const double sgemm_gflops = measure_sgemm_gflops();
  OptModel model(*source);
  GenerateOptions gen;
  gen.gen_len = gen_len;
  gen.ignore_eos = true;
  cpu::gemm_counters().reset();
  GenerationStats stats;
  for (size_t first = 0; first < prompts.size(); first += static_cast<size_t>(batch)) {
    const size_t last = std::min(prompts.size(), first + static_cast<size_t>(batch));
    generate_batch(model, std::span<const Prompt>(prompts).subspan(first, last - first), gen, &stats);
  }
  const double total_s = stats.prefill_s + stats.decode_s;
  const double gemm_s = static_cast<double>(cpu::gemm_counters().nanoseconds.load()) * 1e-9;
  const double gemm_gflops = static_cast<double>(cpu::gemm_counters().flops.load()) / 1e9 / gemm_s;
  const double bound_s = stats.flops / (sgemm_gflops * 1e9);
  nlohmann::json j = {
      {"model", source->description()},
      {"prompt_len", prompt_len},
      {"gen_len", gen_len},
      {"num_prompts", n_prompts},
      {"gpu_batch_size", batch},
      {"prefill_s", stats.prefill_s},
      {"decode_s", stats.decode_s},
      {"prefill_tokens_per_s", stats.prompt_tokens / stats.prefill_s},
      {"decode_tokens_per_s", stats.decode_s > 0 ? (stats.generated_tokens - n_prompts) / stats.decode_s : 0.0},
      {"generation_tokens_per_s", stats.generated_tokens / total_s},
      {"total_gflop", stats.flops / 1e9},
      {"sgemm_peak_gflops", sgemm_gflops},
      {"compute_bound_fraction", bound_s / total_s},
      {"gemm_time_share", gemm_s / total_s},
      {"gemm_gflops", gemm_gflops},
  };
  std::printf("model %s, %lld prompts x %lld tokens + %lld new, batch %lld\n",
              source->description().c_str(), static_cast<long long>(n_prompts),
              static_cast<long long>(prompt_len), static_cast<long long>(gen_len),
              static_cast<long long>(batch));
  std::printf("prefill %.2f s (%.1f tok/s), decode %.2f s (%.2f tok/s)\n", stats.prefill_s,
              j["prefill_tokens_per_s"].get<double>(), stats.decode_s,
              j["decode_tokens_per_s"].get<double>());
  std::printf("generation throughput %.2f tok/s\n", j["generation_tokens_per_s"].get<double>());
  std::printf("sgemm peak %.1f GFLOP/s (2048^3, same run); work %.1f GFLOP -> compute bound %.2f s; "
              "achieved %.2f of the bound\n",
              sgemm_gflops, stats.flops / 1e9, bound_s, bound_s / total_s);
  std::printf("GEMM: %.2f s = %.1f%% of the time at %.1f GFLOP/s (%.2f of peak)\n", gemm_s,
              100.0 * gemm_s / total_s, gemm_gflops, gemm_gflops / sgemm_gflops);
  if (flags.count("json")) {
    const std::string path = flags["json"].as<std::string>();
    std::ofstream out(path);
    out << j.dump(2) << "\n";
    STRATA_INPUT_CHECK(out.good(), path, ": write failed");
  }
  return 0;
}

}  // namespace strata::cli
