// The request harnesses' shared body: a JSONL file read, tokenized without a tokenizer and
// checked against a model, as generate does.
#pragma once

#include <sstream>

#include "model/model_config.h"
#include "runtime/requests.h"
#include "tests/fuzz/fuzz_util.h"

namespace strata::fuzz {

inline void read_and_check_requests(const uint8_t* data, size_t size) {
  static const ModelConfig config = parse_model_config(builtin_config_json("opt-125m"), "opt-125m");
  expect_input_errors_only([&] {
    std::istringstream in(text(data, size));
    RequestFile file = read_request_file(in, "requests.jsonl");
    const bool batch = file.format == RequestFormat::kOpenAiBatch;
    tokenize_prompts(file.requests, nullptr, "the model", batch);
    for (auto& r : file.requests) {
      if (r.error) continue;
      const int64_t new_tokens = r.params.max_tokens.value_or(16);
      if (batch) {
        r.error = request_problem(r, config, new_tokens);
      } else {
        validate_request(r, config, new_tokens);
      }
      (void)request_sampling(r.params, SamplingParams{});
    }
  });
}

}  // namespace strata::fuzz
