// stories260K, a real pretrained Llama-2-architecture model (GQA 8:4, tied head), against
// llama2.c's own greedy output (tests/data/stories260K/golden.json): 200 tokens from BOS.
#include <nlohmann/json.hpp>

#include "model/weight_source.h"
#include "runtime/engine.h"
#include "test_util.h"

namespace strata {
namespace {

const std::string kStories = test::model_dir("stories260K");

struct Golden {
  std::vector<int32_t> input_ids, output_ids;
};

Golden golden() {
  const auto j = nlohmann::json::parse(test::read_text(kStories + "/golden.json"));
  return {j["input_ids"].get<std::vector<int32_t>>(), j["output_ids"].get<std::vector<int32_t>>()};
}

Generation run(const WeightSource& source, const Policy& policy, const std::string& dir = "") {
  const Golden g = golden();
  EngineOptions options;
  options.policy = policy;
  options.offload_dir = dir;
  options.max_prompt_len = static_cast<int64_t>(g.input_ids.size());
  options.gen_len = static_cast<int64_t>(g.output_ids.size());
  test::Workload w;
  w.prompts.push_back({g.input_ids, 0});
  return test::run_engine(source, w, options).at(0);
}

Policy resident() {
  Policy p;
  p.gpu_batch_size = 1;
  p.num_gpu_batches = 1;
  return p;
}

TEST(Stories260K, ConfigIsLlamaWithGqa) {
  const auto source = open_weight_source(kStories);
  const ModelConfig& c = source->config();
  EXPECT_EQ(c.family, Family::kLlama);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.kv_heads(), 4);
  EXPECT_EQ(c.kv_dim(), 32);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_TRUE(c.is_eos(2));
}

TEST(Stories260K, AllInMemoryMatchesLlama2c) {
  const auto source = open_weight_source(kStories);
  EXPECT_EQ(run(*source, resident()).output_ids, golden().output_ids);
}

TEST(Stories260K, DiskOffloadedMatchesLlama2c) {
  const auto source = open_weight_source(kStories);
  test::TempDir dir;
  Policy p = resident();
  p.weights = p.cache = p.activations = {0, 0};  // everything on the disk tier
  EXPECT_EQ(run(*source, p, dir.path().string()).output_ids, golden().output_ids);
  Policy split = resident();
  split.weights = {20, 30};
  split.cache = {10, 50};
  split.activations = {0, 50};
  split.sep_layer = true;
  EXPECT_EQ(run(*source, split, dir.path().string()).output_ids, golden().output_ids);
}

// 8-bit weights and cache keep a real model on course for a while and close throughout.
TEST(Stories260K, CompressedStaysCloseToTheReference) {
  const auto source = open_weight_source(kStories);
  const Generation want = run(*source, resident());
  for (bool cache : {false, true}) {
    Policy p = resident();
    p.compress_weight = true;
    p.compress_cache = cache;
    p.compress_bits = 8;
    const Generation got = run(*source, p);
    size_t same = 0;
    while (same < got.output_ids.size() && got.output_ids[same] == want.output_ids[same]) ++same;
    double gap = 0;
    for (size_t t = 0; t < same; ++t)
      gap += std::fabs(got.token_logprobs[t] - want.token_logprobs[t]);
    std::printf("[ stories260K ] 8-bit weights%s: %zu of 200 tokens equal, mean |dlogprob| %.4f\n",
                cache ? " and cache" : "", same, same ? gap / double(same) : 0.0);
    EXPECT_GE(same, 20u);
    EXPECT_GT(gap, 0.0) << "compression changed nothing: is it on?";
    EXPECT_LT(gap / double(same), 0.05);
  }
}

}  // namespace
}  // namespace strata
