// Generation requests read from JSONL, and results written back as JSONL.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "model/model_config.h"
#include "runtime/generator.h"
#include "tokenizer/tokenizer.h"

namespace strata {

struct Request {
  nlohmann::json id;
  std::vector<int32_t> input_ids;
  std::optional<std::string> prompt;  // text, tokenized before validation
  std::string where;                  // "FILE:LINE" for error messages
};

// Parses every line (blank lines skipped); an input error names the file and line.
std::vector<Request> read_requests(const std::string& path);

// Requests from --prompt flags: ids 0, 1, 2, ... in order.
std::vector<Request> prompt_requests(const std::vector<std::string>& prompts);

// Fills input_ids of the requests that gave a text prompt. `tokenizer` is null when the model
// has none; then a text prompt is an input error naming its line and `tokenizer_source`.
void tokenize_prompts(std::vector<Request>& requests, const Tokenizer* tokenizer,
                      const std::string& tokenizer_source);

// Checks ids against the vocabulary and prompt + gen_len against max_position_embeddings.
void validate_request(const Request& request, const ModelConfig& config, int64_t gen_len);

// `text`, when given, is written as "text" beside "output_ids".
nlohmann::json result_json(const Request& request, const Generation& generation,
                           const std::optional<std::string>& text = std::nullopt);

}  // namespace strata
