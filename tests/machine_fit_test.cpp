// Runs the machine cannot hold are refused before anything is allocated: one line with what the
// plan needs, what there is and flags that fit; under `ulimit -v` the same, before loading.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "runtime/engine.h"
#include "runtime/machine_fit.h"
#include "test_util.h"

namespace strata {
namespace {

namespace fs = std::filesystem;
using test::expect_cli_error;
using test::generate_args;
using test::run_strata;
using test::TempDir;

// A plan that does not fit the machine is refused before anything is allocated, in one line
// with what it needs, what there is and flags that fit (each checked by planning it).
class MachineFit : public ::testing::Test {
 protected:
  MachineFit() : config(parse_model_config(builtin_config_json("opt-125m"), "opt-125m")) {
    options.max_prompt_len = 64;
    options.gen_len = 16;
    options.policy.gpu_batch_size = 64;
  }
  uint64_t host_need(const EngineOptions& o) const {
    return host_bytes_needed(plan_memory(config, o), Device::kCpu);
  }
  // The message check_fits gives for `room`, or "" when the plan fits.
  std::string refusal(const EngineOptions& o, const MachineRoom& room) const {
    try {
      check_fits(config, o, plan_memory(config, o), Device::kCpu, room);
      return "";
    } catch (const Error& e) {
      EXPECT_EQ(e.exit_status(), kExitBadInput);
      return e.what();
    }
  }
  ModelConfig config;
  EngineOptions options;
};

TEST_F(MachineFit, ExactlyEnoughFitsOneByteLessDoesNot) {
  MachineRoom room;
  room.host_bytes = host_need(options);
  room.host_limit = "test";
  EXPECT_EQ(refusal(options, room), "");
  room.host_bytes -= 1;
  const std::string m = refusal(options, room);
  EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  for (const char* part :
       {"needs", "of host memory", "KV cache", "but this machine has", "(test)", "--policy auto"}) {
    EXPECT_NE(m.find(part), std::string::npos) << part << ": " << m;
  }
}

TEST_F(MachineFit, SuggestsTheLargestBatchThatFits) {
  EngineOptions eight = options;
  eight.policy.gpu_batch_size = 8;
  MachineRoom room;
  room.host_bytes = host_need(eight);
  const std::string m = refusal(options, room);
  EXPECT_NE(m.find("--gpu-batch-size 8 or less"), std::string::npos) << m;
  EXPECT_EQ(m.find("--compress-weight"), std::string::npos) << "the cache, not weights: " << m;
}

TEST_F(MachineFit, SuggestsCompressionAndDiskForWeights) {
  // OPT-1.3B's 5 GiB of fp32 weights are most of what it needs; moving some to disk costs the
  // rings and staging that stream them.
  config = parse_model_config(builtin_config_json("opt-1.3b"), "opt-1.3b");
  options.policy.gpu_batch_size = 1;
  MachineRoom room;
  room.host_bytes = host_need(options) - (uint64_t{2} << 30);
  const std::string m = refusal(options, room);
  EXPECT_NE(m.find("--compress-weight"), std::string::npos) << m;
  EXPECT_NE(m.find("--offload-dir DIR --percent 0 "), std::string::npos) << m;
  // The suggested split fits, one percent more on the CPU tier does not.
  const size_t at = m.find("--percent 0 ") + 12;
  const int cpu = std::stoi(m.substr(at));
  EngineOptions split = options;
  split.policy.weights = {0, static_cast<double>(cpu)};
  EXPECT_LE(host_need(split), room.host_bytes);
  split.policy.weights = {0, static_cast<double>(cpu + 1)};
  EXPECT_GT(host_need(split), room.host_bytes);
}

TEST_F(MachineFit, DiskTierBeyondFreeSpace) {
  options.policy.weights = {0, 0};
  options.offload_dir = "/some/dir";
  MachineRoom room;
  room.disk_bytes = plan_memory(config, options).total(Tier::kDisk) - 1;
  const std::string m = refusal(options, room);
  for (const char* part : {"on disk", "--offload-dir /some/dir has", "free"}) {
    EXPECT_NE(m.find(part), std::string::npos) << part << ": " << m;
  }
  room.disk_bytes += 1;
  EXPECT_EQ(refusal(options, room), "");
}

TEST_F(MachineFit, BatchesPastAnyMachineAreInputErrorsNotOverflows) {
  options.policy.gpu_batch_size = int64_t{1} << 31;
  options.policy.num_gpu_batches = int64_t{1} << 31;
  try {
    plan_memory(config, options);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.exit_status(), kExitBadInput);
    EXPECT_NE(std::string(e.what()).find("--gpu-batch-size"), std::string::npos) << e.what();
  }
}

// The cases on the CLI: a batch or a model this machine cannot hold (no machine holds
// 110 TiB or 650 GiB of fp32 weights) ends in the line and exit 2, not bad_alloc or the OOM killer.
TEST(MachineFitCli, TooLargeRunsAreRefusedUpFront) {
  expect_cli_error(
      "bench --model synthetic:opt-125m --no-bounds --gen-len 2 --prompt-len 8 "
      "--gpu-batch-size 100000000",
      {"the policy needs", "of host memory", "--gpu-batch-size", "--policy auto"});
  expect_cli_error("bench --model synthetic:opt-175b --no-bounds --gen-len 2 --prompt-len 8",
                   {"the policy needs", "of host memory", "but this machine has"});
  TempDir dir;
  test::write_text(dir.file("in.jsonl"), "{\"id\": 1, \"input_ids\": [2, 5]}\n");
  expect_cli_error(generate_args(dir.file("in.jsonl"), "--gpu-batch-size 100000000"),
                   {"the policy needs", "--gpu-batch-size"});
}

TEST(MachineFitCli, AddressSpaceLimitCountsAndRunsThatFitStillRun) {
#ifdef STRATA_SANITIZED
  GTEST_SKIP() << "ASan reserves terabytes of address space, so no ulimit -v run can start";
#endif
  const std::string limit = "ulimit -v 4000000;";  // 3.8 GiB of address space
  const auto r = run_strata(
      "bench --model synthetic:opt-6.7b --no-bounds --gen-len 2 "
      "--prompt-len 8",
      limit);
  EXPECT_EQ(r.exit_status, 2) << r.err;
  EXPECT_NE(r.err.find("RLIMIT_AS"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
  TempDir dir;
  test::write_text(dir.file("in.jsonl"), "{\"id\": 1, \"input_ids\": [2, 5]}\n");
  const auto ok = run_strata(generate_args(dir.file("in.jsonl"), "--gen-len 2"), limit);
  EXPECT_EQ(ok.exit_status, 0) << ok.err;
}

// Bytes from a format_bytes() text ("1.25 GiB") at `pos` in `text`; -1 when there is none.
double bytes_at(const std::string& text, size_t pos) {
  if (pos == std::string::npos) return -1;
  std::istringstream in(text.substr(pos));
  double value = 0;
  std::string unit;
  if (!(in >> value >> unit)) return -1;
  const std::vector<std::string> units = {"B", "KiB", "MiB", "GiB", "TiB"};
  const auto u = std::find(units.begin(), units.end(), unit);
  return u == units.end() ? -1 : value * std::pow(1024.0, u - units.begin());
}

// Under `ulimit -v` below what the policy needs, generate and bench refuse before loading: one
// line with what the policy needs and what the limit leaves (less than the limit, more than
// nothing, below the need), no output file; under the same limit a tiny run still runs.
TEST(MachineFitCli, AddressSpaceBelowThePolicyRefusesGenerateAndBenchUpFront) {
#ifdef STRATA_SANITIZED
  GTEST_SKIP() << "ASan reserves terabytes of address space, so no ulimit -v run can start";
#endif
  constexpr double kLimitKiB = 1500000;  // about 1.4 GiB: opt-1.3b takes 5.3 GiB of weights
  const std::string limit =
      "ulimit -v " + std::to_string(static_cast<int64_t>(kLimitKiB)) + "; exec ";
  TempDir dir;
  test::write_text(dir.file("in.jsonl"), "{\"id\": 1, \"input_ids\": [2, 5]}\n");
  const std::string out = dir.file("out.jsonl");
  const std::vector<std::string> runs = {
      "generate --model synthetic:opt-1.3b --input " + dir.file("in.jsonl") + " --output " + out,
      "bench --model synthetic:opt-1.3b --no-bounds --gen-len 2 --prompt-len 8",
      // A checkpoint on disk: refused before its weights are read; the cache of 100000 sequences
      // is what does not fit.
      generate_args(dir.file("in.jsonl"), "--gpu-batch-size 100000 --output " + out)};
  for (const auto& args : runs) {
    SCOPED_TRACE(args);
    const auto r = run_strata(args, limit);
    EXPECT_EQ(r.exit_status, 2) << r.err;
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
    for (const char* part : {"the policy needs", "of host memory", "but this machine has",
                             "RLIMIT_AS (ulimit -v) less what is mapped"}) {
      EXPECT_NE(r.err.find(part), std::string::npos) << r.err;
    }
    const double needs = bytes_at(r.err, r.err.find("needs ") + 6);
    const double has = bytes_at(r.err, r.err.find("machine has ") + 12);
    EXPECT_GT(has, 0) << r.err;
    EXPECT_LT(has, kLimitKiB * 1024) << r.err;
    EXPECT_GT(needs, has) << r.err;
    EXPECT_FALSE(fs::exists(out)) << "the output was opened before the refusal";
  }
  const auto ok =
      run_strata(generate_args(dir.file("in.jsonl"), "--gen-len 2 --output " + out), limit);
  EXPECT_EQ(ok.exit_status, 0) << ok.err;
  EXPECT_EQ(test::lines_of(test::read_text(out)).size(), 1u);
}

}  // namespace
}  // namespace strata
