// Generation requests read from JSONL, and results written back as JSONL. Two formats, told
// apart per file by its first line: strata's own ({"id", "input_ids" | "prompt", ...}) and
// OpenAI's Batch API input ({"custom_id", "method", "url", "body"}), whose results are written
// as OpenAI's batch output.
#pragma once

#include <istream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "model/model_config.h"
#include "runtime/generator.h"
#include "tokenizer/tokenizer.h"

namespace strata {

enum class RequestFormat { kNative, kOpenAiBatch };

// A request's own generation parameters; unset: the flags'.
struct RequestParams {
  std::optional<int64_t> max_tokens;
  std::optional<float> temperature;  // 0: greedy
  std::optional<float> top_p;
  std::optional<uint64_t> seed;
  std::optional<std::vector<std::string>> stop;
  bool echo = false;                // also score the prompt's own tokens
  std::optional<int> logprobs;      // OpenAI: a logprobs object in the choice when set, with this
                                    // many alternatives per token
  std::optional<int> top_logprobs;  // strata's format: alternatives per token
};

// Why a request cannot run; it gets an output line saying so and the job goes on (OpenAI
// batch format; in strata's own format these are input errors).
struct RequestError {
  std::string code;
  std::string message;
};

struct Request {
  nlohmann::json id;  // "id", or the batch format's "custom_id"
  std::vector<int32_t> input_ids;
  std::optional<std::string> prompt;  // text, tokenized before validation
  std::string where;                  // "FILE:LINE" for error messages
  RequestParams params;
  std::string model;  // the batch body's "model", echoed in its output
  std::optional<RequestError> error;
};

struct RequestFile {
  RequestFormat format = RequestFormat::kNative;
  std::vector<Request> requests;
};

// Parses every line (blank lines skipped); an input error names the file and line: a line that
// is not a request of the file's format, a duplicate id (naming both lines), an empty file.
RequestFile read_request_file(const std::string& path);
// The same from `in` (the file's text), `path` naming it in errors.
RequestFile read_request_file(std::istream& in, const std::string& path);
std::vector<Request> read_requests(const std::string& path);

// Requests from --prompt flags: ids 0, 1, 2, ... in order.
std::vector<Request> prompt_requests(const std::vector<std::string>& prompts);

// Fills input_ids of the requests that gave a text prompt. `tokenizer` is null when the model
// has none; then a text prompt is an input error naming its line and `tokenizer_source`, or,
// with `errors_in_output`, the request's error.
void tokenize_prompts(std::vector<Request>& requests, const Tokenizer* tokenizer,
                      const std::string& tokenizer_source, bool errors_in_output = false);

// Why the request cannot run on this model with `gen_len` new tokens (ids outside the vocabulary,
// prompt + gen_len past max_position_embeddings), or none.
std::optional<RequestError> request_problem(const Request& request, const ModelConfig& config,
                                            int64_t gen_len);
// The same as an input error.
void validate_request(const Request& request, const ModelConfig& config, int64_t gen_len);

// The sampling a request asks for over the flags' `base`.
SamplingParams request_sampling(const RequestParams& params, const SamplingParams& base);

// `text`, when given, is written as "text" beside "output_ids".
nlohmann::json result_json(const Request& request, const Generation& generation,
                           const std::optional<std::string>& text = std::nullopt);

}  // namespace strata
