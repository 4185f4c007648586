#include "cli/generate_output.h"

#include <ctime>
#include <iostream>

#include "core/error.h"

namespace strata::cli {
namespace {

// Invalid UTF-8 (a token that is part of a character) becomes U+FFFD rather than an error.
template <typename Json>
std::string line_text(const Json& line) {
  return line.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace

const std::vector<std::string>& stops_of(const Inputs& in, const Request& r) {
  return r.params.stop ? *r.params.stop : in.stops;
}

ResultWriter::ResultWriter(const Inputs& in, const std::vector<Prompt>& prompts,
                           const std::vector<size_t>& request_of, std::vector<bool> written)
    : in_(in),
      prompts_(prompts),
      request_of_(request_of),
      watchers_(prompts.size()),
      written_already_(std::move(written)) {}

bool ResultWriter::continues(const Request& r) const {
  return TextStream::has_text(*in_.tokenizer, r.input_ids);
}

void ResultWriter::hook(GenerateOptions& gen) {
  gen.stop_check = [this](size_t seq, std::span<const int32_t> ids) {
    const size_t p = call_.at(seq);
    const Request& r = in_.requests[request_of_[p]];
    if (!in_.tokenizer || stops_of(in_, r).empty()) return false;
    auto& w = watchers_[p];
    if (!w) w.emplace(*in_.tokenizer, stops_of(in_, r), continues(r));
    return w->push(ids.back());
  };
  gen.on_finish = [this](size_t seq, const Generation& g) { finish(call_.at(seq), g); };
}

void ResultWriter::finish(size_t p, const Generation& g) {
  if (written_already_[p]) {
    watchers_[p].reset();
    return;
  }
  const size_t request = request_of_[p];
  const Request& r = in_.requests[request];
  const Prompt& prompt = prompts_[p];
  const auto forced = static_cast<size_t>(prompt.forced_tokens());
  std::span<const int32_t> ids(g.output_ids);
  std::span<const float> logprobs(g.token_logprobs);
  Alternatives top(g.top_logprobs);
  ids = ids.subspan(forced);
  logprobs = logprobs.subspan(forced);
  if (!top.empty()) top = top.subspan(forced);
  std::optional<std::string> text;
  const auto& w = watchers_[p];
  if (w && w->stopped()) {
    ids = ids.first(w->kept_ids());
    logprobs = logprobs.first(w->kept_ids());
    if (!top.empty()) top = top.first(w->kept_ids());
    text = w->text();
  } else if (in_.tokenizer) {
    text = TextStream::text_of(*in_.tokenizer, ids, continues(r));
  }
  emit(in_.format == RequestFormat::kOpenAiBatch
           ? line_text(batch_line(request, &prompt, g, {ids, logprobs, top}, text))
           : line_text(native_line(r, prompt, g, {ids, logprobs, top}, text)));
  watchers_[p].reset();
}

void ResultWriter::write_without_run(size_t request) {
  const Request& r = in_.requests[request];
  if (in_.format == RequestFormat::kOpenAiBatch) {
    if (r.error) {
      nlohmann::ordered_json line = batch_envelope(request);
      line["response"] = nullptr;
      line["error"] = {{"code", r.error->code}, {"message", r.where + ": " + r.error->message}};
      emit(line_text(line));
      return;
    }
    const Generation empty;
    emit(line_text(batch_line(request, nullptr, empty, {},
                              in_.tokenizer ? std::optional<std::string>("") : std::nullopt)));
    return;
  }
  STRATA_CHECK(!r.error, "a request of strata's own format with an error");
  Prompt p;
  p.ids = r.input_ids;
  emit(line_text(native_line(r, p, Generation{}, {},
                             in_.tokenizer ? std::optional<std::string>("") : std::nullopt)));
}

nlohmann::json ResultWriter::native_line(const Request& r, const Prompt& p, const Generation& g,
                                         const Completion& c,
                                         const std::optional<std::string>& text) const {
  // [{"id", "logprob"}, ...], most likely first.
  auto listed = [](const std::vector<TokenLogprob>& alternatives) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& a : alternatives) out.push_back({{"id", a.token}, {"logprob", a.logprob}});
    return out;
  };
  nlohmann::json j;
  j["id"] = r.id;
  j["input_ids"] = r.input_ids;
  if (text) j["text"] = *text;
  j["output_ids"] = std::vector<int32_t>(c.ids.begin(), c.ids.end());
  j["token_logprobs"] = std::vector<float>(c.logprobs.begin(), c.logprobs.end());
  if (p.top_logprobs > 0) {
    nlohmann::json top = nlohmann::json::array();
    for (const auto& a : c.top) top.push_back(listed(a));
    j["top_logprobs"] = top;
  }
  if (p.echo) {
    // The first prompt token has no logprob: nothing comes before it.
    nlohmann::json scored = nlohmann::json::array({nullptr});
    for (int64_t i = 0; i < p.forced_tokens(); ++i) scored.push_back(g.token_logprobs[i]);
    j["prompt_logprobs"] = scored;
    if (p.top_logprobs > 0) {
      nlohmann::json top = nlohmann::json::array({nullptr});
      for (int64_t i = 0; i < p.forced_tokens(); ++i) top.push_back(listed(g.top_logprobs[i]));
      j["prompt_top_logprobs"] = top;
    }
  }
  j["finish_reason"] = finish_reason_name(g.finish);
  return j;
}

nlohmann::ordered_json ResultWriter::batch_envelope(size_t request) const {
  const std::string n = in_.job_hash + "-" + std::to_string(request);
  return {{"id", "batch_req_" + n}, {"custom_id", in_.requests[request].id}};
}

nlohmann::ordered_json ResultWriter::batch_line(size_t request, const Prompt* p,
                                                const Generation& g, const Completion& c,
                                                const std::optional<std::string>& text) const {
  const std::span<const int32_t> ids = c.ids;
  const Request& r = in_.requests[request];
  const std::string n = in_.job_hash + "-" + std::to_string(request);
  const bool echo = r.params.echo;
  std::string prompt_text;
  if (echo && in_.tokenizer)
    prompt_text = r.prompt ? *r.prompt : in_.tokenizer->decode(r.input_ids);
  nlohmann::ordered_json choice = {
      {"index", 0},
      {"text", text ? nlohmann::ordered_json(echo ? prompt_text + *text : *text)
                    : nlohmann::ordered_json(nullptr)},
      {"finish_reason", finish_reason_name(g.finish)},
      {"logprobs", nullptr}};
  if (!in_.tokenizer) choice["token_ids"] = std::vector<int32_t>(ids.begin(), ids.end());
  if (r.params.logprobs) {
    nlohmann::ordered_json tokens = nlohmann::ordered_json::array(),
                           lps = nlohmann::ordered_json::array(),
                           offsets = nlohmann::ordered_json::array(),
                           tops = nlohmann::ordered_json::array();
    const bool with_top = *r.params.logprobs > 0;
    auto token_text = [&](int32_t id) {
      return in_.tokenizer ? in_.tokenizer->decode(std::span<const int32_t>(&id, 1), true)
                           : std::to_string(id);
    };
    // OpenAI's {token text: logprob}: the most likely first, then the chosen token when it is
    // not among them (so up to logprobs + 1 entries); a text two ids share keeps the likelier.
    auto top_of = [&](int32_t id, float lp, const std::vector<TokenLogprob>* alternatives) {
      if (!alternatives) return nlohmann::ordered_json(nullptr);
      nlohmann::ordered_json top = nlohmann::ordered_json::object();
      for (const auto& a : *alternatives) {
        const std::string key = token_text(a.token);
        if (!top.contains(key)) top[key] = a.logprob;
      }
      const std::string key = token_text(id);
      if (!top.contains(key)) top[key] = lp;
      return top;
    };
    // Each token's offset in the choice's text is the text its stream has given before it (the
    // completion's after the prompt's, as OpenAI counts them).
    const std::string whole_prompt =
        in_.tokenizer ? (r.prompt ? *r.prompt : in_.tokenizer->decode(r.input_ids)) : "";
    size_t offset = 0;
    std::optional<TextStream> stream;
    // A token without a logprob (the first of an echoed prompt) has no alternatives either.
    auto add = [&](int32_t id, const float* lp, const std::vector<TokenLogprob>* alternatives) {
      tokens.push_back(token_text(id));
      lps.push_back(lp ? nlohmann::ordered_json(*lp) : nlohmann::ordered_json(nullptr));
      if (with_top) tops.push_back(top_of(id, lp ? *lp : 0, lp ? alternatives : nullptr));
      offsets.push_back(offset);
      if (stream) offset += stream->push(id).size();
    };
    const bool scored = p && p->echo;
    if (echo) {
      if (in_.tokenizer) stream.emplace(*in_.tokenizer);
      for (size_t i = 0; i < r.input_ids.size(); ++i) {
        add(r.input_ids[i], i > 0 && scored ? &g.token_logprobs[i - 1] : nullptr,
            i > 0 && scored && with_top ? &g.top_logprobs[i - 1] : nullptr);
      }
    }
    offset = whole_prompt.size();
    if (in_.tokenizer) stream.emplace(*in_.tokenizer, true, continues(r));
    for (size_t i = 0; i < ids.size(); ++i)
      add(ids[i], &c.logprobs[i], with_top ? &c.top[i] : nullptr);
    choice["logprobs"] = {{"tokens", tokens},
                          {"token_logprobs", lps},
                          {"top_logprobs", with_top ? tops : nlohmann::ordered_json(nullptr)},
                          {"text_offset", offsets}};
  }
  const auto prompt_tokens = static_cast<int64_t>(r.input_ids.size());
  const auto completion_tokens = static_cast<int64_t>(ids.size());
  nlohmann::ordered_json body = {{"id", "cmpl-" + n},
                                 {"object", "text_completion"},
                                 {"created", static_cast<int64_t>(std::time(nullptr))},
                                 {"model", r.model.empty() ? in_.model : r.model},
                                 {"choices", nlohmann::ordered_json::array({choice})},
                                 {"usage",
                                  {{"prompt_tokens", prompt_tokens},
                                   {"completion_tokens", completion_tokens},
                                   {"total_tokens", prompt_tokens + completion_tokens}}}};
  nlohmann::ordered_json line = batch_envelope(request);
  line["response"] = {{"status_code", 200}, {"request_id", "req_" + n}, {"body", body}};
  line["error"] = nullptr;
  return line;
}

void ResultWriter::emit(const std::string& line) {
  std::string text = line;
  ++written_;
  if (file_) {
    file_->append(std::move(text));
    if (notice_) notice_->set(kept_ + written_, file_->fd());
    return;
  }
  std::cout << text << "\n" << std::flush;
  STRATA_INPUT_CHECK(std::cout.good(), "writing the output failed");
}

void ResultWriter::tick(bool force) {
  if (file_) file_->sync(force);
}

}  // namespace strata::cli
