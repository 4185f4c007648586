// A hardware profile (configs/hardware/*.json), as HardwareProfile::load reads it.
#include <nlohmann/json.hpp>

#include "core/json_file.h"
#include "planner/hardware_profile.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  strata::fuzz::expect_input_errors_only([&] {
    const auto json = strata::parse_json_text(strata::fuzz::text(data, size), "hw.json");
    const auto profile = strata::HardwareProfile::from_json(json, "hw.json");
    for (double rows : {1.0, 64.0, 4096.0}) (void)profile.cpu_gemm_rate_gflops(rows);
    (void)strata::HardwareProfile::from_json(profile.to_json(), "hw.json (written back)");
  });
  return 0;
}
