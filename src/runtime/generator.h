// Autoregressive generation over a batch of prompts: one packed prefill, then one decode step
// per new token for the sequences still running.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "runtime/resident_model.h"
#include "runtime/sampler.h"

namespace strata {

enum class FinishReason { kLength, kStop };
const char* finish_reason_name(FinishReason reason);

struct Generation {
  std::vector<int32_t> output_ids;
  std::vector<float> token_logprobs;
  // Per token, its prompt's top_logprobs most likely alternatives (empty when none are asked).
  std::vector<std::vector<TokenLogprob>> top_logprobs;
  FinishReason finish = FinishReason::kLength;
};

// The defaults of every sequence, which a Prompt may override, and the loop's callbacks.
struct GenerateOptions {
  // New tokens per sequence; also the most steps any sequence of the call runs (engines and the
  // pipeline are sized by it), so it is at least every prompt's steps().
  int64_t gen_len = 32;
  bool ignore_eos = false;
  SamplingParams sampling;
  // Called after each new token; true ends that sequence with finish reason "stop".
  std::function<bool(size_t seq, std::span<const int32_t> output_ids)> stop_check;
  // Called after each step with the number of tokens it generated (progress reports).
  std::function<void(int64_t new_tokens)> on_step;
  // Called once per sequence as it ends (eos, a stop, its length), where its tokens are accepted
  // (rank 0 of a pipeline), so results can be written as they finish.
  std::function<void(size_t seq, const Generation& generation)> on_finish;
};

struct Prompt {
  std::vector<int32_t> ids;
  uint64_t index = 0;  // position in the input: seeds the sequence's random stream
  // This sequence's own options (a request's max_tokens, temperature, seed); unset: the call's.
  int64_t gen_len = -1;
  std::optional<SamplingParams> sampling;
  // Score the prompt itself: the prefill takes ids[0] only, and each later id is fed as a decode
  // step's token, its log-softmax recorded as if generated (output_ids begin with ids[1..]);
  // gen_len new tokens follow. No eos or stop check applies to those forced tokens.
  bool echo = false;
  // Alternatives recorded per token, forced ones included: the most likely top_logprobs tokens of
  // the distribution it was drawn from (0..kMaxTopLogprobs; 0: none, and no cost).
  int top_logprobs = 0;

  int64_t new_tokens(const GenerateOptions& o) const { return gen_len >= 0 ? gen_len : o.gen_len; }
  int64_t forced_tokens() const { return echo ? static_cast<int64_t>(ids.size()) - 1 : 0; }
  // Tokens the loop appends to this sequence's Generation: forced ones, then new ones.
  int64_t steps(const GenerateOptions& o) const { return forced_tokens() + new_tokens(o); }
  const SamplingParams& sampling_of(const GenerateOptions& o) const {
    return sampling ? *sampling : o.sampling;
  }
  // The tokens of the prefill step.
  std::span<const int32_t> prefill_ids() const {
    return echo ? std::span<const int32_t>(ids.data(), 1) : std::span<const int32_t>(ids);
  }
};

class StepBuilder;

struct GenerationStats {
  double prefill_s = 0;
  double decode_s = 0;
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  double flops = 0;
  double decode_flops = 0;          // the part of flops in decode steps
  double decode_read_elements = 0;  // forward_read_elements over the decode steps
  void add(const GenerationStats& other);
  // One forward step of `seconds`: prefill or decode time, its FLOPs and tokens.
  void add_step(const ModelConfig& config, const StepBuilder& step, double seconds);
};

// Appends a token to `g` and says whether the sequence goes on (false: eos, a stop string or
// its length ended it; then options.on_finish is called). Pipeline ranks sample on the last rank
// and accept on the first.
bool accept_token(const Sampled& s, const Prompt& prompt, const GenerateOptions& options,
                  std::span<const int32_t> eos_ids, size_t seq, Generation& g);

// The next token of a sequence that has `n_done` tokens in its Generation: the prompt's own next
// id while it is forced (echo), else one sampled with its sampling parameters; with the prompt's
// top_logprobs alternatives.
Sampled next_token(std::span<const float> logits, const Prompt& prompt,
                   const GenerateOptions& options, size_t n_done, RandomStream& stream,
                   std::span<float> scratch);

// next_token then accept_token. Shared by every engine.
bool accept_next_token(std::span<const float> logits, const Prompt& prompt,
                       const GenerateOptions& options, std::span<const int32_t> eos_ids, size_t seq,
                       RandomStream& stream, std::span<float> scratch, Generation& g);

// The longest steps() of `prompts` (0 when empty).
int64_t max_steps(std::span<const Prompt> prompts, const GenerateOptions& options);

// Generates for all prompts together. `prefill_logits`, when given, receives each sequence's
// logits at its last prompt token.
std::vector<Generation> generate_batch(const ResidentModel& model, std::span<const Prompt> prompts,
                                       const GenerateOptions& options, GenerationStats* stats,
                                       std::vector<std::vector<float>>* prefill_logits = nullptr);

}  // namespace strata
