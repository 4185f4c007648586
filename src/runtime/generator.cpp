#include "runtime/generator.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"

namespace strata {

const char* finish_reason_name(FinishReason reason) {
  return reason == FinishReason::kStop ? "stop" : "length";
}

void GenerationStats::add(const GenerationStats& o) {
  prefill_s += o.prefill_s;
  decode_s += o.decode_s;
  prompt_tokens += o.prompt_tokens;
  generated_tokens += o.generated_tokens;
  flops += o.flops;
}

bool accept_next_token(std::span<const float> logits, const GenerateOptions& options,
                       int32_t eos_token_id, size_t seq, RandomStream& stream,
                       std::span<float> scratch, Generation& g) {
  return accept_token(sample_token(logits, options.sampling, stream, scratch), options,
                      eos_token_id, seq, g);
}

bool accept_token(const Sampled& s, const GenerateOptions& options, int32_t eos_token_id,
                  size_t seq, Generation& g) {
  g.output_ids.push_back(s.token);
  g.token_logprobs.push_back(s.logprob);
  const bool eos = !options.ignore_eos && s.token == eos_token_id;
  if (eos || (options.stop_check && options.stop_check(seq, g.output_ids))) {
    g.finish = FinishReason::kStop;
    return false;
  }
  return true;
}

std::vector<Generation> generate_batch(const OptModel& model, std::span<const Prompt> prompts,
                                       const GenerateOptions& options, GenerationStats* stats,
                                       std::vector<std::vector<float>>* prefill_logits) {
  using Clock = std::chrono::steady_clock;
  const OptConfig& c = model.config();
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
  std::vector<int32_t> next(n);
  std::vector<size_t> active(n);
  for (size_t i = 0; i < n; ++i) active[i] = i;

  std::vector<SequenceStep> steps;
  std::vector<int64_t> n_new, n_cached;
  GenerationStats local;
  for (int64_t t = 0; t < options.gen_len && !active.empty(); ++t) {
    steps.clear();
    n_new.clear();
    n_cached.clear();
    for (size_t i : active) {
      std::span<const int32_t> tokens =
          t == 0 ? std::span<const int32_t>(prompts[i].ids) : std::span<const int32_t>(&next[i], 1);
      steps.push_back({static_cast<int64_t>(i), tokens});
      n_new.push_back(static_cast<int64_t>(tokens.size()));
      n_cached.push_back(cache.length(static_cast<int64_t>(i)));
    }
    const auto begin = Clock::now();
    model.forward(steps, cache, logits.data());
    const double seconds = std::chrono::duration<double>(Clock::now() - begin).count();
    (t == 0 ? local.prefill_s : local.decode_s) += seconds;
    local.flops += model.forward_flops(n_new, n_cached);
    if (t == 0) {
      for (int64_t k : n_new) local.prompt_tokens += k;
      if (prefill_logits) {
        prefill_logits->assign(n, {});
        for (size_t j = 0; j < n; ++j) {
          (*prefill_logits)[j].assign(logits.begin() + j * vocab, logits.begin() + (j + 1) * vocab);
        }
      }
    }

    std::vector<size_t> still;
    for (size_t j = 0; j < active.size(); ++j) {
      const size_t i = active[j];
      std::span<const float> row(logits.data() + j * vocab, vocab);
      Generation& g = results[i];
      const bool goes_on =
          accept_next_token(row, options, c.eos_token_id, i, streams[i], scratch, g);
      ++local.generated_tokens;
      next[i] = g.output_ids.back();
      if (goes_on) still.push_back(i);
    }
    if (options.on_step) options.on_step(static_cast<int64_t>(active.size()));
    active.swap(still);
  }
  if (stats) stats->add(local);
  return results;
}

}  // namespace strata
