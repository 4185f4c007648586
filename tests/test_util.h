// Shared helpers for the test suites (strata_tests, and the CUDA and emulated CUDA tests):
// reference cases, seeds, float comparisons, temporary directories, running the CLI.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "model/weight_source.h"
#include "planner/hardware_profile.h"
#include "runtime/engine.h"
#include "runtime/memory_plan.h"

namespace strata::test {

// STRATA_TEST_DATA in the environment (a GPU machine's copy of tests/data), else the source
// tree's, where the build put it.
inline const std::string kDataDir = [] {
  const char* env = std::getenv("STRATA_TEST_DATA");
  return std::string(env && *env ? env : STRATA_TEST_DATA);
}();
inline const std::string kBinary = STRATA_BINARY;
// OPT with Hugging Face transformers' outputs; Llama-family models with an independent numpy
// reference's (tests/data/families), itself checked against llama2.c on stories260K.
inline const std::vector<std::string> kOptReferenceModels = {"opt-pub-tiny", "opt-pub-350m-style",
                                                             "opt-pub-gelu-nobias"};
inline const std::vector<std::string> kReferenceModels = {"opt-pub-tiny",
                                                          "opt-pub-350m-style",
                                                          "opt-pub-gelu-nobias",
                                                          "families/llama3-tiny",
                                                          "families/qwen2-tiny",
                                                          "families/mistral-tiny",
                                                          "families/llama2-linear-tiny"};

inline std::string model_dir(const std::string& name) {
  return kDataDir + "/" + name;
}
nlohmann::json load_cases(const std::string& model);

// A reference model's cases: its prompts with Hugging Face's greedy ids and logprobs.
struct Workload {
  std::vector<Prompt> prompts;
  std::vector<std::vector<int32_t>> golden_ids;
  std::vector<std::vector<float>> golden_logprobs;
};
Workload workload(const std::string& model);
// options.gen_len greedy tokens (eos ignored) for every prompt of w, block by block; `stats`,
// when given, gets the engine's counters afterwards.
std::vector<Generation> run_engine(const WeightSource& source, const Workload& w,
                                   const EngineOptions& options, EngineStats* stats = nullptr);
// The same with 20 tokens, prompts up to 100 tokens, under `policy`.
std::vector<Generation> run_engine(const WeightSource& source, const Workload& w,
                                   const Policy& policy, const std::string& offload_dir = "");

// Teacher-forced log-softmax rows from the engine's own forward, one per id of ids[1..]: each
// prefix prefilled, row t - 1 the distribution that predicts ids[t] (in double, from the logits).
std::vector<std::vector<double>> forced_rows(const std::string& model,
                                             const std::vector<int32_t>& ids);
// Row t - 1's entry for ids[t].
std::vector<double> forced_logprobs(const std::string& model, const std::vector<int32_t>& ids);

// The lines of `text`, without their newlines.
std::vector<std::string> lines_of(const std::string& text);
// One OpenAI batch input line for /v1/completions, newline included.
std::string batch_line(const std::string& id, const nlohmann::json& body);

// Where tests/fetch_fixtures.sh put the npm fixtures: $STRATA_FIXTURES, else
// ~/.cache/strata-fixtures.
inline std::string fixtures_root() {
  if (const char* env = std::getenv("STRATA_FIXTURES")) return env;
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "") + "/.cache/strata-fixtures";
}

// The run's seed: STRATA_TEST_SEED if set, else fresh; printed once so a failure can be replayed.
uint64_t seed();
// A generator seeded from seed() and the running test's name, so tests do not share draws.
std::mt19937_64 rng();

// Largest |got[i] - want[i]| / max(1, |want[i]|). NaN when either side holds a NaN or the sizes
// differ (std::max alone would skip a NaN), so EXPECT_LT(max_rel_diff(...), tol) fails then.
template <typename Got, typename Want>
double max_rel_diff(const Got& got, const Want& want) {
  if (std::size(got) != std::size(want)) return std::numeric_limits<double>::quiet_NaN();
  double worst = 0;
  for (size_t i = 0; i < std::size(got); ++i) {
    const double g = static_cast<double>(got[i]), w = static_cast<double>(want[i]);
    const double d = std::abs(g - w) / std::max(1.0, std::abs(w));
    if (std::isnan(d)) return d;
    worst = std::max(worst, d);
  }
  return worst;
}

// A GPU node with round rates (h2d 10 GB/s, GPU GEMM 1000 / 100 GFLOP/s for prefill / decode,
// 1 GiB GPU, 8 GiB CPU), so cost terms are easy to write out by hand.
HardwareProfile gpu_profile();

// A fresh directory removed with everything in it when the object goes.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

void write_text(const std::string& path, const std::string& text);
std::string read_text(const std::string& path);

struct RunResult {
  int exit_status;
  std::string out;
  std::string err;
};
// Runs `strata ARGS` (a shell-quoted string) and captures both streams; `shell_prefix`, when
// given, runs first in the same shell (e.g. "ulimit -v 4000000;").
RunResult run_strata(const std::string& args, const std::string& shell_prefix = "");
// Expects `strata ARGS` to fail as bad input: exit 2, nothing on stdout, one line on stderr
// holding every part.
void expect_cli_error(const std::string& args, std::initializer_list<std::string> parts);
// `generate` on the tiny OPT reference model with `input`, then `extra` flags.
std::string generate_args(const std::string& input, const std::string& extra = "");

}  // namespace strata::test
