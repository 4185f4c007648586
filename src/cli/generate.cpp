#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "cli/commands.h"
#include "cli/pipeline_flags.h"
#include "core/error.h"
#include "core/log.h"
#include "model/weight_source.h"
#include "parallel/pipeline.h"
#include "runtime/generator.h"
#include "runtime/offload_engine.h"
#include "runtime/requests.h"
#include "tokenizer/text_stream.h"

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

// Every value of a repeatable string flag, in order (cxxopts keeps only the last otherwise, and
// its vector values would split at commas).
std::vector<std::string> all_values(const cxxopts::ParseResult& flags, const std::string& name) {
  std::vector<std::string> values;
  for (const auto& kv : flags.arguments()) {
    if (kv.key() == name) values.push_back(kv.value());
  }
  return values;
}

// A progress line on stderr, redrawn in place, when stderr is a terminal.
class Progress {
 public:
  explicit Progress(int64_t total) : total_(total), enabled_(isatty(STDERR_FILENO) != 0) {}
  bool enabled() const { return enabled_; }
  void add(int64_t tokens) {
    done_ += tokens;
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - begin_).count();
    const double rate = s > 0 ? done_ / s : 0;
    // Sequences that stop early make the total an upper bound, so the ETA is too.
    const double eta = rate > 0 ? (total_ - done_) / rate : 0;
    std::fprintf(stderr, "\r%lld / %lld tokens, %.2f tokens/s, ETA %.0f s   ",
                 static_cast<long long>(done_), static_cast<long long>(total_), rate, eta);
  }
  void finish() {
    if (enabled_ && done_ > 0) std::fprintf(stderr, "\n");
  }

 private:
  int64_t total_;
  int64_t done_ = 0;
  bool enabled_;
  std::chrono::steady_clock::time_point begin_ = std::chrono::steady_clock::now();
};

}  // namespace

int run_generate(int argc, char** argv) {
  cxxopts::Options options("strata generate", "Generate tokens for JSONL requests.");
  options.add_options()("model", "model directory or synthetic:ARCH",
                        cxxopts::value<std::string>())(
      "input", "JSONL requests: {\"id\", \"input_ids\"} or {\"id\", \"prompt\"}",
      cxxopts::value<std::string>())("prompt",
                                     "a text prompt (repeatable; ids 0, 1, ...) instead of --input",
                                     cxxopts::value<std::string>())(
      "stop",
      "end a sequence when its text contains STR; STR and what follows are cut "
      "(repeatable)",
      cxxopts::value<std::string>())(
      "tokenizer", "directory with the tokenizer files (default: the model directory)",
      cxxopts::value<std::string>())("output", "JSONL results (default: stdout)",
                                     cxxopts::value<std::string>())(
      "gen-len", "new tokens per sequence", cxxopts::value<int64_t>()->default_value("32"))(
      "greedy", "argmax decoding (the default)")("temperature", "sampling temperature",
                                                 cxxopts::value<float>()->default_value("1.0"))(
      "top-p", "nucleus sampling mass", cxxopts::value<float>()->default_value("1.0"))(
      "seed", "sampling seed", cxxopts::value<uint64_t>()->default_value("0"))(
      "ignore-eos", "do not stop at the end-of-sequence token")(
      "threads", "compute threads (0: OpenBLAS default)",
      cxxopts::value<int>()->default_value("0"));
  add_policy_flags(options, "16");
  add_pipeline_flags(options);
  const auto flags = parse_flags(options, argc, argv);
  STRATA_INPUT_CHECK(flags.count("model"), "--model is required");
  const auto prompts = all_values(flags, "prompt");
  const auto stops = all_values(flags, "stop");
  STRATA_INPUT_CHECK(flags.count("input") || !prompts.empty(), "--input or --prompt is required");
  STRATA_INPUT_CHECK(!(flags.count("input") && !prompts.empty()),
                     "give --input or --prompt, not both");
  for (const auto& stop : stops) STRATA_INPUT_CHECK(!stop.empty(), "--stop must not be empty");
  const int64_t gen_len = flags["gen-len"].as<int64_t>();
  STRATA_INPUT_CHECK(gen_len >= 1, "--gen-len must be >= 1");
  EngineOptions engine_options = engine_options_from_flags(flags);
  set_threads(flags["threads"].as<int>());
  GenerateOptions gen;
  gen.gen_len = gen_len;
  gen.ignore_eos = flags.count("ignore-eos") > 0;
  gen.sampling = sampling_from_flags(flags);

  // Everything the user gave is checked before the weights are read.
  auto requests =
      prompts.empty() ? read_requests(flags["input"].as<std::string>()) : prompt_requests(prompts);
  const std::string model = flags["model"].as<std::string>();
  const bool synthetic = model.rfind("synthetic:", 0) == 0;
  const std::string tokenizer_dir = flags.count("tokenizer") ? flags["tokenizer"].as<std::string>()
                                    : synthetic              ? ""
                                                             : model;
  std::optional<Tokenizer> tokenizer;
  if (!tokenizer_dir.empty()) tokenizer = Tokenizer::load(tokenizer_dir);
  STRATA_INPUT_CHECK(!flags.count("tokenizer") || tokenizer, tokenizer_dir,
                     ": no tokenizer (tokenizer.json or vocab.json + merges.txt)");
  STRATA_INPUT_CHECK(tokenizer || stops.empty(), "--stop needs a tokenizer and ",
                     synthetic ? model : tokenizer_dir, " has none; give --tokenizer DIR");
  tokenize_prompts(requests, tokenizer ? &*tokenizer : nullptr, synthetic ? model : tokenizer_dir);
  auto source = open_weight_source(model);
  for (const auto& r : requests) validate_request(r, source->config(), gen_len);
  engine_options.gen_len = gen_len;
  for (const auto& r : requests) {
    engine_options.max_prompt_len =
        std::max<int64_t>(engine_options.max_prompt_len, static_cast<int64_t>(r.input_ids.size()));
  }
  // Several ranks: this rank's slice, checked before any weight is read.
  auto pipeline = pipeline_rank_from_flags(flags, source->config(), engine_options);
  const bool writer = !pipeline || pipeline->transport->rank() == 0;
  std::ofstream file_out;
  std::ostream* out = &std::cout;
  if (flags.count("output") && writer) {
    const std::string path = flags["output"].as<std::string>();
    file_out.open(path, std::ios::trunc);
    STRATA_INPUT_CHECK(file_out.good(), path, ": cannot create");
    out = &file_out;
  }
  // Stop strings are watched per sequence of the batch being generated.
  std::vector<StopWatcher> watchers;
  if (!stops.empty()) {
    gen.stop_check = [&watchers](size_t seq, std::span<const int32_t> ids) {
      return watchers[seq].push(ids.back());
    };
  }
  auto write_result = [&](size_t i, Generation& g, const StopWatcher* w) {
    std::optional<std::string> text;
    if (w && w->stopped()) {
      g.output_ids.resize(w->kept_ids());
      g.token_logprobs.resize(w->kept_ids());
      text = w->text();
    } else if (tokenizer) {
      text = TextStream::text_of(*tokenizer, g.output_ids);
    }
    *out << result_json(requests[i], g, text).dump() << "\n";
  };
  Progress progress(static_cast<int64_t>(requests.size()) * gen_len);
  if (progress.enabled() && writer) gen.on_step = [&progress](int64_t n) { progress.add(n); };
  GenerationStats stats;
  double load_s = 0;
  if (pipeline) {
    std::vector<Prompt> all;
    for (size_t i = 0; i < requests.size(); ++i) {
      all.push_back({requests[i].input_ids, i});
      if (tokenizer && !stops.empty()) watchers.emplace_back(*tokenizer, stops);
    }
    auto results = parallel::pipeline_generate(*source, pipeline->options, *pipeline->transport,
                                               all, gen, &stats);
    if (!writer) return 0;
    for (size_t i = 0; i < requests.size(); ++i) {
      write_result(i, results[i], watchers.empty() ? nullptr : &watchers[i]);
    }
    out->flush();
    STRATA_INPUT_CHECK(out->good(), "writing the output failed (disk full?)");
  } else {
    plan_from_flags(flags, source->config(), engine_options,  // --policy auto
                    static_cast<int64_t>(requests.size()));
    const int64_t block = engine_options.policy.effective_batch();
    const auto load_begin = std::chrono::steady_clock::now();
    const auto engine = make_engine(*source, engine_options);
    load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_begin).count();
    for (size_t first = 0; first < requests.size(); first += static_cast<size_t>(block)) {
      const size_t last = std::min(requests.size(), first + static_cast<size_t>(block));
      std::vector<Prompt> batch;
      watchers.clear();
      for (size_t i = first; i < last; ++i) {
        batch.push_back({requests[i].input_ids, i});
        if (tokenizer && !stops.empty()) watchers.emplace_back(*tokenizer, stops);
      }
      auto results = engine->generate(batch, gen, &stats);
      for (size_t i = first; i < last; ++i) {
        write_result(i, results[i - first], watchers.empty() ? nullptr : &watchers[i - first]);
      }
      out->flush();
      STRATA_INPUT_CHECK(out->good(), "writing the output failed (disk full?)");
    }
  }
  progress.finish();
  const double total_s = stats.prefill_s + stats.decode_s;
  // Every sequence's first token comes from the prefill; the rest are decode tokens.
  const double decode_tokens =
      static_cast<double>(stats.generated_tokens) - static_cast<double>(requests.size());
  std::fprintf(stderr,
               "strata generate: %zu sequences on %d rank(s), %lld prompt + %lld generated "
               "tokens; load %.2f s, prefill %.2f s, decode %.2f s (%.2f tokens/s); %.2f "
               "generated tokens/s\n",
               requests.size(), pipeline ? pipeline->transport->size() : 1,
               static_cast<long long>(stats.prompt_tokens),
               static_cast<long long>(stats.generated_tokens), load_s, stats.prefill_s,
               stats.decode_s, stats.decode_s > 0 ? decode_tokens / stats.decode_s : 0.0,
               total_s > 0 ? stats.generated_tokens / total_s : 0.0);
  return 0;
}

}  // namespace strata::cli
