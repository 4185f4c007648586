#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "cli/commands.h"
#include "cli/flag_values.h"
#include "cli/pipeline_flags.h"
#include "core/error.h"
#include "core/log.h"
#include "model/weight_source.h"
#include "parallel/pipeline.h"
#include "runtime/engine.h"
#include "runtime/memory_plan.h"
#include "runtime/generator.h"
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
  s.temperature = static_cast<float>(
      real_flag(flags, "temperature", 0, std::numeric_limits<double>::infinity(), true));
  s.top_p = static_cast<float>(real_flag(flags, "top-p", 0, 1, true));
  s.seed = uint64_flag(flags, "seed");
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

void add_generate_flags(cxxopts::Options& options) {
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
      "gen-len", "new tokens per sequence", number_value("32"))("greedy",
                                                                "argmax decoding (the default)")(
      "temperature", "sampling temperature", number_value("1.0"))("top-p", "nucleus sampling mass",
                                                                  number_value("1.0"))(
      "seed", "sampling seed", number_value("0"))("ignore-eos",
                                                  "do not stop at the end-of-sequence token")(
      "threads", "compute threads (0: OpenBLAS default)", number_value("0"));
  add_policy_flags(options, "16");
  add_pipeline_flags(options);
}

// The requests, tokenized, and the tokenizer that gives their text.
struct Inputs {
  std::vector<Request> requests;
  std::optional<Tokenizer> tokenizer;
};

// Reads and tokenizes the requests; every check here comes before the weights are read.
Inputs read_inputs(const cxxopts::ParseResult& flags, const std::vector<std::string>& prompts,
                   const std::vector<std::string>& stops) {
  Inputs in;
  in.requests =
      prompts.empty() ? read_requests(flags["input"].as<std::string>()) : prompt_requests(prompts);
  const std::string model = flags["model"].as<std::string>();
  const bool synthetic = model.rfind("synthetic:", 0) == 0;
  const std::string tokenizer_dir = flags.count("tokenizer") ? flags["tokenizer"].as<std::string>()
                                    : synthetic              ? ""
                                                             : model;
  if (!tokenizer_dir.empty()) in.tokenizer = Tokenizer::load(tokenizer_dir);
  STRATA_INPUT_CHECK(!flags.count("tokenizer") || in.tokenizer, tokenizer_dir,
                     ": no tokenizer (tokenizer.json or vocab.json + merges.txt)");
  STRATA_INPUT_CHECK(in.tokenizer || stops.empty(), "--stop needs a tokenizer and ",
                     synthetic ? model : tokenizer_dir, " has none; give --tokenizer DIR");
  tokenize_prompts(in.requests, in.tokenizer ? &*in.tokenizer : nullptr,
                   synthetic ? model : tokenizer_dir);
  return in;
}

// Writes each sequence's result as a JSONL line, cut at its stop string: to --output, or stdout.
// Holds the stop watchers of the batch being generated, which `gen.stop_check` reads.
class ResultSink {
 public:
  ResultSink(const cxxopts::ParseResult& flags, bool writer, const Inputs& in,
             const std::vector<std::string>& stops)
      : in_(in), stops_(stops) {
    if (flags.count("output") && writer) {
      const std::string path = flags["output"].as<std::string>();
      file_.open(path, std::ios::trunc);
      STRATA_INPUT_CHECK(file_.good(), path, ": cannot create");
      out_ = &file_;
    }
  }
  ResultSink(const ResultSink&) = delete;
  ResultSink& operator=(const ResultSink&) = delete;

  size_t size() const { return in_.requests.size(); }

  void watch_stops(GenerateOptions& gen) {
    if (stops_.empty()) return;
    gen.stop_check = [this](size_t seq, std::span<const int32_t> ids) {
      return watchers_[seq].push(ids.back());
    };
  }

  // Requests [first, last) as prompts, with a fresh stop watcher each.
  std::vector<Prompt> start(size_t first, size_t last) {
    std::vector<Prompt> batch;
    watchers_.clear();
    for (size_t i = first; i < last; ++i) {
      batch.push_back({in_.requests[i].input_ids, i});
      if (in_.tokenizer && !stops_.empty()) {
        watchers_.emplace_back(*in_.tokenizer, stops_, continues(i));
      }
    }
    return batch;
  }

  // The results of requests [first, last), in order.
  void write(size_t first, size_t last, std::vector<Generation>& results) {
    for (size_t i = first; i < last; ++i) {
      write_one(i, results[i - first], watchers_.empty() ? nullptr : &watchers_[i - first]);
    }
    out_->flush();
    STRATA_INPUT_CHECK(out_->good(), "writing the output failed (disk full?)");
  }

 private:
  bool continues(size_t i) const {
    return TextStream::has_text(*in_.tokenizer, in_.requests[i].input_ids);
  }
  void write_one(size_t i, Generation& g, const StopWatcher* w) {
    std::optional<std::string> text;
    if (w && w->stopped()) {
      g.output_ids.resize(w->kept_ids());
      g.token_logprobs.resize(w->kept_ids());
      text = w->text();
    } else if (in_.tokenizer) {
      text = TextStream::text_of(*in_.tokenizer, g.output_ids, continues(i));
    }
    *out_ << result_json(in_.requests[i], g, text).dump() << "\n";
  }

  const Inputs& in_;
  const std::vector<std::string>& stops_;
  std::ofstream file_;
  std::ostream* out_ = &std::cout;
  std::vector<StopWatcher> watchers_;
};

struct GenerateRun {
  GenerationStats stats;
  double load_s = 0;  // loading the weights (one rank)
};

// One rank: a block of sequences at a time, each block written as it completes.
GenerateRun generate_blocks(const cxxopts::ParseResult& flags, const WeightSource& source,
                            EngineOptions& options, const GenerateOptions& gen, ResultSink& sink) {
  const size_t n_requests = sink.size();
  GenerateRun run;
  plan_from_flags(flags, source.config(), options,  // --policy auto
                  static_cast<int64_t>(n_requests));
  const int64_t block = options.policy.effective_batch();
  const auto load_begin = std::chrono::steady_clock::now();
  const auto engine = make_engine(source, options);
  run.load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_begin).count();
  for (size_t first = 0; first < n_requests; first += static_cast<size_t>(block)) {
    const size_t last = std::min(n_requests, first + static_cast<size_t>(block));
    const std::vector<Prompt> batch = sink.start(first, last);
    auto results = engine->generate(batch, gen, &run.stats);
    sink.write(first, last, results);
  }
  return run;
}

void print_summary(const GenerateRun& run, size_t n_requests, int n_ranks) {
  const GenerationStats& stats = run.stats;
  const double total_s = stats.prefill_s + stats.decode_s;
  // Every sequence's first token comes from the prefill; the rest are decode tokens.
  const double decode_tokens =
      static_cast<double>(stats.generated_tokens) - static_cast<double>(n_requests);
  std::fprintf(stderr,
               "strata generate: %zu sequences on %d rank(s), %lld prompt + %lld generated "
               "tokens; load %.2f s, prefill %.2f s, decode %.2f s (%.2f tokens/s); %.2f "
               "generated tokens/s\n",
               n_requests, n_ranks, static_cast<long long>(stats.prompt_tokens),
               static_cast<long long>(stats.generated_tokens), run.load_s, stats.prefill_s,
               stats.decode_s, stats.decode_s > 0 ? decode_tokens / stats.decode_s : 0.0,
               total_s > 0 ? stats.generated_tokens / total_s : 0.0);
}

}  // namespace

int run_generate(int argc, char** argv) {
  cxxopts::Options options("strata generate", "Generate tokens for JSONL requests.");
  add_generate_flags(options);
  const auto flags = parse_flags(options, argc, argv);
  STRATA_INPUT_CHECK(flags.count("model"), "--model is required");
  const auto prompts = all_values(flags, "prompt");
  const auto stops = all_values(flags, "stop");
  STRATA_INPUT_CHECK(flags.count("input") || !prompts.empty(), "--input or --prompt is required");
  STRATA_INPUT_CHECK(!(flags.count("input") && !prompts.empty()),
                     "give --input or --prompt, not both");
  for (const auto& stop : stops) STRATA_INPUT_CHECK(!stop.empty(), "--stop must not be empty");
  const int64_t gen_len = int_flag(flags, "gen-len", 1, kMaxLengthFlag);
  EngineOptions engine_options = engine_options_from_flags(flags);
  set_threads(threads_flag(flags));
  GenerateOptions gen;
  gen.gen_len = gen_len;
  gen.ignore_eos = flags.count("ignore-eos") > 0;
  gen.sampling = sampling_from_flags(flags);

  Inputs in = read_inputs(flags, prompts, stops);
  const size_t n_requests = in.requests.size();
  auto source = open_weight_source(flags["model"].as<std::string>());
  for (const auto& r : in.requests) validate_request(r, source->config(), gen_len);
  engine_options.gen_len = gen_len;
  for (const auto& r : in.requests) {
    engine_options.max_prompt_len =
        std::max<int64_t>(engine_options.max_prompt_len, static_cast<int64_t>(r.input_ids.size()));
  }
  // Several ranks: this rank's slice, checked before any weight is read.
  auto pipeline = pipeline_rank_from_flags(flags, source->config(), engine_options);
  const bool writer = !pipeline || pipeline->transport->rank() == 0;
  ResultSink sink(flags, writer, in, stops);
  sink.watch_stops(gen);
  Progress progress(static_cast<int64_t>(n_requests) * gen_len);
  if (progress.enabled() && writer) gen.on_step = [&progress](int64_t n) { progress.add(n); };
  GenerateRun run;
  if (pipeline) {  // rank 0 writes every result at the end
    auto results = parallel::pipeline_generate(*source, pipeline->options, *pipeline->transport,
                                               sink.start(0, n_requests), gen, &run.stats);
    if (!writer) return 0;
    sink.write(0, n_requests, results);
  } else {
    run = generate_blocks(flags, *source, engine_options, gen, sink);
  }
  progress.finish();
  print_summary(run, n_requests, pipeline ? pipeline->transport->size() : 1);
  return 0;
}

}  // namespace strata::cli
