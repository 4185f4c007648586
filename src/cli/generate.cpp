#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "cli/commands.h"
#include "core/error.h"
#include "core/log.h"
#include "model/weight_source.h"
#include "runtime/generator.h"
#include "runtime/requests.h"

namespace strata::cli {
namespace {

SamplingParams sampling_from_flags(const cxxopts::ParseResult& flags) {
  SamplingParams s;
  const bool sampled = flags.count("temperature") || flags.count("top-p");
  STRATA_INPUT_CHECK(!(sampled && flags.count("greedy")),
                     "--greedy cannot be combined with --temperature or --top-p");
  s.greedy = !sampled;
  s.temperature = flags["temperature"].as<float>();
  s.top_p = flags["top-p"].as<float>();
  s.seed = flags["seed"].as<uint64_t>();
  STRATA_INPUT_CHECK(s.temperature > 0, "--temperature must be > 0 (use --greedy for argmax)");
  STRATA_INPUT_CHECK(s.top_p > 0 && s.top_p <= 1, "--top-p must be in (0, 1]");
  return s;
}

}  // namespace

int run_generate(int argc, char** argv) {
  cxxopts::Options options("strata generate", "Generate tokens for JSONL requests.");
  options.add_options()
      ("model", "model directory or synthetic:ARCH", cxxopts::value<std::string>())
      ("input", "JSONL requests: {\"id\", \"input_ids\"}", cxxopts::value<std::string>())
      ("output", "JSONL results (default: stdout)", cxxopts::value<std::string>())
      ("gen-len", "new tokens per sequence", cxxopts::value<int64_t>()->default_value("32"))
      ("greedy", "argmax decoding (the default)")
      ("temperature", "sampling temperature", cxxopts::value<float>()->default_value("1.0"))
      ("top-p", "nucleus sampling mass", cxxopts::value<float>()->default_value("1.0"))
      ("seed", "sampling seed", cxxopts::value<uint64_t>()->default_value("0"))
      ("ignore-eos", "do not stop at the end-of-sequence token")
      ("gpu-batch-size", "sequences computed together",
       cxxopts::value<int64_t>()->default_value("16"))
      ("threads", "compute threads (0: OpenBLAS default)",
       cxxopts::value<int>()->default_value("0"));
  const auto flags = parse_flags(options, argc, argv);
  STRATA_INPUT_CHECK(flags.count("model"), "--model is required");
  STRATA_INPUT_CHECK(flags.count("input"), "--input is required");
  const int64_t gen_len = flags["gen-len"].as<int64_t>();
  const int64_t batch_size = flags["gpu-batch-size"].as<int64_t>();
  STRATA_INPUT_CHECK(gen_len >= 1, "--gen-len must be >= 1");
  STRATA_INPUT_CHECK(batch_size >= 1, "--gpu-batch-size must be >= 1");
  set_threads(flags["threads"].as<int>());
  GenerateOptions gen;
  gen.gen_len = gen_len;
  gen.ignore_eos = flags.count("ignore-eos") > 0;
  gen.sampling = sampling_from_flags(flags);

  // Everything the user gave is checked before the weights are read.
  auto requests = read_requests(flags["input"].as<std::string>());
  auto source = open_weight_source(flags["model"].as<std::string>());
  for (const auto& r : requests) {
    STRATA_INPUT_CHECK(!r.prompt, r.where, ": 'prompt' needs a tokenizer; give 'input_ids'");
    validate_request(r, source->config(), gen_len);
  }
  std::ofstream file_out;
  std::ostream* out = &std::cout;
  if (flags.count("output")) {
    const std::string path = flags["output"].as<std::string>();
    file_out.open(path, std::ios::trunc);
    STRATA_INPUT_CHECK(file_out.good(), path, ": cannot create");
    out = &file_out;
  }

  const auto load_begin = std::chrono::steady_clock::now();
  OptModel model(*source);
  const double load_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - load_begin).count();
  GenerationStats stats;
  for (size_t first = 0; first < requests.size(); first += static_cast<size_t>(batch_size)) {
    const size_t last = std::min(requests.size(), first + static_cast<size_t>(batch_size));
    std::vector<Prompt> prompts;
    for (size_t i = first; i < last; ++i) prompts.push_back({requests[i].input_ids, i});
    const auto results = generate_batch(model, prompts, gen, &stats);
    for (size_t i = first; i < last; ++i) {
      *out << result_json(requests[i], results[i - first]).dump() << "\n";
    }
    out->flush();
    STRATA_INPUT_CHECK(out->good(), "writing the output failed (disk full?)");
  }
  const double total_s = stats.prefill_s + stats.decode_s;
  std::fprintf(stderr,
               "strata generate: %zu sequences, %lld prompt + %lld generated tokens; load %.2f s, "
               "prefill %.2f s, decode %.2f s; %.2f generated tokens/s\n",
               requests.size(), static_cast<long long>(stats.prompt_tokens),
               static_cast<long long>(stats.generated_tokens), load_s, stats.prefill_s,
               stats.decode_s, total_s > 0 ? stats.generated_tokens / total_s : 0.0);
  return 0;
}

}  // namespace strata::cli
