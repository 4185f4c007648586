#include "runtime/requests.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>

#include "core/error.h"

namespace strata {
namespace {

// Token ids of a JSON array, as an input error naming `where` and `field` otherwise.
std::vector<int32_t> token_ids(const nlohmann::json& ids, const std::string& where,
                               const std::string& field) {
  STRATA_INPUT_CHECK(ids.is_array(), where, ": field '", field, "' is not an array");
  std::vector<int32_t> out;
  for (const auto& id : ids) {
    STRATA_INPUT_CHECK(id.is_number_integer(), where, ": field '", field,
                       "' holds a value that is not an integer");
    const int64_t value = id.get<int64_t>();
    STRATA_INPUT_CHECK(value >= INT32_MIN && value <= INT32_MAX, where, ": token id ", value,
                       " is outside the vocabulary");
    out.push_back(static_cast<int32_t>(value));
  }
  return out;
}

// An integer field from 0 to kMaxTopLogprobs: how many alternatives per token to return.
std::optional<int> alternatives(const nlohmann::json& j, const char* name,
                                const std::string& where) {
  if (!j.contains(name) || j[name].is_null()) return std::nullopt;
  const auto& v = j[name];
  STRATA_INPUT_CHECK(
      v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() <= kMaxTopLogprobs, where,
      ": field '", name, "' must be an integer from 0 to ", kMaxTopLogprobs);
  return v.get<int>();
}

// max_tokens, temperature, top_p, seed, stop, echo, logprobs of `j` (a native line or a batch
// body), checked.
RequestParams read_params(const nlohmann::json& j, const std::string& where) {
  RequestParams p;
  auto number = [&](const char* name) -> const nlohmann::json* {
    if (!j.contains(name) || j[name].is_null()) return nullptr;
    STRATA_INPUT_CHECK(j[name].is_number(), where, ": field '", name, "' is not a number");
    return &j[name];
  };
  if (const auto* v = number("max_tokens")) {
    STRATA_INPUT_CHECK(v->is_number_integer() && v->get<int64_t>() >= 0, where,
                       ": field 'max_tokens' must be an integer >= 0");
    p.max_tokens = v->get<int64_t>();
  }
  if (const auto* v = number("temperature")) {
    const double t = v->get<double>();
    STRATA_INPUT_CHECK(t >= 0 && t <= 100, where, ": field 'temperature' must be in [0, 100]");
    p.temperature = static_cast<float>(t);
  }
  if (const auto* v = number("top_p")) {
    const double t = v->get<double>();
    STRATA_INPUT_CHECK(t > 0 && t <= 1, where, ": field 'top_p' must be in (0, 1]");
    p.top_p = static_cast<float>(t);
  }
  if (const auto* v = number("seed")) {
    STRATA_INPUT_CHECK(v->is_number_integer(), where, ": field 'seed' is not an integer");
    p.seed =
        v->is_number_unsigned() ? v->get<uint64_t>() : static_cast<uint64_t>(v->get<int64_t>());
  }
  if (j.contains("stop") && !j["stop"].is_null()) {
    const auto& s = j["stop"];
    std::vector<std::string> stops;
    if (s.is_string()) {
      stops.push_back(s.get<std::string>());
    } else {
      STRATA_INPUT_CHECK(s.is_array(), where, ": field 'stop' is not a string or an array");
      for (const auto& x : s) {
        STRATA_INPUT_CHECK(x.is_string(), where,
                           ": field 'stop' holds a value that is not a string");
        stops.push_back(x.get<std::string>());
      }
    }
    for (const auto& x : stops) STRATA_INPUT_CHECK(!x.empty(), where, ": an empty 'stop' string");
    if (!stops.empty()) p.stop = std::move(stops);
  }
  if (j.contains("echo") && !j["echo"].is_null()) {
    STRATA_INPUT_CHECK(j["echo"].is_boolean(), where, ": field 'echo' is not true or false");
    p.echo = j["echo"].get<bool>();
  }
  p.logprobs = alternatives(j, "logprobs", where);
  return p;
}

Request native_request(const nlohmann::json& j, const std::string& where) {
  STRATA_INPUT_CHECK(j.contains("id"), where, ": missing field 'id'");
  Request r;
  r.id = j["id"];
  r.where = where;
  if (j.contains("input_ids")) {
    r.input_ids = token_ids(j["input_ids"], where, "input_ids");
  } else if (j.contains("prompt")) {
    STRATA_INPUT_CHECK(j["prompt"].is_string(), where, ": field 'prompt' is not a string");
    r.prompt = j["prompt"].get<std::string>();
  } else {
    throw_input(where + ": needs 'input_ids' or 'prompt'");
  }
  r.params = read_params(j, where);
  r.params.top_logprobs = alternatives(j, "top_logprobs", where);
  return r;
}

Request batch_request(const nlohmann::json& j, const std::string& where) {
  STRATA_INPUT_CHECK(j.contains("custom_id"), where,
                     ": missing field 'custom_id' (an OpenAI batch file: every line needs one)");
  STRATA_INPUT_CHECK(j["custom_id"].is_string(), where, ": field 'custom_id' is not a string");
  STRATA_INPUT_CHECK(j.contains("method") && j["method"] == "POST", where,
                     ": field 'method' must be \"POST\"");
  STRATA_INPUT_CHECK(j.contains("url") && j["url"].is_string(), where, ": missing field 'url'");
  const std::string url = j["url"].get<std::string>();
  STRATA_INPUT_CHECK(url != "/v1/chat/completions", where,
                     ": /v1/chat/completions is not supported yet (no chat templates); use "
                     "/v1/completions with a prompt");
  STRATA_INPUT_CHECK(url == "/v1/completions", where, ": url ", url,
                     " is not supported; use /v1/completions");
  STRATA_INPUT_CHECK(j.contains("body") && j["body"].is_object(), where,
                     ": missing object field 'body'");
  const auto& body = j["body"];
  Request r;
  r.id = j["custom_id"];
  r.where = where;
  if (body.contains("model")) {
    STRATA_INPUT_CHECK(body["model"].is_string(), where, ": field 'body.model' is not a string");
    r.model = body["model"].get<std::string>();
  }
  STRATA_INPUT_CHECK(body.contains("prompt"), where, ": missing field 'body.prompt'");
  const auto& prompt = body["prompt"];
  if (prompt.is_string()) {
    r.prompt = prompt.get<std::string>();
  } else {
    STRATA_INPUT_CHECK(prompt.is_array() && (prompt.empty() || !prompt[0].is_array()) &&
                           (prompt.empty() || !prompt[0].is_string()),
                       where,
                       ": field 'body.prompt' must be a string or an array of token ids (one "
                       "prompt per line)");
    r.input_ids = token_ids(prompt, where, "body.prompt");
  }
  for (const char* name : {"n", "best_of"}) {
    STRATA_INPUT_CHECK(!body.contains(name) || body[name].is_null() || body[name] == 1, where,
                       ": field 'body.", name, "' other than 1 is not supported");
  }
  for (const char* name : {"presence_penalty", "frequency_penalty"}) {
    STRATA_INPUT_CHECK(!body.contains(name) || body[name].is_null() || body[name] == 0, where,
                       ": field 'body.", name, "' other than 0 is not supported");
  }
  STRATA_INPUT_CHECK(
      !body.contains("logit_bias") || body["logit_bias"].is_null() || body["logit_bias"].empty(),
      where, ": field 'body.logit_bias' is not supported");
  STRATA_INPUT_CHECK(!body.contains("stream") || body["stream"] != true, where,
                     ": field 'body.stream' is not supported in a batch");
  r.params = read_params(body, where);
  return r;
}

}  // namespace

RequestFile read_request_file(const std::string& path) {
  std::ifstream in(path);
  STRATA_INPUT_CHECK(in.good(), path, ": cannot open: ", std::strerror(errno));
  return read_request_file(in, path);
}

RequestFile read_request_file(std::istream& in, const std::string& path) {
  RequestFile file;
  std::map<std::string, int64_t> line_of_id;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(number);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {  // parse_error or out_of_range (1e999)
      throw_input(where + ": not JSON (" + e.what() + ")");
    }
    STRATA_INPUT_CHECK(j.is_object(), where, ": not a JSON object");
    if (file.requests.empty() && j.contains("custom_id")) file.format = RequestFormat::kOpenAiBatch;
    Request r = file.format == RequestFormat::kOpenAiBatch ? batch_request(j, where)
                                                           : native_request(j, where);
    const auto [at, fresh] = line_of_id.emplace(r.id.dump(), number);
    STRATA_INPUT_CHECK(fresh, where, ": duplicate id ", r.id.dump(), " (also on line ", at->second,
                       ")");
    file.requests.push_back(std::move(r));
  }
  STRATA_INPUT_CHECK(!in.bad(), path, ": read failed");
  STRATA_INPUT_CHECK(!file.requests.empty(), path,
                     ": no requests (the file is empty or holds only blank lines)");
  return file;
}

std::vector<Request> read_requests(const std::string& path) {
  return read_request_file(path).requests;
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
                      const std::string& tokenizer_source, bool errors_in_output) {
  for (auto& r : requests) {
    if (!r.prompt) continue;
    if (!tokenizer && errors_in_output) {
      r.error =
          RequestError{"tokenizer_missing", "a text prompt needs a tokenizer and " +
                                                tokenizer_source + " has none; give token ids"};
      continue;
    }
    STRATA_INPUT_CHECK(tokenizer, r.where, ": a text prompt needs a tokenizer and ",
                       tokenizer_source, " has none (tokenizer.json or vocab.json + merges.txt); ",
                       "give 'input_ids' or --tokenizer DIR");
    r.input_ids = tokenizer->encode(*r.prompt);
  }
}

std::optional<RequestError> request_problem(const Request& r, const ModelConfig& config,
                                            int64_t gen_len) {
  if (r.input_ids.empty()) return RequestError{"invalid_prompt", "the prompt has no tokens"};
  for (int32_t id : r.input_ids) {
    if (id < 0 || id >= config.vocab_size) {
      return RequestError{"invalid_prompt", "token id " + std::to_string(id) +
                                                " is outside the vocabulary (0.." +
                                                std::to_string(config.vocab_size - 1) + ")"};
    }
  }
  // Compared before adding: max_tokens may be as large as int64 holds.
  const auto prompt = static_cast<int64_t>(r.input_ids.size());
  if (gen_len > config.max_positions - prompt) {
    const std::string total =
        gen_len > INT64_MAX - prompt ? "past 2^63" : std::to_string(prompt + gen_len);
    return RequestError{"context_length_exceeded",
                        "prompt of " + std::to_string(r.input_ids.size()) + " tokens plus " +
                            (r.params.max_tokens ? "max_tokens " : "--gen-len ") +
                            std::to_string(gen_len) + " is " + total +
                            ", longer than max_position_embeddings " +
                            std::to_string(config.max_positions)};
  }
  return std::nullopt;
}

void validate_request(const Request& r, const ModelConfig& config, int64_t gen_len) {
  const auto problem = request_problem(r, config, gen_len);
  STRATA_INPUT_CHECK(!problem, r.where, ": ", problem ? problem->message : "");
}

SamplingParams request_sampling(const RequestParams& p, const SamplingParams& base) {
  SamplingParams s = base;
  if (p.top_p) {
    s.top_p = *p.top_p;
    s.greedy = false;
  }
  if (p.temperature) {
    s.greedy = *p.temperature == 0;
    if (!s.greedy) s.temperature = *p.temperature;
  }
  if (p.seed) s.seed = *p.seed;
  return s;
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
