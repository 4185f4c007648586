// Autoregressive generation over a batch of prompts: one packed prefill, then one decode step
// per new token for the sequences still running.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "runtime/resident_model.h"
#include "runtime/sampler.h"

namespace strata {

enum class FinishReason { kLength, kStop };
const char* finish_reason_name(FinishReason reason);

struct GenerateOptions {
  int64_t gen_len = 32;
  bool ignore_eos = false;
  SamplingParams sampling;
  // Called after each new token; true ends that sequence with finish reason "stop".
  std::function<bool(size_t seq, std::span<const int32_t> output_ids)> stop_check;
  // Called after each step with the number of tokens it generated (progress reports).
  std::function<void(int64_t new_tokens)> on_step;
};

struct Prompt {
  std::vector<int32_t> ids;
  uint64_t index = 0;  // position in the input: seeds the sequence's random stream
};

struct Generation {
  std::vector<int32_t> output_ids;
  std::vector<float> token_logprobs;
  FinishReason finish = FinishReason::kLength;
};

class StepBuilder;

struct GenerationStats {
  double prefill_s = 0;
  double decode_s = 0;
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  double flops = 0;
  void add(const GenerationStats& other);
  // One forward step of `seconds`: prefill or decode time, its FLOPs and tokens.
  void add_step(const ModelConfig& config, const StepBuilder& step, double seconds);
};

// Appends a sampled token to `g` and says whether the sequence goes on (false: eos or a stop
// string ended it). Pipeline ranks sample on the last rank and accept on the first.
bool accept_token(const Sampled& s, const GenerateOptions& options,
                  std::span<const int32_t> eos_ids, size_t seq, Generation& g);

// Samples sequence `seq`'s next token from its logits, appends it to `g` and says whether the
// sequence goes on (false: eos or a stop string ended it). Shared by every engine.
bool accept_next_token(std::span<const float> logits, const GenerateOptions& options,
                       std::span<const int32_t> eos_ids, size_t seq, RandomStream& stream,
                       std::span<float> scratch, Generation& g);

// Generates for all prompts together. `prefill_logits`, when given, receives each sequence's
// logits at its last prompt token.
std::vector<Generation> generate_batch(const ResidentModel& model, std::span<const Prompt> prompts,
                                       const GenerateOptions& options, GenerationStats* stats,
                                       std::vector<std::vector<float>>* prefill_logits = nullptr);

}  // namespace strata
