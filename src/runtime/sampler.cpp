#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/error.h"
#include "core/random.h"
#include "kernels/cpu/ops.h"

namespace strata {

RandomStream::RandomStream(uint64_t seed, uint64_t sequence_index)
    : state_(splitmix64(splitmix64(seed) ^ sequence_index)) {}

double RandomStream::uniform() {
  state_ += 0x9e3779b97f4a7c15ull;
  return static_cast<double>(splitmix64(state_) >> 11) * 0x1.0p-53;
}

Sampled sample_token(std::span<const float> logits, const SamplingParams& params,
                     RandomStream& stream, std::span<float> scratch) {
  const int64_t n = static_cast<int64_t>(logits.size());
  // Non-finite logits (a NaN or an overflow in the forward pass) would give a token chosen by
  // accident and a null logprob: an error, never a result.
  const auto bad =
      std::find_if(logits.begin(), logits.end(), [](float v) { return !std::isfinite(v); });
  STRATA_CHECK(bad == logits.end(), "the logits are not finite (", *bad, " at token id ",
               bad - logits.begin(), " of ", n, "): the forward pass overflowed or read a NaN");
  cpu::log_softmax(logits.data(), scratch.data(), n);
  if (params.greedy) {
    // First maximum, as torch.argmax.
    const int32_t best =
        static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    return {best, scratch[static_cast<size_t>(best)]};
  }
  // Probabilities at the temperature, then the smallest set of most likely tokens whose mass
  // reaches top_p (at least one), renormalised.
  const double inv_t = 1.0 / params.temperature;
  const float max = *std::max_element(logits.begin(), logits.end());
  std::vector<double> prob(static_cast<size_t>(n));
  double total = 0;
  for (int64_t i = 0; i < n; ++i) total += prob[i] = std::exp((logits[i] - max) * inv_t);
  std::vector<int32_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return prob[a] > prob[b]; });
  double kept = 0;
  size_t n_kept = 0;
  while (n_kept < order.size()) {
    kept += prob[order[n_kept]];
    ++n_kept;
    if (kept >= params.top_p * total) break;
  }
  double u = stream.uniform() * kept;
  int32_t token = order[n_kept - 1];
  for (size_t i = 0; i < n_kept; ++i) {
    u -= prob[order[i]];
    if (u < 0) {
      token = order[i];
      break;
    }
  }
  return {token, scratch[static_cast<size_t>(token)]};
}

void add_top_logprobs(std::span<const float> logits, std::span<const float> logprobs, int n,
                      Sampled& s) {
  STRATA_CHECK(n >= 0 && n <= kMaxTopLogprobs && logits.size() == logprobs.size(),
               "top logprobs: ", n, " alternatives asked for, at most ", kMaxTopLogprobs);
  n = std::min<int>(n, static_cast<int>(logits.size()));
  // The best n so far, in order; a later id enters only when strictly larger, so ties keep the
  // lower id first.
  std::array<int32_t, kMaxTopLogprobs> best{};
  int kept = 0;
  for (int32_t id = 0; id < static_cast<int32_t>(logits.size()); ++id) {
    const float v = logits[static_cast<size_t>(id)];
    if (kept == n && (n == 0 || !(v > logits[static_cast<size_t>(best[n - 1])]))) continue;
    int at = kept < n ? kept++ : n - 1;
    while (at > 0 && v > logits[static_cast<size_t>(best[at - 1])]) {
      best[at] = best[at - 1];
      --at;
    }
    best[at] = id;
  }
  s.n_top = kept;
  for (int i = 0; i < kept; ++i) s.top[i] = {best[i], logprobs[static_cast<size_t>(best[i])]};
}

}  // namespace strata
