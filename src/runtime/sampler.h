// Picking the next token from logits: greedy, or temperature and top-p with a seeded stream per
// sequence, so a sequence's draws do not depend on what it was batched with.
#pragma once

#include <array>
#include <cstdint>
#include <span>

namespace strata {

struct SamplingParams {
  bool greedy = true;
  float temperature = 1.0f;
  float top_p = 1.0f;
  uint64_t seed = 0;
};

// A counter-based random stream for one sequence.
class RandomStream {
 public:
  RandomStream(uint64_t seed, uint64_t sequence_index);
  double uniform();  // [0, 1)

 private:
  uint64_t state_;
};

// The most alternatives a token may carry (OpenAI's completions allow logprobs up to 5).
constexpr int kMaxTopLogprobs = 5;

struct TokenLogprob {
  int32_t token;
  float logprob;
};

// Trivially copyable: the pipeline sends it between ranks as bytes.
struct Sampled {
  int32_t token = 0;
  float logprob = 0;  // log-softmax of the raw logits, before temperature and top-p
  // The n_top most likely tokens of the distribution, most likely first (only when asked for).
  int32_t n_top = 0;
  std::array<TokenLogprob, kMaxTopLogprobs> top{};
};

// `scratch` must hold logits.size() floats.
Sampled sample_token(std::span<const float> logits, const SamplingParams& params,
                     RandomStream& stream, std::span<float> scratch);

// Fills s.top with the n most likely tokens of `logits` (ties: the lower id first, as the greedy
// argmax) and their log-softmax from `logprobs`: one pass over the vocabulary.
void add_top_logprobs(std::span<const float> logits, std::span<const float> logprobs, int n,
                      Sampled& s);

}  // namespace strata
