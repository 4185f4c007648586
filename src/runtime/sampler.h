// Picking the next token from logits: greedy, or temperature and top-p with a seeded stream per
// sequence, so a sequence's draws do not depend on what it was batched with.
#pragma once

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

struct Sampled {
  int32_t token;
  float logprob;  // log-softmax of the raw logits, before temperature and top-p
};

// `scratch` must hold logits.size() floats.
Sampled sample_token(std::span<const float> logits, const SamplingParams& params,
                     RandomStream& stream, std::span<float> scratch);

}  // namespace strata
