#include "runtime/generator.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "kernels/cpu/ops.h"
#include "runtime/stages.h"
#include "runtime/step_builder.h"

namespace strata {

const char* finish_reason_name(FinishReason reason) {
  return reason == FinishReason::kStop ? "stop" : "length";
}

void GenerationStats::add_step(const ModelConfig& c, const StepBuilder& step, double seconds) {
  (step.prefill() ? prefill_s : decode_s) += seconds;
  const double f = forward_flops(c, step.n_new(), step.n_cached());
  flops += f;
  if (!step.prefill()) {
    decode_flops += f;
    decode_read_elements += forward_read_elements(c, step.n_new(), step.n_cached());
  }
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
  decode_flops += o.decode_flops;
  decode_read_elements += o.decode_read_elements;
}

Sampled next_token(std::span<const float> logits, const Prompt& prompt,
                   const GenerateOptions& options, size_t n_done, RandomStream& stream,
                   std::span<float> scratch) {
  Sampled s;
  if (static_cast<int64_t>(n_done) < prompt.forced_tokens()) {
    const int32_t token = prompt.ids[n_done + 1];
    cpu::log_softmax(logits.data(), scratch.data(), static_cast<int64_t>(logits.size()));
    s = {token, scratch[static_cast<size_t>(token)]};
  } else {
    s = sample_token(logits, prompt.sampling_of(options), stream, scratch);
  }
  // scratch holds the row's log-softmax either way.
  if (prompt.top_logprobs > 0) add_top_logprobs(logits, scratch, prompt.top_logprobs, s);
  return s;
}

bool accept_next_token(std::span<const float> logits, const Prompt& prompt,
                       const GenerateOptions& options, std::span<const int32_t> eos_ids, size_t seq,
                       RandomStream& stream, std::span<float> scratch, Generation& g) {
  return accept_token(next_token(logits, prompt, options, g.output_ids.size(), stream, scratch),
                      prompt, options, eos_ids, seq, g);
}

bool accept_token(const Sampled& s, const Prompt& prompt, const GenerateOptions& options,
                  std::span<const int32_t> eos_ids, size_t seq, Generation& g) {
  g.output_ids.push_back(s.token);
  g.token_logprobs.push_back(s.logprob);
  if (prompt.top_logprobs > 0) g.top_logprobs.emplace_back(s.top.begin(), s.top.begin() + s.n_top);
  const auto n = static_cast<int64_t>(g.output_ids.size());
  bool goes_on = n < prompt.steps(options);
  if (n > prompt.forced_tokens()) {
    const bool eos =
        !options.ignore_eos && std::find(eos_ids.begin(), eos_ids.end(), s.token) != eos_ids.end();
    if (eos || (options.stop_check && options.stop_check(seq, g.output_ids))) {
      g.finish = FinishReason::kStop;
      goes_on = false;
    }
  }
  if (!goes_on && options.on_finish) options.on_finish(seq, g);
  return goes_on;
}

int64_t max_steps(std::span<const Prompt> prompts, const GenerateOptions& options) {
  int64_t most = 0;
  for (const auto& p : prompts) most = std::max(most, p.steps(options));
  return most;
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
    STRATA_CHECK(!p.ids.empty() && p.steps(options) >= 1 && p.steps(options) <= options.gen_len,
                 "a prompt needs tokens and from 1 to gen_len steps");
    longest = std::max<int64_t>(longest, static_cast<int64_t>(p.ids.size()));
  }
  KvCache cache(c, static_cast<int64_t>(n), longest + options.gen_len);
  std::vector<RandomStream> streams;
  for (const auto& p : prompts) streams.emplace_back(p.sampling_of(options).seed, p.index);
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
          accept_next_token(row, prompts[i], options, c.eos_token_ids, i, streams[i], scratch, g);
      builder.accept(steps[j].slot, g.output_ids.back(), goes_on);
    }
    if (options.on_step) options.on_step(static_cast<int64_t>(steps.size()));
    builder.advance();
  }
  if (stats) stats->add(local);
  return results;
}

}  // namespace strata
