// Generation requests read from JSONL, and results written back as JSONL.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "model/opt_config.h"
#include "runtime/generator.h"

namespace strata {

struct Request {
  nlohmann::json id;
  std::vector<int32_t> input_ids;
  std::optional<std::string> prompt;  // text, tokenized before validation
  std::string where;                  // "FILE:LINE" for error messages
};

// Parses every line (blank lines skipped); an input error names the file and line.
std::vector<Request> read_requests(const std::string& path);

// Checks ids against the vocabulary and prompt + gen_len against max_position_embeddings.
void validate_request(const Request& request, const OptConfig& config, int64_t gen_len);

nlohmann::json result_json(const Request& request, const Generation& generation);

}  // namespace strata
