// top_logprobs: each token's most likely alternatives, for generated tokens (greedy) and echoed
// prompt tokens (teacher-forced), against the engine's own forward pass and Hugging Face's
// logits; requests asking for different counts share a batch.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "test_util.h"

namespace strata {
namespace {

using test::batch_line;
using test::lines_of;
using test::run_strata;
using test::TempDir;
using test::write_text;

const std::string kModel = "opt-pub-tiny";
constexpr double kTol = 1e-4;

std::string generate(const TempDir& dir, const std::string& extra = "") {
  return "generate --model " + test::model_dir(kModel) + " --input " + dir.file("in.jsonl") +
         " --threads 1 --gpu-batch-size 3 --ignore-eos " + extra;
}

// Writes `in` as the input, runs generate, and gives its output lines (empty if it failed).
std::vector<std::string> generated_lines(const TempDir& dir, const std::string& in) {
  write_text(dir.file("in.jsonl"), in);
  const auto r = run_strata(generate(dir));
  EXPECT_EQ(r.exit_status, 0) << r.err;
  return r.exit_status == 0 ? lines_of(r.out) : std::vector<std::string>{};
}

// Hugging Face's logits at each prompt's last position as log-softmax, in workload order.
std::vector<std::vector<double>> golden_first_rows() {
  std::vector<std::vector<double>> rows;
  const auto cases = test::load_cases(kModel);
  for (const auto& c : cases["cases"]) {
    for (const auto& logits : c["prefill_last_logits"]) {
      const auto v = logits.get<std::vector<double>>();
      const double mx = *std::max_element(v.begin(), v.end());
      double sum = 0;
      for (double x : v) sum += std::exp(x - mx);
      std::vector<double> row;
      for (double x : v) row.push_back(x - mx - std::log(sum));
      rows.push_back(std::move(row));
    }
  }
  return rows;
}

// `got` (id -> logprob) holds the n most likely tokens of `want` (a full log-softmax row) with
// their values, plus `chosen` when it is not among them; ties within kTol may go either way.
void expect_top(const std::map<int32_t, double>& got, const std::vector<double>& want, size_t n,
                std::optional<int32_t> chosen = std::nullopt) {
  std::vector<double> sorted = want;
  std::sort(sorted.rbegin(), sorted.rend());
  const double nth = sorted[n - 1];
  size_t among = 0;
  for (const auto& [id, lp] : got) {
    ASSERT_GE(id, 0);
    ASSERT_LT(static_cast<size_t>(id), want.size());
    EXPECT_NEAR(lp, want[static_cast<size_t>(id)], kTol) << "id " << id;  // NaN fails
    if (want[static_cast<size_t>(id)] >= nth - kTol) {
      ++among;
    } else {
      EXPECT_EQ(chosen, id) << "id " << id << " is not among the " << n << " most likely";
    }
  }
  EXPECT_GE(among, std::min(n, got.size()));
  EXPECT_TRUE(got.size() == n || (chosen && got.size() == n + 1 && got.count(*chosen)))
      << got.size() << " alternatives for " << n;
  for (size_t id = 0; id < want.size(); ++id) {
    if (want[id] > nth + kTol) EXPECT_TRUE(got.count(static_cast<int32_t>(id))) << "missing " << id;
  }
}

// An OpenAI top_logprobs entry ({"id as text": logprob}: the model has no tokenizer).
std::map<int32_t, double> batch_top(const nlohmann::json& entry) {
  std::map<int32_t, double> out;
  for (const auto& [key, value] : entry.items()) out[std::stoi(key)] = value.get<double>();
  return out;
}

// strata's own entry ([{"id", "logprob"}, ...], most likely first).
std::map<int32_t, double> native_top(const nlohmann::json& entry) {
  std::map<int32_t, double> out;
  double last = 0;
  for (size_t k = 0; k < entry.size(); ++k) {
    const double lp = entry[k]["logprob"].get<double>();
    if (k > 0) EXPECT_LE(lp, last) << "not most likely first";
    last = lp;
    out[entry[k]["id"].get<int32_t>()] = lp;
  }
  EXPECT_EQ(out.size(), entry.size()) << "an id twice";
  return out;
}

// lm-eval-harness's is_greedy: the chosen token's logprob is the largest of its alternatives,
// and (greedy) its key is the most likely one.
void expect_greedy(const nlohmann::json& top, const std::string& token, const nlohmann::json& lp) {
  std::string best;
  double most = -1e30;
  for (const auto& [key, value] : top.items()) {
    if (value.get<double>() > most) {
      most = value.get<double>();
      best = key;
    }
  }
  EXPECT_EQ(best, token);
  EXPECT_EQ(most, lp.get<double>());
}

// Greedy generation in the batch format with logprobs 0..5 per line in shared batches: each
// token's alternatives are the teacher-forced forward's most likely tokens, the chosen one first,
// and the first token's are Hugging Face's.
TEST(TopLogprobs, GeneratedTokensCarryTheirAlternatives) {
  TempDir dir;
  const auto w = test::workload(kModel);
  const auto golden = golden_first_rows();
  constexpr int kNew = 6;
  std::string in;
  for (size_t i = 0; i < w.prompts.size(); ++i) {
    in += batch_line("c" + std::to_string(i),
                     {{"prompt", w.prompts[i].ids}, {"max_tokens", kNew}, {"logprobs", i % 6}});
  }
  const auto lines = generated_lines(dir, in);
  ASSERT_EQ(lines.size(), w.prompts.size());
  for (const auto& line : lines) {
    const auto j = nlohmann::json::parse(line);
    const size_t i = std::stoul(j["custom_id"].get<std::string>().substr(1));
    const size_t n = i % 6;
    SCOPED_TRACE("request " + std::to_string(i));
    const auto& choice = j["response"]["body"]["choices"][0];
    const auto ids = choice["token_ids"].get<std::vector<int32_t>>();
    ASSERT_EQ(ids.size(), static_cast<size_t>(kNew));
    EXPECT_EQ(ids, std::vector<int32_t>(w.golden_ids[i].begin(), w.golden_ids[i].begin() + kNew));
    const auto& lp = choice["logprobs"];
    if (n == 0) {
      EXPECT_TRUE(lp["top_logprobs"].is_null());
      continue;
    }
    ASSERT_EQ(lp["top_logprobs"].size(), ids.size());
    std::vector<int32_t> all = w.prompts[i].ids;
    all.insert(all.end(), ids.begin(), ids.end());
    const auto rows = test::forced_rows(kModel, all);
    const size_t p = w.prompts[i].ids.size();
    for (size_t t = 0; t < ids.size(); ++t) {
      SCOPED_TRACE("token " + std::to_string(t));
      const auto& top = lp["top_logprobs"][t];
      expect_greedy(top, lp["tokens"][t], lp["token_logprobs"][t]);
      expect_top(batch_top(top), rows[p + t - 1], n, ids[t]);
      if (t == 0) expect_top(batch_top(top), golden[i], n, ids[t]);
    }
  }
}

// echo + logprobs with max_tokens 0 (how harnesses score a continuation): the first prompt
// token has no alternatives; each later one has those of the distribution that predicted it,
// the prompt token itself added when it is not among them; the continuation's first token's are
// Hugging Face's.
TEST(TopLogprobs, EchoedPromptTokensCarryTheTeacherForcedAlternatives) {
  TempDir dir;
  const auto w = test::workload(kModel);
  const auto golden = golden_first_rows();
  const int counts[] = {3, 5, 1};
  std::string in;
  std::vector<std::vector<int32_t>> scored;
  for (size_t i = 0; i < 3; ++i) {
    std::vector<int32_t> ids = w.prompts[i].ids;
    ids.insert(ids.end(), w.golden_ids[i].begin(), w.golden_ids[i].begin() + 8);
    scored.push_back(ids);
    in += batch_line("e" + std::to_string(i),
                     {{"prompt", ids}, {"max_tokens", 0}, {"echo", true}, {"logprobs", counts[i]}});
  }
  write_text(dir.file("in.jsonl"), in);
  const auto r = run_strata(generate(dir));
  ASSERT_EQ(r.exit_status, 0) << r.err;
  const auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 3u);
  for (const auto& line : lines) {
    const auto j = nlohmann::json::parse(line);
    const size_t i = std::stoul(j["custom_id"].get<std::string>().substr(1));
    SCOPED_TRACE("request " + std::to_string(i));
    const auto& lp = j["response"]["body"]["choices"][0]["logprobs"];
    const auto& tops = lp["top_logprobs"];
    ASSERT_EQ(tops.size(), scored[i].size());
    EXPECT_TRUE(tops[0].is_null());
    const auto rows = test::forced_rows(kModel, scored[i]);
    const size_t n = static_cast<size_t>(counts[i]), p = w.prompts[i].ids.size();
    for (size_t t = 1; t < tops.size(); ++t) {
      SCOPED_TRACE("token " + std::to_string(t));
      const int32_t id = scored[i][t];
      const auto got = batch_top(tops[t]);
      expect_top(got, rows[t - 1], n, id);
      ASSERT_TRUE(got.count(id));
      EXPECT_EQ(got.at(id), lp["token_logprobs"][t].get<double>());
      // The continuation is Hugging Face's greedy one, so it is the most likely there.
      if (t >= p) expect_greedy(tops[t], lp["tokens"][t], lp["token_logprobs"][t]);
      if (t == p) expect_top(got, golden[i], n, id);
    }
  }
}

// strata's own format: "top_logprobs" per line (0..5), beside echo's prompt_top_logprobs.
TEST(TopLogprobs, NativeLinesTakeTheirOwnCount) {
  TempDir dir;
  const auto w = test::workload(kModel);
  std::string in;
  for (size_t i = 0; i < w.prompts.size(); ++i) {
    in += nlohmann::json{{"id", i},
                         {"input_ids", w.prompts[i].ids},
                         {"max_tokens", 4},
                         {"echo", i % 2 == 1},
                         {"top_logprobs", i % 6}}
              .dump() +
          "\n";
  }
  const auto lines = generated_lines(dir, in);
  ASSERT_EQ(lines.size(), w.prompts.size());
  for (const auto& line : lines) {
    const auto j = nlohmann::json::parse(line);
    const auto i = j["id"].get<size_t>();
    const size_t n = i % 6;
    SCOPED_TRACE("request " + std::to_string(i));
    EXPECT_EQ(j.contains("top_logprobs"), n > 0);
    EXPECT_EQ(j.contains("prompt_top_logprobs"), n > 0 && i % 2 == 1);
    if (n == 0) continue;
    const auto ids = j["output_ids"].get<std::vector<int32_t>>();
    std::vector<int32_t> all = w.prompts[i].ids;
    all.insert(all.end(), ids.begin(), ids.end());
    const auto rows = test::forced_rows(kModel, all);
    const size_t p = w.prompts[i].ids.size();
    ASSERT_EQ(j["top_logprobs"].size(), ids.size());
    for (size_t t = 0; t < ids.size(); ++t) {
      const auto got = native_top(j["top_logprobs"][t]);
      expect_top(got, rows[p + t - 1], n);
      EXPECT_EQ(j["top_logprobs"][t][0]["id"], ids[t]);  // greedy: the chosen token first
      EXPECT_EQ(j["top_logprobs"][t][0]["logprob"], j["token_logprobs"][t]);
    }
    if (i % 2 == 0) continue;
    const auto& prompt_top = j["prompt_top_logprobs"];
    ASSERT_EQ(prompt_top.size(), p);
    EXPECT_TRUE(prompt_top[0].is_null());
    for (size_t t = 1; t < p; ++t) expect_top(native_top(prompt_top[t]), rows[t - 1], n);
  }
}

// More alternatives than the bound, or not an integer, is an input error naming the line and
// the field.
TEST(TopLogprobs, ACountPastTheBoundNamesTheLineAndField) {
  TempDir dir;
  const std::string ok = nlohmann::json{{"id", "a"}, {"input_ids", {2, 5}}}.dump() + "\n";
  for (const auto& [line, field] :
       {std::pair{nlohmann::json{{"id", "b"}, {"input_ids", {2}}, {"top_logprobs", 6}}.dump(),
                  "'top_logprobs'"},
        {nlohmann::json{{"id", "b"}, {"input_ids", {2}}, {"top_logprobs", 1.5}}.dump(),
         "'top_logprobs'"},
        {batch_line("b", {{"prompt", {2}}, {"logprobs", 6}}), "'logprobs'"}}) {
    const bool batch = line.find("custom_id") != std::string::npos;
    write_text(dir.file("in.jsonl"),
               (batch ? batch_line("a", {{"prompt", {2, 5}}}) : ok) + line + "\n");
    const auto r = run_strata(generate(dir));
    EXPECT_EQ(r.exit_status, 2) << r.err;
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
    EXPECT_NE(r.err.find("in.jsonl:2"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(field), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("0 to 5"), std::string::npos) << r.err;
  }
}

}  // namespace
}  // namespace strata
