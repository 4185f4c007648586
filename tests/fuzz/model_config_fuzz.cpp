// config.json into a ModelConfig, and the tensor list the loaders derive from it.
#include "core/json_file.h"
#include "model/model_config.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  strata::fuzz::expect_input_errors_only([&] {
    const auto json = strata::parse_json_text(strata::fuzz::text(data, size), "config.json");
    const auto config = strata::parse_model_config(json, "config.json");
    (void)config.n_params();
    (void)strata::model_tensor_specs(config);
  });
  return 0;
}
