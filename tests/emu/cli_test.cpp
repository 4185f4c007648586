// `strata generate` and `strata bench` with --device cuda, end to end on the emulated GPU (the
// strata_emu binary): flags reach the CUDA engine, which gives Hugging Face's ids.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace strata {
namespace {

const std::filesystem::path kData = test::kDataDir;

struct CliRun {
  int status;
  std::string out;
};

CliRun run(const std::string& args) {
  const std::string cmd = std::string(STRATA_EMU_BINARY) + " " + args + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  CliRun r{-1, ""};
  if (!pipe) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) r.out.append(buf, n);
  const int status = pclose(pipe);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("strata-emu-" + std::to_string(getpid()) + "-" + name))
      .string();
}

TEST(EmulatedCli, GenerateOnCudaGivesTheGoldenIds) {
  std::ifstream in(kData / "opt-pub-tiny" / "cases.json");
  const auto cases = nlohmann::json::parse(in);
  const std::string input = temp_path("in.jsonl"), output = temp_path("out.jsonl");
  std::vector<std::vector<int32_t>> golden;
  {
    std::ofstream f(input);
    for (const auto& c : cases["cases"]) {
      for (size_t b = 0; b < c["input_ids"].size(); ++b) {
        f << nlohmann::json{{"id", std::to_string(golden.size())}, {"input_ids", c["input_ids"][b]}}
                 .dump()
          << "\n";
        golden.push_back(c["output_ids"][b].get<std::vector<int32_t>>());
      }
    }
  }
  const CliRun r = run("generate --model " + (kData / "opt-pub-tiny").string() + " --input " +
                       input + " --output " + output +
                       " --gen-len 20 --ignore-eos --device cuda --percent 0 100 0 100 100 0 "
                       "--gpu-batch-size 2 --num-gpu-batches 2");
  ASSERT_EQ(r.status, 0) << r.out;
  std::ifstream out(output);
  std::string line;
  size_t i = 0;
  for (; std::getline(out, line); ++i) {
    ASSERT_LT(i, golden.size());
    EXPECT_EQ(nlohmann::json::parse(line)["output_ids"].get<std::vector<int32_t>>(), golden[i])
        << "prompt " << i;
  }
  EXPECT_EQ(i, golden.size());
  std::filesystem::remove(input);
  std::filesystem::remove(output);
}

TEST(EmulatedCli, BenchOnCudaReportsTheHostToDeviceBound) {
  const std::string json = temp_path("bench.json");
  const CliRun r =
      run("bench --model synthetic:opt-125m --prompt-len 8 --gen-len 3 --gpu-batch-size 2 "
          "--percent 0 100 100 0 100 0 --device cuda --json " +
          json);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("on cuda"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("pinned peak"), std::string::npos) << r.out;
  std::ifstream in(json);
  const auto j = nlohmann::json::parse(in);
  EXPECT_EQ(j["device"], "cuda");
  EXPECT_GT(j["h2d_pinned_gbps"].get<double>(), 0);
  EXPECT_GT(j["h2d_achieved_gbps"].get<double>(), 0);
  EXPECT_GT(j["bytes_read"]["cpu"].get<double>(), 0);
  std::filesystem::remove(json);
}

// `strata profile` measures the GPU where there is one (here the emulated one), with the
// engine's own kernels, into a profile the planner accepts.
TEST(EmulatedCli, ProfileMeasuresTheGpu) {
  const std::string out = temp_path("profile.json");
  const CliRun r = run("profile --quick --offload-dir " +
                       std::filesystem::temp_directory_path().string() + " --out " + out);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("GPU: h2d"), std::string::npos) << r.out;
  std::ifstream in(out);
  const auto j = nlohmann::json::parse(in);
  EXPECT_TRUE(j["has_gpu"].get<bool>());
  for (const char* field :
       {"h2d_gbps", "d2h_gbps", "gpu_gemm_gflops", "gpu_gemm_decode_gflops", "gpu_attention_gflops",
        "gpu_attention_decode_gflops", "gpu_mem_gbps", "cpu_gemm_gflops"}) {
    EXPECT_GT(j[field].get<double>(), 0) << field;
  }
  const CliRun plan =
      run("plan --model synthetic:opt-125m --prompt-len 32 --gen-len 8 --hardware " + out +
          " --hetegen");
  EXPECT_EQ(plan.status, 0) << plan.out;
  std::filesystem::remove(out);
}

TEST(EmulatedCli, UnsupportedPolicyOnCudaIsAnInputError) {
  const CliRun r = run("generate --model " + (kData / "opt-pub-tiny").string() +
                       " --prompt hello --device cuda --alpha 0.3");
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_NE(r.out.find("HeteGen"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace strata
