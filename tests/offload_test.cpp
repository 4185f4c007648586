// The offloading invariant: every valid policy gives exactly the all-on-GPU-tier result, which
// itself matches Hugging Face's outputs.
#include <random>

#include "core/error.h"
#include "model/weight_source.h"
#include "runtime/offload_engine.h"
#include "runtime/tiered_array.h"
#include "test_util.h"

namespace strata {
namespace {

struct Workload {
  std::vector<Prompt> prompts;
  std::vector<std::vector<int32_t>> golden_ids;
  std::vector<std::vector<float>> golden_logprobs;
};

Workload workload(const std::string& model) {
  Workload w;
  const auto cases = test::load_cases(model);
  for (const auto& c : cases["cases"]) {
    for (size_t b = 0; b < c["input_ids"].size(); ++b) {
      w.prompts.push_back({c["input_ids"][b].get<std::vector<int32_t>>(), w.prompts.size()});
      w.golden_ids.push_back(c["output_ids"][b].get<std::vector<int32_t>>());
      w.golden_logprobs.push_back(c["token_logprobs"][b].get<std::vector<float>>());
    }
  }
  return w;
}

std::vector<Generation> run(const WeightSource& source, const Workload& w, const Policy& policy,
                            const std::string& offload_dir) {
  EngineOptions options;
  options.policy = policy;
  options.offload_dir = offload_dir;
  options.max_prompt_len = 100;
  options.gen_len = 20;
  OffloadEngine engine(source, options);
  GenerateOptions gen;
  gen.gen_len = 20;
  gen.ignore_eos = true;
  std::vector<Generation> all;
  const size_t block = static_cast<size_t>(policy.effective_batch());
  for (size_t first = 0; first < w.prompts.size(); first += block) {
    const size_t n = std::min(block, w.prompts.size() - first);
    auto part = engine.generate(std::span(w.prompts).subspan(first, n), gen, nullptr);
    all.insert(all.end(), part.begin(), part.end());
  }
  return all;
}

Policy all_on_gpu(int64_t gbs, int64_t ngb) {
  Policy p;
  p.gpu_batch_size = gbs;
  p.num_gpu_batches = ngb;
  return p;
}

TierSplit random_split(std::mt19937& rng) {
  std::uniform_int_distribution<int> pick(0, 5);
  std::uniform_real_distribution<double> u(0, 100);
  switch (pick(rng)) {  // the edges half the time
    case 0:
      return {100, 0};
    case 1:
      return {0, 100};
    case 2:
      return {0, 0};
    default: {
      const double g = u(rng);
      return {g, std::uniform_real_distribution<double>(0, 100 - g)(rng)};
    }
  }
}

class OffloadTest : public ::testing::TestWithParam<std::string> {};

TEST_P(OffloadTest, AllOnGpuTierMatchesTransformers) {
  auto source = open_weight_source(test::model_dir(GetParam()));
  const Workload w = workload(GetParam());
  const auto got = run(*source, w, all_on_gpu(3, 2), "");
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].output_ids, w.golden_ids[i]) << "prompt " << i;
    for (size_t t = 0; t < got[i].token_logprobs.size(); ++t) {
      EXPECT_NEAR(got[i].token_logprobs[t], w.golden_logprobs[i][t], 1e-3);
    }
  }
}

TEST_P(OffloadTest, EveryPolicyGivesTheAllOnGpuResult) {
  auto source = open_weight_source(test::model_dir(GetParam()));
  const Workload w = workload(GetParam());
  test::TempDir dir;
  std::mt19937 rng(std::hash<std::string>{}(GetParam()));
  std::vector<Policy> policies;
  // The edges: everything on one tier.
  for (TierSplit s : {TierSplit{100, 0}, TierSplit{0, 100}, TierSplit{0, 0}}) {
    Policy p = all_on_gpu(2, 2);
    p.weights = p.cache = p.activations = s;
    policies.push_back(p);
  }
  for (int i = 0; i < 10; ++i) {
    Policy p = all_on_gpu(std::uniform_int_distribution<int64_t>(1, 4)(rng),
                          std::uniform_int_distribution<int64_t>(1, 4)(rng));
    p.weights = random_split(rng);
    p.cache = random_split(rng);
    p.activations = random_split(rng);
    p.overlap = rng() % 4 != 0;
    p.sep_layer = rng() % 2;
    p.cpu_cache_compute = rng() % 2;
    policies.push_back(p);
  }
  for (const Policy& p : policies) {
    SCOPED_TRACE(p.to_json().dump());
    const auto want = run(*source, w, all_on_gpu(p.gpu_batch_size, p.num_gpu_batches), "");
    const auto got = run(*source, w, p, dir.path().string());
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].output_ids, want[i].output_ids) << "prompt " << i;
      EXPECT_EQ(got[i].token_logprobs, want[i].token_logprobs) << "prompt " << i;
    }
    EXPECT_TRUE(std::filesystem::is_empty(dir.path())) << "the disk store left files behind";
  }
}

INSTANTIATE_TEST_SUITE_P(ReferenceModels, OffloadTest, ::testing::ValuesIn(test::kReferenceModels));

// Bytes on each tier follow the requested percentages to within 1% of the layer.
TEST(Placement, ByElementsNotWholeTensors) {
  for (double g : {0.0, 7.5, 20.0, 33.3, 100.0}) {
    const ElementSplit e = ElementSplit::of(1000003, {g, (100 - g) / 2});
    EXPECT_NEAR(100.0 * e.gpu / 1000003, g, 0.01);
    EXPECT_NEAR(100.0 * e.cpu / 1000003, (100 - g) / 2, 0.01);
    EXPECT_EQ(e.gpu + e.cpu + e.disk, 1000003);
  }
}

Error expect_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "no error";
  return Error("", 0);
}

TEST(PolicyErrors, RejectedBeforeAllocating) {
  auto source = open_weight_source(test::model_dir("opt-pub-tiny"));
  EngineOptions o;
  o.max_prompt_len = 100;
  o.gen_len = 20;
  o.policy.weights = {60, 50};
  auto e = expect_error([&] { OffloadEngine engine(*source, o); });
  EXPECT_EQ(e.exit_status(), kExitBadInput);
  EXPECT_NE(std::string(e.what()).find("weight gpu + cpu percent is 110"), std::string::npos)
      << e.what();
  o.policy.weights = {-1, 0};
  e = expect_error([&] { OffloadEngine engine(*source, o); });
  EXPECT_NE(std::string(e.what()).find("outside 0..100"), std::string::npos) << e.what();

  o.policy.weights = {100, 0};
  o.caps.gpu_bytes = 100000;
  const uint64_t need = plan_memory(source->config(), o).total(Tier::kGpu);
  e = expect_error([&] { OffloadEngine engine(*source, o); });
  EXPECT_EQ(e.exit_status(), kExitBadInput);
  const std::string msg = e.what();
  for (const std::string& part :
       std::vector<std::string>{"gpu tier", std::to_string(need), "--gpu-mem allows 100000"}) {
    EXPECT_NE(msg.find(part), std::string::npos) << msg;
  }

  o.caps = {};
  o.policy.weights = {0, 0};
  e = expect_error([&] { OffloadEngine engine(*source, o); });
  EXPECT_NE(std::string(e.what()).find("--offload-dir"), std::string::npos) << e.what();
  o.offload_dir = "/nonexistent/offload";
  e = expect_error([&] { OffloadEngine engine(*source, o); });
  EXPECT_EQ(e.exit_status(), kExitBadInput);
  EXPECT_NE(std::string(e.what()).find("/nonexistent/offload"), std::string::npos) << e.what();
}

TEST(PolicyFile, RoundTripsAndRejectsUnknownFields) {
  Policy p;
  p.gpu_batch_size = 7;
  p.weights = {20, 30};
  p.cpu_cache_compute = true;
  const Policy q = Policy::from_json(p.to_json(), "test");
  EXPECT_EQ(q.to_json(), p.to_json());
  auto j = p.to_json();
  j["w_gpu_precent"] = 3;
  auto e = expect_error([&] { Policy::from_json(j, "policy.json"); });
  EXPECT_NE(std::string(e.what()).find("w_gpu_precent"), std::string::npos);
}

TEST(PolicyCli, PercentFlagsAndCapsReachTheEngine) {
  test::TempDir dir;
  const auto r = test::run_strata(
      "bench --model " + test::model_dir("opt-pub-tiny") +
      " --no-bounds --prompt-len 8 --gen-len 4 --percent 20 30 0 100 100 0 --gpu-batch-size 2 "
      "--num-gpu-batches 2 --offload-dir " +
      dir.path().string() + " --json " + dir.file("b.json") + " --trace " + dir.file("t.json"));
  ASSERT_EQ(r.exit_status, 0) << r.err;
  const auto j = nlohmann::json::parse(test::read_text(dir.file("b.json")));
  EXPECT_EQ(j["policy"]["w_gpu_percent"], 20.0);
  EXPECT_EQ(j["policy"]["w_cpu_percent"], 30.0);
  EXPECT_EQ(j["policy"]["num_gpu_batches"], 2);
  for (const char* key : {"prefill_tokens_per_s", "decode_tokens_per_s", "generation_tokens_per_s",
                          "overlap_efficiency"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  for (const char* key :
       {"peak_bytes", "weight_bytes", "cache_bytes", "bytes_read", "bytes_written"}) {
    for (const char* tier : {"gpu", "cpu", "disk"}) EXPECT_TRUE(j[key].contains(tier)) << key;
  }
  EXPECT_GT(j["bytes_read"]["disk"].get<uint64_t>(), 0u);
  EXPECT_EQ(j["cache_bytes"]["disk"].get<uint64_t>(), 0u);
  const auto trace = nlohmann::json::parse(test::read_text(dir.file("t.json")));
  EXPECT_GT(trace["traceEvents"].size(), 10u);

  const auto bad = test::run_strata("bench --model " + test::model_dir("opt-pub-tiny") +
                                    " --percent 20 30 0 100 100 --gpu-mem 1MiB");
  EXPECT_EQ(bad.exit_status, 2);
  EXPECT_NE(bad.err.find("six numbers"), std::string::npos) << bad.err;
  const auto capped = test::run_strata("bench --model " + test::model_dir("opt-pub-tiny") +
                                       " --no-bounds --prompt-len 8 --gen-len 4 --gpu-mem 100KiB");
  EXPECT_EQ(capped.exit_status, 2);
  EXPECT_NE(capped.err.find("gpu tier"), std::string::npos) << capped.err;
}

}  // namespace
}  // namespace strata
