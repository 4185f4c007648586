// `strata generate` as a batch job: durable, resumable output, per-request parameters and the
// OpenAI batch format, each against a run that could disagree (an uninterrupted run, the flags'
// run, the engine's own forward pass, Hugging Face's goldens).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "runtime/engine.h"
#include "runtime/job_output.h"
#include "test_util.h"

namespace strata {
namespace {

using test::batch_line;
using test::forced_logprobs;
using test::lines_of;
using test::read_text;
using test::run_strata;
using test::TempDir;
using test::write_text;

std::vector<std::string> sorted_lines(const std::string& text) {
  auto lines = lines_of(text);
  std::sort(lines.begin(), lines.end());
  return lines;
}

// opt-pub-tiny's prompts as strata's requests, with `extra` fields on line i from extra(i).
std::string native_requests(const std::function<nlohmann::json(size_t)>& extra = {}) {
  const auto w = test::workload("opt-pub-tiny");
  std::string text;
  for (size_t i = 0; i < w.prompts.size(); ++i) {
    nlohmann::json j = {{"id", "r" + std::to_string(i)}, {"input_ids", w.prompts[i].ids}};
    if (extra) j.update(extra(i));
    text += j.dump() + "\n";
  }
  return text;
}

std::string generate(const TempDir& dir, const std::string& extra) {
  return "generate --model " + test::model_dir("opt-pub-tiny") + " --input " +
         dir.file("in.jsonl") + " --threads 1 --gpu-batch-size 2 --gen-len 12 " + extra;
}

void expect_one_line_error(const test::RunResult& r, std::initializer_list<std::string> parts) {
  EXPECT_EQ(r.exit_status, 2) << r.err;
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
  for (const auto& part : parts) EXPECT_NE(r.err.find(part), std::string::npos) << r.err;
}

TEST(GenerateOutput, FailedStartLeavesAnExistingOutputByteForByte) {
  TempDir dir;
  write_text(dir.file("in.jsonl"), native_requests());
  const std::string out = dir.file("out.jsonl");
  ASSERT_EQ(run_strata(generate(dir, "--output " + out)).exit_status, 0);
  // A partial output of this job with a torn last line: a failed start must not even drop it.
  const std::string full = read_text(out);
  const std::string partial = full.substr(0, full.size() / 2);
  write_text(out, partial);
  for (const std::string bad : {"--gpu-mem 1KiB", "--gpu-mem 1KiB --restart", "--no-such-flag",
                                "--percent 0 0 100 0 100 0 --offload-dir /nonexistent/dir"}) {
    SCOPED_TRACE(bad);
    const auto r = run_strata(generate(dir, "--output " + out + " " + bad));
    EXPECT_EQ(r.exit_status, 2) << r.err;
    EXPECT_EQ(read_text(out), partial);
  }
  // A file that this job did not write is refused, and left.
  write_text(dir.file("other.jsonl"), "precious\n");
  expect_one_line_error(run_strata(generate(dir, "--output " + dir.file("other.jsonl"))),
                        {"other.jsonl", "--restart"});
  EXPECT_EQ(read_text(dir.file("other.jsonl")), "precious\n");
}

TEST(GenerateOutput, OutputEqualToInputIsRefused) {
  TempDir dir;
  const std::string in = native_requests();
  write_text(dir.file("in.jsonl"), in);
  expect_one_line_error(run_strata(generate(dir, "--output " + dir.file("in.jsonl"))),
                        {"--output", "--input"});
  expect_one_line_error(
      run_strata(generate(dir, "--output " + dir.path().string() + "/./in.jsonl")), {"--input"});
  EXPECT_EQ(read_text(dir.file("in.jsonl")), in);
}

TEST(GenerateOutput, DuplicateIdsNameBothLines) {
  TempDir dir;
  write_text(dir.file("in.jsonl"),
             "{\"id\": \"a\", \"input_ids\": [2]}\n\n{\"id\": \"b\", \"input_ids\": [2]}\n"
             "{\"id\": \"a\", \"input_ids\": [3]}\n");
  expect_one_line_error(run_strata(generate(dir, "")), {"in.jsonl:4", "\"a\"", "line 1"});
}

TEST(GenerateOutput, EmptyOrBlankInputIsAnError) {
  TempDir dir;
  for (const std::string text : {"", "\n  \n\t\n"}) {
    write_text(dir.file("in.jsonl"), text);
    expect_one_line_error(run_strata(generate(dir, "")), {"in.jsonl", "no requests"});
  }
}

// Lines in finish order, one per id; the re-run keeps every complete line, drops the torn one
// and ends with exactly the uninterrupted run's lines.
TEST(GenerateOutput, ResumeDropsATornLineAndEndsAsAnUninterruptedRun) {
  TempDir dir;
  // Different lengths per request, so sequences finish out of input order.
  write_text(dir.file("in.jsonl"), native_requests([](size_t i) {
               return nlohmann::json{{"max_tokens", 3 + 5 * (i % 3)}};
             }));
  const std::string want = dir.file("want.jsonl"), out = dir.file("out.jsonl");
  const auto first = run_strata(generate(dir, "--output " + want));
  ASSERT_EQ(first.exit_status, 0) << first.err;
  const std::string full = read_text(want);
  const auto want_lines = lines_of(full);
  ASSERT_EQ(want_lines.size(), test::workload("opt-pub-tiny").prompts.size());
  for (size_t keep : {size_t{0}, size_t{1}, want_lines.size() / 2, want_lines.size() - 1}) {
    SCOPED_TRACE(keep);
    std::string kept;
    for (size_t i = 0; i < keep; ++i) kept += want_lines[i] + "\n";
    write_text(out, kept + want_lines[keep].substr(0, want_lines[keep].size() / 2));
    std::filesystem::copy_file(job_file_path(want), job_file_path(out),
                               std::filesystem::copy_options::overwrite_existing);
    const auto r = run_strata(generate(dir, "--output " + out));
    ASSERT_EQ(r.exit_status, 0) << r.err;
    const std::string got = read_text(out);
    EXPECT_EQ(got.substr(0, kept.size()), kept);
    EXPECT_EQ(sorted_lines(got), sorted_lines(full));
  }
  // Nothing left to do: the output stays as it is.
  const std::string done = read_text(out);
  const auto again = run_strata(generate(dir, "--output " + out));
  EXPECT_EQ(again.exit_status, 0) << again.err;
  EXPECT_EQ(read_text(out), done);
}

TEST(GenerateOutput, ADifferentJobIsRefusedAndRestartStartsOver) {
  TempDir dir;
  write_text(dir.file("in.jsonl"), native_requests());
  const std::string out = dir.file("out.jsonl");
  ASSERT_EQ(run_strata(generate(dir, "--output " + out)).exit_status, 0);
  const std::string before = read_text(out);
  expect_one_line_error(run_strata(generate(dir, "--output " + out + " --gen-len 5")),
                        {"different job", "gen_len", "--restart"});
  expect_one_line_error(run_strata(generate(dir, "--output " + out + " --temperature 0.7")),
                        {"different job", "greedy"});
  write_text(dir.file("in.jsonl"), native_requests([](size_t) {
               return nlohmann::json{{"max_tokens", 2}};
             }));
  expect_one_line_error(run_strata(generate(dir, "--output " + out)),
                        {"different job", "input_hash"});
  EXPECT_EQ(read_text(out), before);
  const auto r = run_strata(generate(dir, "--output " + out + " --restart"));
  ASSERT_EQ(r.exit_status, 0) << r.err;
  const auto lines = lines_of(read_text(out));
  ASSERT_EQ(lines.size(), lines_of(before).size());
  for (const auto& line : lines) EXPECT_EQ(nlohmann::json::parse(line)["output_ids"].size(), 2u);
}

// Per-request temperature and seed give what the flags give the same line.
TEST(GenerateRequests, PerRequestSamplingEqualsTheFlags) {
  TempDir dir;
  write_text(dir.file("in.jsonl"), native_requests());
  const auto flags = run_strata(generate(dir, "--temperature 0.8 --seed 7"));
  ASSERT_EQ(flags.exit_status, 0) << flags.err;
  // Odd lines ask for it themselves; even lines stay greedy, as the greedy run has them.
  write_text(
      dir.file("in.jsonl"), native_requests([](size_t i) {
        return i % 2 ? nlohmann::json{{"temperature", 0.8}, {"seed", 7}} : nlohmann::json::object();
      }));
  const auto mixed = run_strata(generate(dir, ""));
  ASSERT_EQ(mixed.exit_status, 0) << mixed.err;
  write_text(dir.file("in.jsonl"), native_requests());
  const auto greedy = run_strata(generate(dir, ""));
  ASSERT_EQ(greedy.exit_status, 0) << greedy.err;
  auto by_id = [](const std::string& text) {
    std::map<std::string, nlohmann::json> m;
    for (const auto& line : lines_of(text)) {
      auto j = nlohmann::json::parse(line);
      m[j["id"].get<std::string>()] = j;
    }
    return m;
  };
  const auto f = by_id(flags.out), x = by_id(mixed.out), g = by_id(greedy.out);
  ASSERT_EQ(x.size(), f.size());
  int differ = 0;
  for (const auto& [id, line] : x) {
    const int i = std::stoi(id.substr(1));
    const auto& want = i % 2 ? f.at(id) : g.at(id);
    EXPECT_EQ(line["output_ids"], want["output_ids"]) << id;
    differ += f.at(id)["output_ids"] != g.at(id)["output_ids"];
  }
  EXPECT_GT(differ, 0) << "negative control: sampling should change some line";
}

TEST(GenerateBatchFormat, LengthsPerLineAndAnErrorLineForAnOverlongRequest) {
  TempDir dir;
  const auto w = test::workload("opt-pub-tiny");
  std::string in;
  for (int i = 0; i < 4; ++i) {
    in += batch_line("c" + std::to_string(i), {{"model", "tiny"},
                                               {"prompt", w.prompts[i].ids},
                                               {"max_tokens", 2 + 3 * i},
                                               {"logprobs", 1}});
  }
  in += batch_line("long", {{"prompt", w.prompts[0].ids}, {"max_tokens", 1000}});
  write_text(dir.file("in.jsonl"), in);
  const auto r = run_strata(generate(dir, "--ignore-eos --output " + dir.file("out.jsonl")));
  ASSERT_EQ(r.exit_status, 0) << r.err;
  const auto lines = lines_of(read_text(dir.file("out.jsonl")));
  ASSERT_EQ(lines.size(), 5u);
  std::set<std::string> seen;
  for (const auto& line : lines) {
    const auto j = nlohmann::json::parse(line);
    const std::string id = j["custom_id"];
    seen.insert(id);
    EXPECT_TRUE(j["id"].get<std::string>().rfind("batch_req_", 0) == 0);
    if (id == "long") {
      EXPECT_TRUE(j["response"].is_null());
      EXPECT_EQ(j["error"]["code"], "context_length_exceeded");
      continue;
    }
    const int i = std::stoi(id.substr(1));
    EXPECT_TRUE(j["error"].is_null());
    const auto& body = j["response"]["body"];
    EXPECT_EQ(j["response"]["status_code"], 200);
    EXPECT_EQ(body["object"], "text_completion");
    EXPECT_EQ(body["model"], "tiny");
    const auto& choice = body["choices"][0];
    EXPECT_EQ(choice["finish_reason"], "length");
    EXPECT_EQ(body["usage"]["completion_tokens"], 2 + 3 * i);
    EXPECT_EQ(body["usage"]["prompt_tokens"], w.prompts[i].ids.size());
    // Greedy, so the tokens are Hugging Face's.
    const auto ids = choice["token_ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(ids,
              std::vector<int32_t>(w.golden_ids[i].begin(), w.golden_ids[i].begin() + 2 + 3 * i));
    const auto lps = choice["logprobs"]["token_logprobs"].get<std::vector<double>>();
    ASSERT_EQ(lps.size(), ids.size());
    for (size_t t = 0; t < lps.size(); ++t) EXPECT_NEAR(lps[t], w.golden_logprobs[i][t], 1e-3);
  }
  EXPECT_EQ(seen.size(), 5u);
}

TEST(GenerateBatchFormat, MalformedLinesAreRefusedNamingTheLine) {
  TempDir dir;
  const std::string ok = batch_line("a", {{"prompt", {2, 5}}});
  write_text(dir.file("in.jsonl"),
             ok + "{\"custom_id\": \"b\", \"method\": \"POST\", \"url\": \"/v1/chat/completions\", "
                  "\"body\": {\"messages\": []}}\n");
  expect_one_line_error(run_strata(generate(dir, "")), {"in.jsonl:2", "/v1/chat/completions"});
  write_text(dir.file("in.jsonl"), ok + "{\"id\": \"b\", \"input_ids\": [2]}\n");
  expect_one_line_error(run_strata(generate(dir, "")), {"in.jsonl:2", "custom_id"});
  write_text(dir.file("in.jsonl"), ok + batch_line("c", {{"prompt", {2}}, {"max_tokens", -1}}));
  expect_one_line_error(run_strata(generate(dir, "")), {"in.jsonl:2", "max_tokens"});
  write_text(dir.file("in.jsonl"), ok + batch_line("a", {{"prompt", {2}}}));
  expect_one_line_error(run_strata(generate(dir, "")), {"in.jsonl:2", "duplicate", "line 1"});
  // A text prompt without a tokenizer is that request's error line; the job goes on.
  write_text(dir.file("in.jsonl"), ok + batch_line("t", {{"prompt", "hello"}}));
  const auto r = run_strata(generate(dir, ""));
  ASSERT_EQ(r.exit_status, 0) << r.err;
  const auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 2u);
  for (const auto& line : lines) {
    const auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j["custom_id"] == "t", !j["error"].is_null()) << line;
  }
}

// echo + logprobs with max_tokens 0 scores the prompt: each token's logprob (the first has none)
// is the engine's teacher-forced one, and on a prompt + Hugging Face's greedy continuation, the
// continuation's part is Hugging Face's logprobs.
TEST(GenerateBatchFormat, EchoScoresThePromptAsTeacherForcing) {
  TempDir dir;
  const auto w = test::workload("opt-pub-tiny");
  std::string in;
  std::vector<std::vector<int32_t>> scored;
  for (size_t i = 0; i < 3; ++i) {
    std::vector<int32_t> ids = w.prompts[i].ids;
    ids.insert(ids.end(), w.golden_ids[i].begin(), w.golden_ids[i].begin() + 8);
    scored.push_back(ids);
    in += batch_line("e" + std::to_string(i),
                     {{"prompt", ids}, {"max_tokens", 0}, {"echo", true}, {"logprobs", 0}});
  }
  write_text(dir.file("in.jsonl"), in);
  const auto r = run_strata(generate(dir, ""));
  ASSERT_EQ(r.exit_status, 0) << r.err;
  const auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 3u);
  for (const auto& line : lines) {
    const auto j = nlohmann::json::parse(line);
    const size_t i = std::stoul(j["custom_id"].get<std::string>().substr(1));
    SCOPED_TRACE(i);
    const auto& choice = j["response"]["body"]["choices"][0];
    EXPECT_EQ(j["response"]["body"]["usage"]["completion_tokens"], 0);
    const auto& lps = choice["logprobs"]["token_logprobs"];
    ASSERT_EQ(lps.size(), scored[i].size());
    EXPECT_TRUE(lps[0].is_null());
    const auto want = forced_logprobs("opt-pub-tiny", scored[i]);
    for (size_t t = 1; t < lps.size(); ++t) {
      ASSERT_TRUE(lps[t].is_number());
      EXPECT_NEAR(lps[t].get<double>(), want[t - 1], 1e-4) << t;  // NaN fails
    }
    const size_t p = w.prompts[i].ids.size();
    for (size_t k = 0; k < 8; ++k)
      EXPECT_NEAR(lps[p + k].get<double>(), w.golden_logprobs[i][k], 1e-3);
  }
}

// strata's own format: per-line max_tokens, and echo's prompt_logprobs as the batch format's.
TEST(GenerateRequests, NativeLinesTakeTheirOwnLengthAndEcho) {
  TempDir dir;
  const auto w = test::workload("opt-pub-tiny");
  write_text(dir.file("in.jsonl"), native_requests([](size_t i) {
               return nlohmann::json{{"max_tokens", i % 4}, {"echo", i % 2 == 1}};
             }));
  const auto r = run_strata(generate(dir, "--ignore-eos"));
  ASSERT_EQ(r.exit_status, 0) << r.err;
  const auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), w.prompts.size());
  for (const auto& line : lines) {
    const auto j = nlohmann::json::parse(line);
    const size_t i = std::stoul(j["id"].get<std::string>().substr(1));
    SCOPED_TRACE(i);
    const auto ids = j["output_ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(ids, std::vector<int32_t>(w.golden_ids[i].begin(), w.golden_ids[i].begin() + i % 4));
    EXPECT_EQ(j.contains("prompt_logprobs"), i % 2 == 1);
    if (i % 2 == 0) continue;
    const auto& scored = j["prompt_logprobs"];
    ASSERT_EQ(scored.size(), w.prompts[i].ids.size());
    EXPECT_TRUE(scored[0].is_null());
    const auto want = forced_logprobs("opt-pub-tiny", w.prompts[i].ids);
    for (size_t t = 1; t < scored.size(); ++t) {
      ASSERT_TRUE(scored[t].is_number());
      EXPECT_NEAR(scored[t].get<double>(), want[t - 1], 1e-4);
    }
  }
}

TEST(JobOutput, ReadsCompleteLinesAndRefusesAnotherJob) {
  TempDir dir;
  const std::string out = dir.file("out.jsonl");
  const nlohmann::json job = {{"model", "m"}, {"gen_len", 4}};
  EXPECT_TRUE(read_existing_output(out, job, "id", false).ids.empty());  // missing
  {
    DurableOutput file(out, job, 0, 0);
    file.append(R"({"id": "a"})");
    file.append(R"({"id": 2})");
  }
  std::string text = read_text(out);
  write_text(out, text + R"({"id": "c", "out)");
  const auto existing = read_existing_output(out, job, "id", false);
  EXPECT_EQ(existing.complete_bytes, text.size());
  EXPECT_TRUE(existing.torn);
  EXPECT_EQ(existing.ids, (std::vector<nlohmann::json>{"a", 2}));
  EXPECT_TRUE(read_existing_output(out, job, "id", true).ids.empty());  // --restart
  // Appending after the kept bytes drops the torn line.
  {
    DurableOutput file(out, job, existing.complete_bytes, 0);
    file.append(R"({"id": "c"})");
  }
  EXPECT_EQ(read_text(out), text + "{\"id\": \"c\"}\n");
  nlohmann::json other = job;
  other["gen_len"] = 5;
  try {
    read_existing_output(out, other, "id", false);
    ADD_FAILURE() << "a different job was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("gen_len"), std::string::npos) << e.what();
  }
  EXPECT_NE(content_hash("a"), content_hash("b"));
  EXPECT_EQ(content_hash(""), "cbf29ce484222325");  // FNV-1a's offset basis
}

// --model ORG/NAME from the local Hugging Face cache (a snapshot at refs/main), as its directory.
TEST(GenerateModels, ARepositoryNameResolvesFromTheLocalCache) {
  TempDir dir;
  write_text(dir.file("in.jsonl"), native_requests());
  const std::string repo = dir.file("hub/models--org--tiny");
  std::filesystem::create_directories(repo + "/refs");
  std::filesystem::create_directories(repo + "/snapshots");
  write_text(repo + "/refs/main", "0123abcd\n");
  std::filesystem::create_directory_symlink(test::model_dir("opt-pub-tiny"),
                                            repo + "/snapshots/0123abcd");
  const char* before = std::getenv("HF_HUB_CACHE");
  const std::string saved = before ? before : "";
  ::setenv("HF_HUB_CACHE", dir.file("hub").c_str(), 1);
  const std::string args = " --input " + dir.file("in.jsonl") + " --threads 1 --gen-len 5";
  const auto by_name = run_strata("generate --model org/tiny" + args);
  const auto missing = run_strata("generate --model org/other" + args);
  const auto bare = run_strata("generate --model opt-125m" + args);
  if (before) {
    ::setenv("HF_HUB_CACHE", saved.c_str(), 1);
  } else {
    ::unsetenv("HF_HUB_CACHE");
  }
  const auto by_dir = run_strata("generate --model " + test::model_dir("opt-pub-tiny") + args);
  ASSERT_EQ(by_name.exit_status, 0) << by_name.err;
  ASSERT_EQ(by_dir.exit_status, 0) << by_dir.err;
  EXPECT_EQ(by_name.out, by_dir.out);
  expect_one_line_error(missing, {"org/other", "models--org--other", "synthetic:"});
  expect_one_line_error(bare, {"opt-125m", "synthetic:opt-125m"});
}

TEST(GenerateLogs, ProgressLinesWhenStderrIsNotATerminal) {
  TempDir dir;
  write_text(dir.file("in.jsonl"), native_requests());
  const auto r =
      run_strata(generate(dir, "--progress-interval 0.000001 --trace " + dir.file("t.json")));
  ASSERT_EQ(r.exit_status, 0) << r.err;
  const size_t n = test::workload("opt-pub-tiny").prompts.size();
  EXPECT_NE(r.err.find("progress: " + std::to_string(n) + " / " + std::to_string(n) + " requests"),
            std::string::npos)
      << r.err;
  const auto trace = nlohmann::json::parse(read_text(dir.file("t.json")));
  EXPECT_FALSE(trace["traceEvents"].empty());
  const auto quiet = run_strata(generate(dir, "--progress-interval 0"));
  EXPECT_EQ(quiet.err.find("progress:"), std::string::npos) << quiet.err;
}

}  // namespace
}  // namespace strata
