#include "runtime/requests.h"

#include <cerrno>
#include <cstring>
#include <fstream>

#include "core/error.h"

namespace strata {

std::vector<Request> read_requests(const std::string& path) {
  std::ifstream in(path);
  STRATA_INPUT_CHECK(in.good(), path, ": cannot open: ", std::strerror(errno));
  std::vector<Request> requests;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(number);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      throw_input(where + ": not JSON (" + e.what() + ")");
    }
    STRATA_INPUT_CHECK(j.is_object(), where, ": not a JSON object");
    STRATA_INPUT_CHECK(j.contains("id"), where, ": missing field 'id'");
    Request r;
    r.id = j["id"];
    r.where = where;
    if (j.contains("input_ids")) {
      const auto& ids = j["input_ids"];
      STRATA_INPUT_CHECK(ids.is_array(), where, ": field 'input_ids' is not an array");
      for (const auto& id : ids) {
        STRATA_INPUT_CHECK(id.is_number_integer(), where,
                           ": field 'input_ids' holds a value that is not an integer");
        const int64_t value = id.get<int64_t>();
        STRATA_INPUT_CHECK(value >= INT32_MIN && value <= INT32_MAX, where, ": token id ", value,
                           " is outside the vocabulary");
        r.input_ids.push_back(static_cast<int32_t>(value));
      }
    } else if (j.contains("prompt")) {
      STRATA_INPUT_CHECK(j["prompt"].is_string(), where, ": field 'prompt' is not a string");
      r.prompt = j["prompt"].get<std::string>();
    } else {
      throw_input(where + ": needs 'input_ids' or 'prompt'");
    }
    requests.push_back(std::move(r));
  }
  STRATA_INPUT_CHECK(!in.bad(), path, ": read failed");
  return requests;
}

std::vector<Request> prompt_requests(const std::vector<std::string>& prompts) {
  std::vector<Request> requests;
  for (size_t i = 0; i < prompts.size(); ++i) {
    Request r;
    r.id = i;
    r.prompt = prompts[i];
    r.where = "--prompt #" + std::to_string(i + 1);
    requests.push_back(std::move(r));
  }
  return requests;
}

void tokenize_prompts(std::vector<Request>& requests, const Tokenizer* tokenizer,
                      const std::string& tokenizer_source) {
  for (auto& r : requests) {
    if (!r.prompt) continue;
    STRATA_INPUT_CHECK(tokenizer, r.where, ": a text prompt needs a tokenizer and ",
                       tokenizer_source, " has none (tokenizer.json or vocab.json + merges.txt); ",
                       "give 'input_ids' or --tokenizer DIR");
    r.input_ids = tokenizer->encode(*r.prompt);
  }
}

void validate_request(const Request& r, const ModelConfig& config, int64_t gen_len) {
  STRATA_INPUT_CHECK(!r.input_ids.empty(), r.where, ": the prompt has no tokens");
  for (int32_t id : r.input_ids) {
    STRATA_INPUT_CHECK(id >= 0 && id < config.vocab_size, r.where, ": token id ", id,
                       " is outside the vocabulary (0..", config.vocab_size - 1, ")");
  }
  const int64_t total = static_cast<int64_t>(r.input_ids.size()) + gen_len;
  STRATA_INPUT_CHECK(total <= config.max_positions, r.where, ": prompt of ", r.input_ids.size(),
                     " tokens plus --gen-len ", gen_len, " is ", total,
                     ", longer than max_position_embeddings ", config.max_positions);
}

nlohmann::json result_json(const Request& r, const Generation& g,
                           const std::optional<std::string>& text) {
  nlohmann::json j;
  j["id"] = r.id;
  j["input_ids"] = r.input_ids;
  if (text) j["text"] = *text;
  j["output_ids"] = g.output_ids;
  j["token_logprobs"] = g.token_logprobs;
  j["finish_reason"] = finish_reason_name(g.finish);
  return j;
}

}  // namespace strata
