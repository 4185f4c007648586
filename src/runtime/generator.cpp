#include "runtime/generator.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "runtime/stages.h"
#include "runtime/step_builder.h"

namespace strata {

const char* finish_reason_name(FinishReason reason) {
  return reason == FinishReason::kStop ? "stop" : "length";
}

void GenerationStats::add_step(const ModelConfig& c, const StepBuilder& step, double seconds) {
  (step.prefill() ? prefill_s : decode_s) += seconds;
  flops += forward_flops(c, step.n_new(), step.n_cached());
  generated_tokens += static_cast<int64_t>(step.n_new().size());
  if (step.prefill()) {
    for (int64_t x : step.n_new()) prompt_tokens += x;
  }
}

void GenerationStats::add(const GenerationStats& o) {
  prefill_s += o.prefill_s;
  decode_s += o.decode_s;
  prompt_tokens += o.prompt_tokens;
  generated_tokens += o.generated_tokens;
  flops += o.flops;
}

bool accept_next_token(std::span<const float> logits, const GenerateOptions& options,
                       std::span<const int32_t> eos_ids, size_t seq, RandomStream& stream,
                       std::span<float> scratch, Generation& g) {
  return accept_token(sample_token(logits, options.sampling, stream, scratch), options, eos_ids,
                      seq, g);
}

bool accept_token(const Sampled& s, const GenerateOptions& options,
                  std::span<const int32_t> eos_ids, size_t seq, Generation& g) {
  g.output_ids.push_back(s.token);
  g.token_logprobs.push_back(s.logprob);
  const bool eos = !options.ignore_eos &&
                   std::find(eos_ids.begin(), eos_ids.end(), s.token) != eos_ids.end();
  if (eos || (options.stop_check && options.stop_check(seq, g.output_ids))) {
    g.finish = FinishReason::kStop;
    return false;
  }
  return true;
}

std::vector<Generation> generate_batch(const ResidentModel& model, std::span<const Prompt> prompts,
                                       const GenerateOptions& options, GenerationStats* stats,
                                       std::vector<std::vector<float>>* prefill_logits) {
  using Clock = std::chrono::steady_clock;
  const ModelConfig& c = model.config();
  const size_t n = prompts.size();
  std::vector<Generation> results(n);
  if (n == 0 || options.gen_len == 0) return results;
  int64_t longest = 0;
  for (const auto& p : prompts) {
    STRATA_CHECK(!p.ids.empty(), "empty prompt");
    longest = std::max<int64_t>(longest, static_cast<int64_t>(p.ids.size()));
  }
  KvCache cache(c, static_cast<int64_t>(n), longest + options.gen_len);
  std::vector<RandomStream> streams;
  for (const auto& p : prompts) streams.emplace_back(options.sampling.seed, p.index);
  const size_t vocab = static_cast<size_t>(c.vocab_size);
  std::vector<float> logits(n * vocab), scratch(vocab);
  // One batch of every sequence: slot i is sequence i, as the cache holds them.
  StepBuilder builder(prompts, static_cast<int64_t>(n), static_cast<int64_t>(n));
  GenerationStats local;
  for (int64_t t = 0; t < options.gen_len && builder.next_step(); ++t) {
    const auto& steps = builder.steps()[0];
    const auto begin = Clock::now();
    model.forward(steps, cache, logits.data());
    local.add_step(c, builder, std::chrono::duration<double>(Clock::now() - begin).count());
    if (t == 0 && prefill_logits) {
      prefill_logits->assign(n, {});
      for (size_t j = 0; j < n; ++j) {
        (*prefill_logits)[j].assign(logits.begin() + j * vocab, logits.begin() + (j + 1) * vocab);
      }
    }
    for (size_t j = 0; j < steps.size(); ++j) {
      const auto i = static_cast<size_t>(steps[j].slot);
      std::span<const float> row(logits.data() + j * vocab, vocab);
      Generation& g = results[i];
      const bool goes_on =
          accept_next_token(row, options, c.eos_token_ids, i, streams[i], scratch, g);
      builder.accept(steps[j].slot, g.output_ids.back(), goes_on);
    }
    if (options.on_step) options.on_step(static_cast<int64_t>(steps.size()));
    builder.advance();
  }
  if (stats) stats->add(local);
  return results;
}

}  // namespace strata
