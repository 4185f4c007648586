// Sampling: greedy is argmax, top-p keeps the right set, draws follow the distribution and are
// reproducible per sequence whatever the batch.
#include <cmath>
#include <numeric>
#include <random>

#include "model/weight_source.h"
#include "runtime/generator.h"
#include "runtime/sampler.h"
#include "test_util.h"

namespace strata {
namespace {

TEST(Sampler, GreedyIsFirstArgmaxWithItsLogprob) {
  std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f}, scratch(4);
  RandomStream stream(0, 0);
  const Sampled s = sample_token(logits, SamplingParams{}, stream, scratch);
  EXPECT_EQ(s.token, 1);
  const double lse = std::log(std::exp(0.5) + 2 * std::exp(2.0) + std::exp(-1.0));
  EXPECT_NEAR(s.logprob, 2.0 - lse, 1e-6);
}

// The alternatives are the n largest logits (ties: the lower id first, as argmax) with their
// log-softmax, against a full stable sort; greedy's token is the first.
TEST(Sampler, TopLogprobsAreTheLargestBySortingEverything) {
  auto gen = test::rng();
  std::uniform_int_distribution<int> level(-6, 6);  // few distinct values: many ties
  for (int trial = 0; trial < 200; ++trial) {
    const size_t vocab = 1 + static_cast<size_t>(trial % 37);
    std::vector<float> logits(vocab), scratch(vocab);
    for (auto& v : logits) v = 0.5f * static_cast<float>(level(gen));
    std::vector<int32_t> order(vocab);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
    double sum = 0;
    for (float v : logits) sum += std::exp(static_cast<double>(v));
    for (int n = 0; n <= kMaxTopLogprobs; ++n) {
      RandomStream stream(0, 0);
      Sampled s = sample_token(logits, SamplingParams{}, stream, scratch);
      add_top_logprobs(logits, scratch, n, s);
      ASSERT_EQ(s.n_top, std::min<int>(n, static_cast<int>(vocab)));
      for (int k = 0; k < s.n_top; ++k) {
        EXPECT_EQ(s.top[k].token, order[k]) << "trial " << trial << " n " << n << " k " << k;
        EXPECT_NEAR(s.top[k].logprob, logits[order[k]] - std::log(sum), 1e-5);
      }
      if (n > 0) EXPECT_EQ(s.top[0].token, s.token);
    }
  }
}

// Probabilities 0.5, 0.3, 0.2 at temperature 1: frequencies over many draws, and top-p 0.7
// keeps only the first two (renormalised to 5/8, 3/8).
TEST(Sampler, FrequenciesFollowTemperatureAndTopP) {
  std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.2f)}, scratch(3);
  SamplingParams p;
  p.greedy = false;
  const int n = 200000;
  for (auto [top_p, want] : {std::pair{1.0f, std::vector<double>{0.5, 0.3, 0.2}},
                             {0.7f, std::vector<double>{0.625, 0.375, 0.0}}}) {
    p.top_p = top_p;
    RandomStream stream(42, 0);
    std::vector<int> counts(3);
    for (int i = 0; i < n; ++i) {
      const Sampled s = sample_token(logits, p, stream, scratch);
      ++counts[s.token];
      EXPECT_NEAR(s.logprob, logits[s.token], 1e-6);  // logprob ignores temperature and top-p
    }
    for (int t = 0; t < 3; ++t) EXPECT_NEAR(counts[t] / double(n), want[t], 0.005) << t;
  }
  // A low temperature sharpens towards the argmax.
  p.top_p = 1.0f;
  p.temperature = 0.05f;
  RandomStream stream(42, 0);
  int best = 0;
  for (int i = 0; i < 1000; ++i) best += sample_token(logits, p, stream, scratch).token == 0;
  EXPECT_GT(best, 990);
}

TEST(Sampler, SeededPerSequenceAndIndependentOfBatch) {
  auto source = open_weight_source(test::model_dir("opt-pub-tiny"));
  ResidentModel model(*source);
  const auto cases = test::load_cases("opt-pub-tiny");
  const auto& ids = cases["cases"][5]["input_ids"];
  std::vector<Prompt> batch;
  for (uint64_t i = 0; i < 3; ++i) batch.push_back({ids[i].get<std::vector<int32_t>>(), i});
  GenerateOptions options;
  options.gen_len = 20;
  options.ignore_eos = true;
  options.sampling = {false, 1.5f, 0.95f, 1234};
  const auto together = generate_batch(model, batch, options, nullptr);
  for (size_t i = 0; i < 3; ++i) {
    const auto alone = generate_batch(model, std::span(&batch[i], 1), options, nullptr);
    EXPECT_EQ(alone[0].output_ids, together[i].output_ids);
  }
  EXPECT_NE(together[0].output_ids, cases["cases"][5]["output_ids"][0].get<std::vector<int32_t>>());
  options.sampling.seed = 1235;
  const auto reseeded = generate_batch(model, batch, options, nullptr);
  EXPECT_NE(reseeded[0].output_ids, together[0].output_ids);
}

}  // namespace
}  // namespace strata
