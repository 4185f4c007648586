// generate's results: each request's line in its file's format (strata's own, or OpenAI's batch
// output), cut at its stop strings, written as each sequence finishes to --output (appended,
// synced; see runtime/job_output.h) or stdout.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "runtime/generator.h"
#include "runtime/job_output.h"
#include "runtime/requests.h"
#include "tokenizer/text_stream.h"

namespace strata::cli {

// The requests, tokenized, and the tokenizer that gives their text.
struct Inputs {
  RequestFormat format = RequestFormat::kNative;
  std::vector<Request> requests;
  std::optional<Tokenizer> tokenizer;
  std::vector<std::string> stops;  // --stop, for requests without their own
  std::string model;               // --model, for batch output without a body.model
  std::string job_hash;            // names the batch output's ids
};

// Per token, its alternatives (runtime/generator.h).
using Alternatives = std::span<const std::vector<TokenLogprob>>;

// The part of a Generation a result line shows: the new tokens, cut at a stop string. `top` is
// empty when no alternatives were asked for.
struct Completion {
  std::span<const int32_t> ids;
  std::span<const float> logprobs;
  Alternatives top;
};

class ResultWriter {
 public:
  // `prompts[i]` runs request `request_of[i]`; those whose `written` is set are already in the
  // output and are not written again when they run once more (with the rest of their block).
  ResultWriter(const Inputs& in, const std::vector<Prompt>& prompts,
               const std::vector<size_t>& request_of, std::vector<bool> written);
  ResultWriter(const ResultWriter&) = delete;
  ResultWriter& operator=(const ResultWriter&) = delete;

  // Where lines go: a durable file, or stdout when none is given.
  void open(std::unique_ptr<DurableOutput> file) { file_ = std::move(file); }
  // Keeps `notice` told how many results the output holds: `kept` from before, and each new one.
  void notify(InterruptNotice* notice, int64_t kept) {
    notice_ = notice;
    kept_ = kept;
  }
  bool opened() const { return file_ != nullptr; }
  const DurableOutput* file() const { return file_.get(); }

  // gen.stop_check and gen.on_finish, for a call of the generator over prompts[call[0]],
  // prompts[call[1]], ...
  void hook(GenerateOptions& gen);
  void set_call(std::vector<size_t> call) { call_ = std::move(call); }

  // A request that does not run: its error line, or its empty result (max_tokens 0).
  void write_without_run(size_t request);
  // Syncs the file when its interval has passed (or `force`).
  void tick(bool force = false);
  int64_t written() const { return written_; }

 private:
  void finish(size_t prompt, const Generation& g);
  void emit(const std::string& line);
  bool continues(const Request& r) const;
  nlohmann::json native_line(const Request& r, const Prompt& p, const Generation& g,
                             const Completion& c, const std::optional<std::string>& text) const;
  nlohmann::ordered_json batch_line(size_t request, const Prompt* p, const Generation& g,
                                    const Completion& c,
                                    const std::optional<std::string>& text) const;
  nlohmann::ordered_json batch_envelope(size_t request) const;

  const Inputs& in_;
  const std::vector<Prompt>& prompts_;
  const std::vector<size_t>& request_of_;
  std::vector<std::optional<StopWatcher>> watchers_;  // by prompt, while it runs
  std::unique_ptr<DurableOutput> file_;
  std::vector<bool> written_already_;
  std::vector<size_t> call_;
  int64_t written_ = 0;
  InterruptNotice* notice_ = nullptr;
  int64_t kept_ = 0;
};

// The stop strings of a request: its own, else the flags'.
const std::vector<std::string>& stops_of(const Inputs& in, const Request& r);

}  // namespace strata::cli
