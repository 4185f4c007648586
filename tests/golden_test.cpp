// The CPU engine against Hugging Face transformers' own outputs on the reference models.
#include <cmath>
#include <fstream>

#include "model/weight_source.h"
#include "runtime/generator.h"
#include "test_util.h"

namespace strata {
namespace {

using test::load_cases;
using test::max_rel_diff;
using test::model_dir;

struct CaseRun {
  std::vector<Generation> generations;
  std::vector<std::vector<float>> prefill_logits;
};

CaseRun run_case(const ResidentModel& model, const nlohmann::json& c, int64_t gen_len) {
  std::vector<Prompt> prompts;
  for (const auto& ids : c["input_ids"]) prompts.push_back({ids.get<std::vector<int32_t>>(), 0});
  GenerateOptions options;
  options.gen_len = gen_len;
  options.ignore_eos = true;
  CaseRun run;
  run.generations = generate_batch(model, prompts, options, nullptr, &run.prefill_logits);
  return run;
}

class GoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenTest, MatchesTransformers) {
  const auto cases = load_cases(GetParam());
  auto source = open_weight_source(model_dir(GetParam()));
  ResidentModel model(*source);
  ASSERT_GE(cases["cases"].size(), 5u);
  for (const auto& c : cases["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const CaseRun run = run_case(model, c, cases["max_new_tokens"].get<int64_t>());
    for (size_t b = 0; b < run.generations.size(); ++b) {
      EXPECT_EQ(run.generations[b].output_ids, c["output_ids"][b].get<std::vector<int32_t>>());
      const auto& want_lp = c["token_logprobs"][b];
      ASSERT_EQ(run.generations[b].token_logprobs.size(), want_lp.size());
      for (size_t t = 0; t < want_lp.size(); ++t) {
        EXPECT_NEAR(run.generations[b].token_logprobs[t], want_lp[t].get<double>(), 1e-3);
      }
      EXPECT_LT(max_rel_diff(run.prefill_logits[b],
                             c["prefill_last_logits"][b].get<std::vector<double>>()),
                1e-3);  // over the vocabulary; NaN fails
    }
  }
}

// Each sequence of the mixed-length batch gets what it gets when run alone.
TEST_P(GoldenTest, BatchEqualsSingleRuns) {
  const auto cases = load_cases(GetParam());
  auto source = open_weight_source(model_dir(GetParam()));
  ResidentModel model(*source);
  const auto& batch_case = cases["cases"].back();
  ASSERT_EQ(batch_case["input_ids"].size(), 3u);
  const CaseRun batched = run_case(model, batch_case, 20);
  for (size_t b = 0; b < 3; ++b) {
    nlohmann::json single = {{"input_ids", {batch_case["input_ids"][b]}}};
    const CaseRun alone = run_case(model, single, 20);
    EXPECT_EQ(batched.generations[b].output_ids, alone.generations[0].output_ids);
    for (size_t t = 0; t < 20; ++t) {
      EXPECT_NEAR(batched.generations[b].token_logprobs[t], alone.generations[0].token_logprobs[t],
                  1e-5);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(ReferenceModels, GoldenTest, ::testing::ValuesIn(test::kReferenceModels));

// Negative control: the same comparison fails when the model is computed wrongly (post-LN
// weights run as pre-LN), so the golden test above can fail.
TEST(GoldenNegativeControl, WrongLayerNormPlacementDisagrees) {
  test::TempDir dir;
  const std::string src = model_dir("opt-pub-350m-style");
  auto config = nlohmann::json::parse(test::read_text(src + "/config.json"));
  config["do_layer_norm_before"] = true;
  config["_remove_final_layer_norm"] = true;
  test::write_text(dir.file("config.json"), config.dump());
  std::filesystem::create_symlink(src + "/model.safetensors", dir.file("model.safetensors"));
  auto source = open_weight_source(dir.path().string());
  ResidentModel model(*source);
  const auto cases = load_cases("opt-pub-350m-style");
  const CaseRun run = run_case(model, cases["cases"][2], 20);
  EXPECT_NE(run.generations[0].output_ids,
            cases["cases"][2]["output_ids"][0].get<std::vector<int32_t>>());
  EXPECT_GT(max_rel_diff(run.prefill_logits[0],
                         cases["cases"][2]["prefill_last_logits"][0].get<std::vector<double>>()),
            1e-2);
}

// A checkpoint written as several shards with an index loads to the same model.
TEST(Checkpoint, ShardedMatchesSingleFile) {
  test::TempDir dir;
  const std::string src = model_dir("opt-pub-tiny");
  auto original = open_weight_source(src);
  const auto config = nlohmann::json::parse(test::read_text(src + "/config.json"));
  write_checkpoint(*original, config, dir.path().string(), 40000);
  ASSERT_TRUE(std::filesystem::exists(dir.file("model.safetensors.index.json")));
  ASSERT_TRUE(std::filesystem::exists(dir.file("model-00002-of-00005.safetensors")));
  auto sharded = open_weight_source(dir.path().string());
  ResidentModel model(*sharded);
  const auto cases = load_cases("opt-pub-tiny");
  const CaseRun run = run_case(model, cases["cases"][3], 20);
  EXPECT_EQ(run.generations[0].output_ids,
            cases["cases"][3]["output_ids"][0].get<std::vector<int32_t>>());
}

// The same weights saved in fp32 give the same outputs; in bf16 they load as bf16 values.
TEST(Checkpoint, Fp32AndBf16Tensors) {
  const std::string src = model_dir("opt-pub-tiny");
  auto original = open_weight_source(src);
  auto config = nlohmann::json::parse(test::read_text(src + "/config.json"));
  const auto cases = load_cases("opt-pub-tiny");
  test::TempDir f32, bf16;
  config["torch_dtype"] = "float32";
  write_checkpoint(*original, config, f32.path().string(), 1u << 30);
  auto wide = open_weight_source(f32.path().string());
  EXPECT_EQ(wide->config().dtype, DType::kF32);
  ResidentModel model(*wide);
  const CaseRun run = run_case(model, cases["cases"][3], 20);
  EXPECT_EQ(run.generations[0].output_ids,
            cases["cases"][3]["output_ids"][0].get<std::vector<int32_t>>());

  config["torch_dtype"] = "bfloat16";
  write_checkpoint(*original, config, bf16.path().string(), 1u << 30);
  auto narrow = open_weight_source(bf16.path().string());
  std::vector<float> a(192 * 48), b(192 * 48);
  original->read("layers.1.fc1.weight", DType::kF32, a.data());
  narrow->read("layers.1.fc1.weight", DType::kF32, b.data());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(b[i], bf16_to_fp32(fp32_to_bf16(a[i])));
  EXPECT_NO_THROW(ResidentModel{*narrow});
}

// Stopping at eos: with eos set to a token the golden run produces, generation ends there.
TEST(Generation, StopsAtEos) {
  test::TempDir dir;
  const std::string src = model_dir("opt-pub-tiny");
  const auto cases = load_cases("opt-pub-tiny");
  const auto want = cases["cases"][2]["output_ids"][0].get<std::vector<int32_t>>();
  auto config = nlohmann::json::parse(test::read_text(src + "/config.json"));
  config["eos_token_id"] = want[4];
  const size_t first = std::find(want.begin(), want.end(), want[4]) - want.begin();
  test::write_text(dir.file("config.json"), config.dump());
  std::filesystem::create_symlink(src + "/model.safetensors", dir.file("model.safetensors"));
  auto source = open_weight_source(dir.path().string());
  ResidentModel model(*source);
  std::vector<Prompt> prompts = {
      {cases["cases"][2]["input_ids"][0].get<std::vector<int32_t>>(), 0}};
  GenerateOptions options;
  options.gen_len = 20;
  auto g = generate_batch(model, prompts, options, nullptr);
  EXPECT_EQ(g[0].finish, FinishReason::kStop);
  EXPECT_EQ(g[0].output_ids, std::vector<int32_t>(want.begin(), want.begin() + first + 1));
  options.ignore_eos = true;
  g = generate_batch(model, prompts, options, nullptr);
  EXPECT_EQ(g[0].finish, FinishReason::kLength);
  EXPECT_EQ(g[0].output_ids, want);
}

// A synthetic model written to disk reads back as the same model.
TEST(Synthetic, WrittenCheckpointMatchesOnTheFly) {
  test::TempDir dir;
  const auto result =
      test::run_strata("synth --arch opt-125m --layers 1 --seed 7 --out " + dir.file("m"));
  ASSERT_EQ(result.exit_status, 0) << result.err;
  auto written = open_weight_source(dir.file("m"));
  EXPECT_EQ(written->config().n_layers, 1);
  EXPECT_EQ(written->config().hidden_size, 768);
  ModelConfig config = written->config();
  auto on_the_fly = make_synthetic_source(config, 7, "synthetic");
  std::vector<float> a(3072 * 768), b(3072 * 768);
  written->read("layers.0.fc1.weight", DType::kF32, a.data());
  on_the_fly->read("layers.0.fc1.weight", DType::kF32, b.data());
  EXPECT_EQ(a, b);
  auto other_seed = make_synthetic_source(config, 8, "synthetic");
  other_seed->read("layers.0.fc1.weight", DType::kF32, b.data());
  EXPECT_NE(a, b);
}

// The same for a Llama-family model: "model." names, an untied lm_head, shards, bf16.
TEST(Synthetic, WrittenLlamaCheckpointMatchesOnTheFly) {
  test::TempDir dir;
  auto config_json = nlohmann::json::parse(
      test::read_text(test::model_dir("families/mistral-tiny") + "/config.json"));
  config_json["torch_dtype"] = "bfloat16";
  const ModelConfig c = parse_model_config(config_json, "mistral-tiny");
  const auto on_the_fly = make_synthetic_source(c, 3, "synthetic");
  write_checkpoint(*on_the_fly, config_json, dir.file("m"), 20000);
  EXPECT_TRUE(std::filesystem::exists(dir.file("m/model.safetensors.index.json")));
  const auto written = open_weight_source(dir.file("m"));
  EXPECT_EQ(written->config().family, Family::kMistral);
  EXPECT_TRUE(written->has_separate_lm_head());
  for (const auto& spec : model_tensor_specs(c)) {
    std::vector<float> a(static_cast<size_t>(shape_numel(spec.shape))), b(a.size());
    written->read(spec.name, DType::kF32, a.data());
    on_the_fly->read(spec.name, DType::kF32, b.data());
    EXPECT_EQ(a, b) << spec.name;
  }
  std::vector<float> head(256 * 32), embed(head.size());
  written->read("lm_head.weight", DType::kF32, head.data());
  written->read("embed_tokens.weight", DType::kF32, embed.data());
  EXPECT_NE(head, embed) << "an untied head is its own tensor";
}

}  // namespace
}  // namespace strata
