#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <numeric>
#include <unordered_map>

#include "cli/commands.h"
#include "cli/flag_values.h"
#include "cli/generate_output.h"
#include "cli/pipeline_flags.h"
#include "core/error.h"
#include "core/log.h"
#include "core/units.h"
#include "model/model_dir.h"
#include "model/weight_source.h"
#include "parallel/pipeline.h"
#include "runtime/engine.h"
#include "runtime/generator.h"
#include "runtime/job_output.h"
#include "runtime/memory_plan.h"
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

// Progress on stderr: a line redrawn in place on a terminal; elsewhere (Slurm, nohup) a line
// every `interval_s` seconds, so logs show it.
class Progress {
 public:
  Progress(int64_t requests, int64_t tokens, double interval_s)
      : requests_(requests),
        total_(tokens),
        interval_s_(interval_s),
        tty_(isatty(STDERR_FILENO) != 0) {}
  bool enabled() const { return tty_ || interval_s_ > 0; }
  void add(int64_t tokens, int64_t requests_done) {
    done_ += tokens;
    requests_done_ = requests_done;
    const auto now = std::chrono::steady_clock::now();
    if (!tty_ && std::chrono::duration<double>(now - last_).count() < interval_s_) return;
    last_ = now;
    draw();
  }
  // The last line: on a terminal the line ends; elsewhere the final counts are written.
  void finish(int64_t requests_done) {
    requests_done_ = requests_done;
    if (!tty_ && interval_s_ > 0 && requests_ > 0) draw();
    if (tty_ && drawn_) std::fprintf(stderr, "\n");
  }

 private:
  void draw() {
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - begin_).count();
    const double rate = s > 0 ? done_ / s : 0;
    // Sequences that stop early make the total an upper bound, so the ETA is too.
    const double eta = rate > 0 ? (total_ - done_) / rate : 0;
    std::fprintf(stderr,
                 "%sprogress: %lld / %lld requests, %lld / %lld tokens, %.2f tokens/s, "
                 "ETA %.0f s%s",
                 tty_ ? "\r" : "", static_cast<long long>(requests_done_),
                 static_cast<long long>(requests_), static_cast<long long>(done_),
                 static_cast<long long>(total_), rate, eta, tty_ ? "   " : "\n");
    drawn_ = true;
  }

  int64_t requests_, total_;
  double interval_s_;
  bool tty_;
  bool drawn_ = false;
  int64_t done_ = 0, requests_done_ = 0;
  std::chrono::steady_clock::time_point begin_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_ = begin_;
};

void add_generate_flags(cxxopts::Options& options) {
  options.add_options()("model", "model directory or synthetic:ARCH",
                        cxxopts::value<std::string>())(
      "input", "JSONL requests: {\"id\", \"input_ids\" | \"prompt\"} or OpenAI batch lines",
      cxxopts::value<std::string>())("prompt",
                                     "a text prompt (repeatable; ids 0, 1, ...) instead of --input",
                                     cxxopts::value<std::string>())(
      "stop",
      "end a sequence when its text contains STR; STR and what follows are cut "
      "(repeatable)",
      cxxopts::value<std::string>())(
      "tokenizer", "directory with the tokenizer files (default: the model directory)",
      cxxopts::value<std::string>())(
      "output", "JSONL results, appended as they finish; a re-run resumes (default: stdout)",
      cxxopts::value<std::string>())("gen-len", "new tokens per sequence", number_value("32"))(
      "greedy", "argmax decoding (the default)")(
      "temperature", "sampling temperature", number_value("1.0"))("top-p", "nucleus sampling mass",
                                                                  number_value("1.0"))(
      "seed", "sampling seed", number_value("0"))("ignore-eos",
                                                  "do not stop at the end-of-sequence token")(
      "restart", "start --output over instead of resuming it")(
      "fsync-interval", "seconds between syncs of --output (0: after every line)",
      number_value("2"))(
      "progress-interval", "seconds between progress lines when stderr is not a terminal (0: none)",
      number_value("30"))("threads", "compute threads (0: one per core)", number_value("0"));
  add_policy_flags(options, "16");
  add_pipeline_flags(options);
}

// Reads and tokenizes the requests; every check here comes before the weights are read.
Inputs read_inputs(const cxxopts::ParseResult& flags, const std::vector<std::string>& prompts,
                   const std::vector<std::string>& stops) {
  Inputs in;
  std::string hashed;
  if (prompts.empty()) {
    const std::string path = flags["input"].as<std::string>();
    RequestFile file = read_request_file(path);
    in.format = file.format;
    in.requests = std::move(file.requests);
    std::ifstream bytes(path, std::ios::binary);
    hashed.assign(std::istreambuf_iterator<char>(bytes), std::istreambuf_iterator<char>());
  } else {
    in.requests = prompt_requests(prompts);
    for (const auto& p : prompts) hashed += nlohmann::json(p).dump() + "\n";
  }
  in.job_hash = content_hash(hashed);
  in.stops = stops;
  const std::string model = flags["model"].as<std::string>();
  in.model = model;
  const bool synthetic = model.rfind("synthetic:", 0) == 0;
  const std::string tokenizer_dir = flags.count("tokenizer") ? flags["tokenizer"].as<std::string>()
                                    : synthetic              ? ""
                                                             : resolve_model_dir(model);
  if (!tokenizer_dir.empty()) in.tokenizer = Tokenizer::load(tokenizer_dir);
  STRATA_INPUT_CHECK(!flags.count("tokenizer") || in.tokenizer, tokenizer_dir,
                     ": no tokenizer (tokenizer.json or vocab.json + merges.txt)");
  STRATA_INPUT_CHECK(in.tokenizer || stops.empty(), "--stop needs a tokenizer and ",
                     synthetic ? model : tokenizer_dir, " has none; give --tokenizer DIR");
  const bool batch = in.format == RequestFormat::kOpenAiBatch;
  tokenize_prompts(in.requests, in.tokenizer ? &*in.tokenizer : nullptr,
                   synthetic ? model : tokenizer_dir, batch);
  for (auto& r : in.requests) {
    if (in.tokenizer || !r.params.stop || r.error) continue;
    const std::string why =
        "'stop' needs a tokenizer and " + (synthetic ? model : tokenizer_dir) + " has none";
    STRATA_INPUT_CHECK(batch, r.where, ": ", why);
    r.error = RequestError{"tokenizer_missing", why};
  }
  return in;
}

// Forced (echo) tokens: always in strata's format, where prompt_logprobs is the point of echo;
// in the batch format only when logprobs are asked for (else echo only prepends the text).
bool scores_prompt(const Inputs& in, const Request& r) {
  return r.params.echo && (in.format == RequestFormat::kNative || r.params.logprobs);
}

// The prompt a request runs as: its own length, sampling and echo over the flags'.
Prompt prompt_of(const Inputs& in, size_t i, const GenerateOptions& gen) {
  const Request& r = in.requests[i];
  Prompt p;
  p.ids = r.input_ids;
  p.index = i;
  p.gen_len = r.params.max_tokens.value_or(gen.gen_len);
  const RequestParams& q = r.params;
  if (q.temperature || q.top_p || q.seed) p.sampling = request_sampling(q, gen.sampling);
  p.echo = scores_prompt(in, r);
  p.top_logprobs =
      (in.format == RequestFormat::kOpenAiBatch ? q.logprobs : q.top_logprobs).value_or(0);
  return p;
}

// Requests that cannot run on this model: an input error in strata's format, an error line in
// the batch format.
void check_requests(Inputs& in, const ModelConfig& config, const GenerateOptions& gen) {
  for (auto& r : in.requests) {
    if (r.error) continue;
    const int64_t new_tokens = r.params.max_tokens.value_or(gen.gen_len);
    if (in.format == RequestFormat::kNative) {
      validate_request(r, config, new_tokens);
    } else {
      r.error = request_problem(r, config, new_tokens);
    }
  }
}

// What tells this job's output apart from another's (runtime/job_output.h).
nlohmann::json job_of(const cxxopts::ParseResult& flags, const Inputs& in,
                      const GenerateOptions& gen, const Policy& policy) {
  return {{"format", in.format == RequestFormat::kOpenAiBatch ? "openai-batch" : "strata"},
          {"model", flags["model"].as<std::string>()},
          {"tokenizer", flags.count("tokenizer") ? flags["tokenizer"].as<std::string>() : ""},
          {"input_hash", in.job_hash},
          {"requests", in.requests.size()},
          {"gen_len", gen.gen_len},
          {"greedy", gen.sampling.greedy},
          {"temperature", gen.sampling.temperature},
          {"top_p", gen.sampling.top_p},
          {"seed", gen.sampling.seed},
          {"ignore_eos", gen.ignore_eos},
          {"stop", in.stops},
          {"compress_weight", policy.compress_weight},
          {"compress_cache", policy.compress_cache},
          {"compress_bits", policy.compress_bits}};
}

// Which requests an existing --output already holds (rank 0; the others get it from rank 0).
std::vector<bool> done_requests(const std::string& output, const Inputs& in,
                                const nlohmann::json& job, bool restart, ExistingOutput& existing) {
  const bool batch = in.format == RequestFormat::kOpenAiBatch;
  existing = read_existing_output(output, job, batch ? "custom_id" : "id", restart);
  std::unordered_map<std::string, size_t> index_of;
  for (size_t i = 0; i < in.requests.size(); ++i) index_of[in.requests[i].id.dump()] = i;
  std::vector<bool> done(in.requests.size(), false);
  for (const auto& id : existing.ids) {
    const auto at = index_of.find(id.dump());
    STRATA_INPUT_CHECK(at != index_of.end(), output, ": holds a result for id ", id.dump(),
                       " that is not in the input; rerun with --restart to start over");
    done[at->second] = true;
  }
  return done;
}

// `text` as one shell word.
std::string shell_quoted(const std::string& text) {
  if (!text.empty() && text.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                              "0123456789-_./:=,+@%") == std::string::npos) {
    return text;
  }
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

void check_output_path(const cxxopts::ParseResult& flags) {
  if (!flags.count("output")) return;
  const std::string out = flags["output"].as<std::string>();
  STRATA_INPUT_CHECK(!out.empty(), "--output must not be empty");
  if (!flags.count("input")) return;
  const std::string input = flags["input"].as<std::string>();
  std::error_code ec;
  const bool same =
      std::filesystem::equivalent(out, input, ec) ||
      std::filesystem::weakly_canonical(out, ec) == std::filesystem::weakly_canonical(input, ec);
  STRATA_INPUT_CHECK(!same, "--output ", out,
                     " is the --input file: results would overwrite the requests");
}

struct GenerateRun {
  GenerationStats stats;
  double load_s = 0;  // loading the weights (one rank)
  // This rank's KV cache over every tier, and the tokens it holds per sequence.
  uint64_t cache_bytes = 0;
  int64_t cache_tokens = 0;
  void size_cache(const ModelConfig& config, const EngineOptions& options) {
    const MemoryPlan plan = plan_memory(config, options);
    cache_bytes = 0;
    for (uint64_t b : plan.cache) cache_bytes += b;
    cache_tokens = options.max_prompt_len + options.gen_len;
  }
};

void write_trace(const std::string& path, const nlohmann::json& trace) {
  std::ofstream out(path);
  out << trace.dump();
  STRATA_INPUT_CHECK(out.good(), path, ": cannot write the trace");
}

// One rank: a block of sequences at a time; each result is written as its sequence finishes.
// Blocks are cut from every runnable request, so a resumed run computes each block it runs
// with the same sequences as the first run (results do not change with the batch's rounding);
// blocks without a `needed` sequence are skipped.
GenerateRun generate_blocks(const cxxopts::ParseResult& flags, const WeightSource& source,
                            EngineOptions& options, const GenerateOptions& gen,
                            const std::vector<Prompt>& prompts, const std::vector<bool>& needed,
                            ResultWriter& results, const std::function<void()>& on_engine_ready) {
  const size_t n = prompts.size();
  GenerateRun run;
  plan_from_flags(flags, source.config(), options,  // --policy auto
                  static_cast<int64_t>(n));
  const auto block = static_cast<size_t>(options.policy.effective_batch());
  const auto load_begin = std::chrono::steady_clock::now();
  const auto engine = make_engine(source, options);
  run.size_cache(source.config(), options);
  run.load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_begin).count();
  on_engine_ready();
  for (size_t first = 0; first < n; first += block) {
    const size_t last = std::min(n, first + block);
    if (std::find(needed.begin() + first, needed.begin() + last, true) == needed.begin() + last) {
      continue;
    }
    std::vector<size_t> call(last - first);
    std::iota(call.begin(), call.end(), first);
    results.set_call(std::move(call));
    engine->generate(std::span(prompts).subspan(first, last - first), gen, &run.stats);
  }
  if (flags.count("trace")) write_trace(flags["trace"].as<std::string>(), engine->trace());
  return run;
}

// Several ranks: the pipeline's waves (n_groups blocks) that hold a `needed` sequence, whole.
std::vector<size_t> needed_waves(const std::vector<bool>& needed, const EngineOptions& options) {
  const auto wave = static_cast<size_t>(options.policy.effective_batch() * options.n_groups);
  std::vector<size_t> call;
  for (size_t first = 0; first < needed.size(); first += wave) {
    const size_t last = std::min(needed.size(), first + wave);
    if (std::find(needed.begin() + first, needed.begin() + last, true) == needed.begin() + last) {
      continue;
    }
    for (size_t i = first; i < last; ++i) call.push_back(i);
  }
  return call;
}

void print_summary(const GenerateRun& run, size_t n_requests, int n_ranks) {
  const GenerationStats& stats = run.stats;
  const double total_s = stats.prefill_s + stats.decode_s;
  // Every sequence's first token comes from the prefill; the rest are decode tokens.
  const double decode_tokens =
      static_cast<double>(stats.generated_tokens) - static_cast<double>(n_requests);
  const std::string cache =
      run.cache_tokens == 0 ? ""
                            : "; KV cache " + format_bytes(static_cast<double>(run.cache_bytes)) +
                                  (n_ranks > 1 ? " on rank 0" : "") + " (" +
                                  std::to_string(run.cache_tokens) + " tokens per sequence)";
  std::fprintf(stderr,
               "strata generate: %zu sequences on %d rank(s), %lld prompt + %lld generated "
               "tokens; load %.2f s, prefill %.2f s, decode %.2f s (%.2f tokens/s); %.2f "
               "generated tokens/s%s\n",
               n_requests, n_ranks, static_cast<long long>(stats.prompt_tokens),
               static_cast<long long>(stats.generated_tokens), run.load_s, stats.prefill_s,
               stats.decode_s, stats.decode_s > 0 ? decode_tokens / stats.decode_s : 0.0,
               total_s > 0 ? stats.generated_tokens / total_s : 0.0, cache.c_str());
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
  constexpr double kDay = 86400;
  const double fsync_s = real_flag(flags, "fsync-interval", 0, kDay);
  const double progress_s = real_flag(flags, "progress-interval", 0, kDay);
  const bool restart = flags.count("restart") > 0;
  STRATA_INPUT_CHECK(!restart || flags.count("output"), "--restart needs --output");
  check_output_path(flags);
  EngineOptions engine_options = engine_options_from_flags(flags);
  set_threads(threads_flag(flags));
  GenerateOptions gen;
  gen.gen_len = gen_len;
  gen.ignore_eos = flags.count("ignore-eos") > 0;
  gen.sampling = sampling_from_flags(flags);

  // The model's config and headers (no weights yet), then the requests checked against it.
  auto source = open_weight_source(flags["model"].as<std::string>());
  Inputs in = read_inputs(flags, prompts, stops);
  const size_t n_requests = in.requests.size();
  check_requests(in, source->config(), gen);
  const nlohmann::json job = job_of(flags, in, gen, engine_options.policy);
  // The engine is sized for every request that runs, done or not, so a resumed run computes as
  // the first did: activations for the longest prefill (an echoed prompt's is one token), the
  // KV cache for the longest sequence (its prompt and new tokens), not the longest prompt plus
  // the most steps, which a mixed job takes from different requests.
  std::vector<Prompt> all;
  for (size_t i = 0; i < n_requests; ++i) all.push_back(prompt_of(in, i, gen));
  int64_t prefill = 1, longest = 2;
  for (size_t i = 0; i < n_requests; ++i) {
    if (in.requests[i].error) continue;
    prefill = std::max<int64_t>(prefill, static_cast<int64_t>(all[i].prefill_ids().size()));
    longest = std::max<int64_t>(longest,
                                static_cast<int64_t>(all[i].ids.size()) + all[i].new_tokens(gen));
  }
  engine_options.max_prompt_len = prefill;
  engine_options.gen_len = std::max<int64_t>(1, longest - prefill);
  // Several ranks: this rank's slice, checked before any weight is read.
  auto pipeline = pipeline_rank_from_flags(flags, source->config(), engine_options);
  const bool writer = !pipeline || pipeline->transport->rank() == 0;
  const std::string output = flags.count("output") ? flags["output"].as<std::string>() : "";

  // What is already done: rank 0 reads the output, and tells the other ranks.
  ExistingOutput existing;
  std::vector<bool> done(n_requests, false);
  if (writer && !output.empty()) done = done_requests(output, in, job, restart, existing);
  if (pipeline) {
    std::string text(n_requests, '0');
    for (size_t i = 0; i < n_requests; ++i) text[i] = done[i] ? '1' : '0';
    text = parallel::scatter_text(
        *pipeline->transport,
        std::vector<std::string>(static_cast<size_t>(pipeline->transport->size()), text));
    for (size_t i = 0; i < n_requests; ++i) done[i] = text[i] == '1';
  }
  // The runnable requests and which of them are still needed, the most steps first (input order
  // among equals): a block runs as many steps as its longest sequence, so blocks of like
  // lengths stay full. The order is a function of the input and flags alone, so a resumed run
  // cuts the blocks the first run did.
  std::vector<size_t> order, unrun;
  for (size_t i = 0; i < n_requests; ++i) {
    if (in.requests[i].error || all[i].steps(gen) == 0) {
      if (!done[i]) unrun.push_back(i);
      continue;
    }
    order.push_back(i);
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return all[a].steps(gen) > all[b].steps(gen); });
  std::vector<Prompt> runnable;
  std::vector<size_t> request_of;
  std::vector<bool> needed;
  for (size_t i : order) {
    runnable.push_back(all[i]);
    request_of.push_back(i);
    needed.push_back(!done[i]);
  }
  const auto n_needed = static_cast<size_t>(std::count(needed.begin(), needed.end(), true));
  gen.gen_len = std::max<int64_t>(1, max_steps(runnable, gen));
  const size_t n_done = n_requests - n_needed - unrun.size();
  if (writer && n_done > 0) {
    std::fprintf(stderr, "strata generate: resuming %s: %zu of %zu results already there%s\n",
                 output.c_str(), n_done, n_requests,
                 existing.torn ? " (a torn last line is dropped)" : "");
  }

  std::vector<bool> written(needed.size());
  for (size_t i = 0; i < needed.size(); ++i) written[i] = !needed[i];
  ResultWriter results(in, runnable, request_of, written);
  results.hook(gen);
  std::optional<InterruptNotice> notice;
  if (writer && !output.empty()) {
    std::string command = "strata";
    for (int i = 0; i < argc; ++i) command += " " + shell_quoted(argv[i]);
    notice.emplace(output, command);
    notice->set(static_cast<int64_t>(existing.ids.size()), -1);
    results.notify(&*notice, static_cast<int64_t>(existing.ids.size()));
  }
  // Only once the engine is built does the output change: a run that fails at start leaves it.
  auto open_output = [&] {
    if (!writer) return;
    if (!output.empty()) {
      results.open(std::make_unique<DurableOutput>(output, job, existing.complete_bytes, fsync_s));
    }
    for (size_t i : unrun) results.write_without_run(i);
  };
  int64_t total_tokens = 0;
  for (size_t i = 0; i < runnable.size(); ++i)
    total_tokens += needed[i] ? runnable[i].steps(gen) : 0;
  Progress progress(static_cast<int64_t>(n_needed), total_tokens, progress_s);
  if (writer) {
    gen.on_step = [&](int64_t n) {
      if (progress.enabled())
        progress.add(n, results.written() - static_cast<int64_t>(unrun.size()));
      results.tick();
    };
  }
  GenerateRun run;
  if (n_needed == 0) {
    open_output();
  } else if (pipeline) {  // rank 0 writes each result as its sequence finishes
    std::vector<size_t> call = needed_waves(needed, pipeline->options);
    std::vector<Prompt> wave_prompts;
    for (size_t i : call) wave_prompts.push_back(runnable[i]);
    results.set_call(std::move(call));
    nlohmann::json trace;
    run.size_cache(source->config(), pipeline->options);
    parallel::pipeline_generate(*source, pipeline->options, *pipeline->transport, wave_prompts, gen,
                                &run.stats, open_output, flags.count("trace") ? &trace : nullptr);
    if (flags.count("trace")) {  // one file per rank: FILE on rank 0, FILE.rankN on rank N
      const int rank = pipeline->transport->rank();
      write_trace(flags["trace"].as<std::string>() + (rank ? ".rank" + std::to_string(rank) : ""),
                  trace);
    }
  } else {
    run = generate_blocks(flags, *source, engine_options, gen, runnable, needed, results,
                          open_output);
  }
  if (!writer) return 0;
  results.tick(true);
  progress.finish(results.written() - static_cast<int64_t>(unrun.size()));
  print_summary(run, results.written(), pipeline ? pipeline->transport->size() : 1);
  if (const DurableOutput* file = results.file()) {
    std::fprintf(stderr, "strata generate: %s: %lld lines appended, %lld syncs (%.3f s)\n",
                 output.c_str(), static_cast<long long>(file->lines_written()),
                 static_cast<long long>(file->syncs()), file->sync_seconds());
  }
  return 0;
}

}  // namespace strata::cli
