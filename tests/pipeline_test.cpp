// The pipeline over in-process ranks gives exactly the one-rank engine's ids and logprobs, for
// every rank count the model allows, uneven splits and a different offloading policy per rank.
#include <gtest/gtest.h>

#include <random>

#include "core/error.h"
#include "model/weight_source.h"
#include "parallel/pipeline.h"
#include "runtime/cpu_engine.h"
#include "test_util.h"

namespace strata {
namespace {

std::vector<Prompt> prompts_of(const std::string& model) {
  std::vector<Prompt> prompts;
  const auto cases = test::load_cases(model);
  for (const auto& c : cases["cases"]) {
    for (const auto& ids : c["input_ids"]) {
      prompts.push_back({ids.get<std::vector<int32_t>>(), prompts.size()});
    }
  }
  // More sequences than one block, and a wave that ends part-filled.
  const size_t n = prompts.size();
  for (size_t i = 0; i < n + 3; ++i) prompts.push_back({prompts[i % n].ids, prompts.size()});
  return prompts;
}

EngineOptions base_options() {
  EngineOptions o;
  o.policy.gpu_batch_size = 2;
  o.policy.num_gpu_batches = 2;
  o.max_prompt_len = 100;
  o.gen_len = 12;
  return o;
}

std::vector<Generation> one_rank(const WeightSource& source, std::span<const Prompt> prompts,
                                 const GenerateOptions& gen) {
  const auto engine = make_cpu_engine(source, base_options());
  std::vector<Generation> all;
  const size_t block = 4;
  for (size_t first = 0; first < prompts.size(); first += block) {
    auto part = engine->generate(prompts.subspan(first, std::min(block, prompts.size() - first)),
                                 gen, nullptr);
    all.insert(all.end(), part.begin(), part.end());
  }
  return all;
}

struct Case {
  std::string model;
  std::vector<int64_t> split;
};

class PipelineTest : public ::testing::TestWithParam<Case> {};

TEST_P(PipelineTest, MatchesTheOneRankEngine) {
  const Case& pc = GetParam();
  auto source = open_weight_source(test::model_dir(pc.model));
  const auto prompts = prompts_of(pc.model);
  GenerateOptions gen;
  gen.gen_len = 12;
  gen.sampling.greedy = false;  // sampled: the random streams must follow the sequences
  gen.sampling.temperature = 0.8f;
  gen.sampling.seed = 7;
  // A stop rule ends some sequences early, so the step composition changes mid-run.
  gen.stop_check = [](size_t, std::span<const int32_t> ids) {
    return ids.size() >= 3 && ids.back() % 29 == 0;
  };
  const auto want = one_rank(*source, prompts, gen);
  const int n = static_cast<int>(pc.split.size());
  test::TempDir dir;
  std::vector<Generation> got;
  parallel::run_in_process(n, [&](parallel::Transport& t) {
    EngineOptions o = base_options();
    o.first_layer = 0;
    for (int r = 0; r < t.rank(); ++r) o.first_layer += pc.split[static_cast<size_t>(r)];
    o.n_layers = pc.split[static_cast<size_t>(t.rank())];
    o.n_groups = n + 1;
    // Each rank its own placement.
    std::mt19937 rng(static_cast<unsigned>(t.rank()) * 31 + 5);
    const TierSplit splits[] = {{100, 0}, {0, 100}, {0, 0}, {30, 40}};
    o.policy.weights = splits[rng() % 4];
    o.policy.cache = splits[rng() % 4];
    o.policy.activations = splits[rng() % 4];
    o.policy.sep_layer = t.rank() % 2 == 0;
    o.offload_dir = (dir.path() / ("rank" + std::to_string(t.rank()))).string();
    std::filesystem::create_directories(o.offload_dir);
    auto results = parallel::pipeline_generate(*source, o, t, prompts, gen, nullptr);
    if (t.rank() == 0) got = std::move(results);
  });
  ASSERT_EQ(got.size(), want.size());
  int stopped = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].output_ids, want[i].output_ids) << "prompt " << i;
    EXPECT_EQ(got[i].token_logprobs, want[i].token_logprobs) << "prompt " << i;
    EXPECT_EQ(got[i].finish, want[i].finish) << "prompt " << i;
    stopped += want[i].finish == FinishReason::kStop;
  }
  EXPECT_GT(stopped, 0);
  std::printf("[ %s ] %zu sequences, %d stopped early\n", pc.model.c_str(), got.size(), stopped);
}

INSTANTIATE_TEST_SUITE_P(Splits, PipelineTest,
                         ::testing::Values(Case{"opt-pub-tiny", {2}}, Case{"opt-pub-tiny", {1, 1}},
                                           Case{"opt-pub-350m-style", {1, 1}},
                                           Case{"opt-pub-gelu-nobias", {1, 2}},
                                           Case{"opt-pub-gelu-nobias", {2, 1}},
                                           Case{"opt-pub-gelu-nobias", {1, 1, 1}}),
                         [](const auto& info) {
                           std::string name = info.param.model;
                           for (int64_t x : info.param.split) name += "_" + std::to_string(x);
                           for (char& ch : name)
                             ch = std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
                           return name;
                         });

TEST(Pipeline, EvenSplitAndTooManyRanks) {
  EXPECT_EQ(parallel::even_split(24, 4), (std::vector<int64_t>{6, 6, 6, 6}));
  EXPECT_EQ(parallel::even_split(10, 4), (std::vector<int64_t>{3, 3, 2, 2}));
  try {
    parallel::even_split(2, 3);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.exit_status(), kExitBadInput);
    EXPECT_NE(std::string(e.what()).find("3 ranks but the model has only 2 layers"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace strata
