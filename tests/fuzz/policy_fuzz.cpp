// A policy file (--policy), as Policy::load reads it.
#include <nlohmann/json.hpp>

#include "core/json_file.h"
#include "runtime/policy.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  strata::fuzz::expect_input_errors_only([&] {
    const auto json = strata::parse_json_text(strata::fuzz::text(data, size), "policy.json");
    const auto policy = strata::Policy::from_file_json(json, "policy.json");
    policy.validate();
    (void)policy.effective_batch();
    // What it writes back reads the same.
    (void)strata::Policy::from_json(policy.to_json(), "policy.json (written back)");
  });
  return 0;
}
