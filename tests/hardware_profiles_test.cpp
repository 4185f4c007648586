// The shipped hardware profiles (configs/hardware) are complete: every field the cost model reads
// has a value with its source in the note, so plans on them respect the machine's limits.
#include <filesystem>
#include <nlohmann/json.hpp>

#include "planner/hardware_profile.h"
#include "test_util.h"

namespace strata {
namespace {

namespace fs = std::filesystem;

const std::string kHardwareDir = test::kDataDir + "/../../configs/hardware";

std::vector<std::string> shipped_profiles() {
  std::vector<std::string> paths;
  for (const auto& e : fs::directory_iterator(kHardwareDir)) {
    if (e.path().extension() == ".json") paths.push_back(e.path().string());
  }
  std::sort(paths.begin(), paths.end());
  return paths;
}

TEST(ShippedProfiles, EveryFieldTheCostModelReadsIsSetAndSourced) {
  const auto paths = shipped_profiles();
  ASSERT_GE(paths.size(), 3u);
  for (const auto& path : paths) {
    SCOPED_TRACE(path);
    const HardwareProfile hw = HardwareProfile::load(path);
    const auto j = nlohmann::json::parse(test::read_text(path));
    ASSERT_TRUE(j.contains("note")) << "no note giving the numbers' sources";
    EXPECT_GT(j["note"].get<std::string>().size(), 100u);
    for (const double value : {hw.disk_read_gbps, hw.disk_write_gbps, hw.disk_read_request_s,
                               hw.disk_write_request_s, hw.disk_cpu_s_per_gb, hw.host_copy_gbps,
                               hw.expand_gbps, hw.cpu_gemm_gflops, hw.cpu_attention_gflops}) {
      EXPECT_GT(value, 0);
    }
    EXPECT_GT(hw.cpu_mem_bytes, 0u);
    EXPECT_GT(hw.disk_bytes, 0u);
    if (!hw.has_gpu) continue;
    for (const double value :
         {hw.h2d_gbps, hw.d2h_gbps, hw.gpu_gemm_gflops, hw.gpu_attention_gflops, hw.gpu_mem_gbps}) {
      EXPECT_GT(value, 0);
    }
    EXPECT_GT(hw.gpu_mem_bytes, 0u);
    // A hand-written GPU profile says where its CPU and memory figures come from.
    const std::string note = j["note"];
    for (const char* key : {"gpu_mem_gbps", "cpu_gemm_gflops", "host_copy_gbps"}) {
      EXPECT_NE(note.find(key), std::string::npos) << key;
    }
  }
}

// A decode step reads every GPU-tier weight byte from device memory at least once, so decode
// cannot beat effective batch x memory bandwidth / those bytes (the T4 profile without
// gpu_mem_gbps let the plan claim 151 tok/s at batch 1, six times that).
TEST(ShippedProfiles, T4DecodeStaysUnderItsMemoryBandwidth) {
  const std::string t4 = kHardwareDir + "/gcp-t4-flexgen.json";
  const auto r = test::run_strata("plan --model opt-6.7b --hardware " + t4 +
                                  " --prompt-len 512 --gen-len 32 --json");
  ASSERT_EQ(r.exit_status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  const auto& p = j["policy"];
  const double batch = p["gpu_batch_size"].get<double>() * p["num_gpu_batches"].get<double>();
  const ModelConfig config = parse_model_config(builtin_config_json("opt-6.7b"), "opt-6.7b");
  const double gpu_weight_bytes =
      static_cast<double>(config.n_params()) * 2 * p["w_gpu_percent"].get<double>() / 100;
  const double bound = batch * HardwareProfile::load(t4).gpu_mem_gbps * 1e9 / gpu_weight_bytes;
  const double decode = j["predicted"]["decode_tokens_per_s"].get<double>();
  EXPECT_GT(decode, 0);
  EXPECT_LE(decode, bound) << "batch " << batch;
}

TEST(ShippedProfiles, HeteGenPlansOnBothGpuProfiles) {
  for (const char* name : {"gcp-t4-flexgen", "h100-node"}) {
    const auto r = test::run_strata("plan --model opt-30b --hardware " + kHardwareDir + "/" + name +
                                    ".json --prompt-len 512 --gen-len 32 --hetegen");
    EXPECT_EQ(r.exit_status, 0) << name << ": " << r.err;
    EXPECT_NE(r.out.find("hetegen alpha"), std::string::npos) << name << ": " << r.out;
  }
}

}  // namespace
}  // namespace strata
