// `strata tokenize` / `detokenize` and the text side of `strata generate`, end to end with the
// 400-token reference model and the tiny OPT-style tokenizer in tests/data/tokenizer/opt-tiny.
#include <sys/wait.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "test_util.h"
#include "tokenizer/text_stream.h"
#include "tokenizer/tokenizer.h"

namespace strata {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::TempDir;

const std::string kTinyTokenizer = test::kDataDir + "/tokenizer/opt-tiny";

// Runs `strata ARGS` with `input` on stdin.
test::RunResult run(const std::string& args, const std::string& input = "") {
  TempDir dir;
  test::write_text(dir.file("in"), input);
  const std::string command = test::kBinary + " " + args + " <" + dir.file("in") + " >" +
                              dir.file("out") + " 2>" + dir.file("err");
  const int status = std::system(command.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, test::read_text(dir.file("out")),
          test::read_text(dir.file("err"))};
}

std::vector<json> json_lines(const std::string& text) {
  std::vector<json> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) lines.push_back(json::parse(line));
  return lines;
}

TEST(TokenizeCli, LinesAndJsonlRoundTrip) {
  const auto t = Tokenizer::load(kTinyTokenizer);
  ASSERT_TRUE(t);
  const auto r =
      run("tokenize --model " + kTinyTokenizer, "the theory\nsecond line \xE6\x97\xA5\n");
  ASSERT_EQ(r.exit_status, 0) << r.err;
  const auto lines = json_lines(r.out);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].get<std::vector<int32_t>>(), t->encode("the theory"));
  EXPECT_EQ(lines[0][0], 2);  // OPT's </s> in front
  const auto back = run("detokenize --model " + kTinyTokenizer, r.out);
  ASSERT_EQ(back.exit_status, 0) << back.err;
  EXPECT_EQ(back.out, "the theory\nsecond line \xE6\x97\xA5\n");
  EXPECT_EQ(run("detokenize --keep-special --model " + kTinyTokenizer, "[2, 4]\n").out,
            std::string("</s>\0\n", 6));

  const std::string text = "two\nlines and a \"quote\"";
  const auto j =
      run("tokenize --jsonl --plain --model " + kTinyTokenizer, json(text).dump() + "\n");
  ASSERT_EQ(j.exit_status, 0) << j.err;
  EXPECT_EQ(json::parse(j.out).get<std::vector<int32_t>>(), t->encode_plain(text));
  const auto jb = run("detokenize --jsonl --model " + kTinyTokenizer, j.out);
  EXPECT_EQ(json::parse(jb.out), text);
}

TEST(TokenizeCli, BadInput) {
  auto r = run("tokenize --model " + test::model_dir("opt-pub-tiny"), "x\n");
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_NE(r.err.find("no tokenizer"), std::string::npos) << r.err;
  r = run("detokenize --model " + kTinyTokenizer, "[1, 400]\n");
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_NE(r.err.find("stdin:1: 400 is not a token id"), std::string::npos) << r.err;
  r = run("tokenize --jsonl --model " + kTinyTokenizer, "[1]\n");
  EXPECT_EQ(r.exit_status, 2);
}

// A tokenizer.json this reader does not handle is a one-line input error naming file and field.
TEST(TokenizeCli, UnsupportedTokenizerJsonExitsTwo) {
  TempDir dir;
  test::write_text(dir.file("tokenizer.json"),
                   R"({"model": {"type": "Unigram", "vocab": [["a", 0.0]]}})");
  const auto r = run("tokenize --model " + dir.path().string(), "x\n");
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_NE(r.err.find(dir.file("tokenizer.json") + ": model type 'Unigram' is not supported"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

// llama2.c's file in a model directory is found by the CLI as well.
TEST(TokenizeCli, Llama2cTokenizerFile) {
  const std::string dir = test::kDataDir + "/stories260K";
  const auto r = run("tokenize --model " + dir, "Once upon a time\n");
  ASSERT_EQ(r.exit_status, 0) << r.err;
  const auto ids = json::parse(r.out).get<std::vector<int32_t>>();
  ASSERT_EQ(ids.size(), 5u);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids[1], 403);  // " Once", the golden's first generated token
  const auto back = run("detokenize --model " + dir, r.out);
  EXPECT_EQ(back.out, "Once upon a time\n");
}

// opt-pub-tiny's weights with the tiny tokenizer beside them.
class TextGenerate : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* f : {"config.json", "generation_config.json", "model.safetensors"}) {
      fs::copy_file(test::model_dir("opt-pub-tiny") + "/" + f, dir_.path() / f);
    }
    for (const auto& f : fs::directory_iterator(kTinyTokenizer)) {
      fs::copy_file(f.path(), dir_.path() / f.path().filename());
    }
    tokenizer_ = Tokenizer::load(kTinyTokenizer);
    ASSERT_TRUE(tokenizer_);
  }
  std::string model() const { return dir_.path().string(); }
  TempDir dir_;
  std::optional<Tokenizer> tokenizer_;
};

const std::string kPrompt = "Hello, the world, this is a test of the theory";

TEST_F(TextGenerate, TextPromptsMatchIdPrompts) {
  const std::string flags = " --gen-len 16 --ignore-eos --model " + model();
  const auto text_run = run("generate --prompt '" + kPrompt + "' --prompt 'second'" + flags);
  ASSERT_EQ(text_run.exit_status, 0) << text_run.err;
  const auto results = json_lines(text_run.out);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0]["id"], 0);
  EXPECT_EQ(results[1]["id"], 1);
  const auto ids = tokenizer_->encode(kPrompt);
  EXPECT_EQ(results[0]["input_ids"].get<std::vector<int32_t>>(), ids);

  // The same prompt as ids, and as a JSONL text prompt, generate the same tokens.
  TempDir in;
  test::write_text(in.file("r.jsonl"), json({{"id", "a"}, {"input_ids", ids}}).dump() + "\n" +
                                           json({{"id", "b"}, {"prompt", kPrompt}}).dump() + "\n");
  const auto id_run = run("generate --input " + in.file("r.jsonl") + flags);
  ASSERT_EQ(id_run.exit_status, 0) << id_run.err;
  const auto by_ids = json_lines(id_run.out);
  ASSERT_EQ(by_ids.size(), 2u);
  for (const auto& r : by_ids) {
    EXPECT_EQ(r["output_ids"], results[0]["output_ids"]);
    EXPECT_EQ(r["text"], results[0]["text"]);
  }
  const auto out_ids = results[0]["output_ids"].get<std::vector<int32_t>>();
  EXPECT_EQ(results[0]["text"], TextStream::text_of(*tokenizer_, out_ids));
}

TEST_F(TextGenerate, StopStringCutsTextAndTokens) {
  const std::string flags =
      " --gen-len 24 --ignore-eos --model " + model() + " --prompt '" + kPrompt + "'";
  const auto full_run = run("generate" + flags);
  ASSERT_EQ(full_run.exit_status, 0) << full_run.err;
  const json full = json::parse(full_run.out);
  const std::string text = full["text"];
  const auto ids = full["output_ids"].get<std::vector<int32_t>>();
  // A stop string of two printable ASCII characters that first occurs after the start.
  std::string stop;
  size_t at = 0;
  for (size_t i = 1; i + 1 < text.size() && stop.empty(); ++i) {
    const std::string s = text.substr(i, 2);
    if (std::isgraph(static_cast<unsigned char>(s[0])) &&
        std::isgraph(static_cast<unsigned char>(s[1])) && s.find('\'') == std::string::npos &&
        text.find(s) == i) {
      stop = s;
      at = i;
    }
  }
  ASSERT_FALSE(stop.empty()) << "no usable stop string in " << json(text).dump();
  const auto r = run("generate --stop '" + stop + "' --stop 'never seen'" + flags);
  ASSERT_EQ(r.exit_status, 0) << r.err;
  const json cut = json::parse(r.out);
  EXPECT_EQ(cut["finish_reason"], "stop");
  EXPECT_EQ(cut["text"], text.substr(0, at));
  // The shortest prefix of the ids whose bytes reach the start of the stop string.
  size_t kept = 0;
  while (tokenizer_->decode(std::span(ids).first(kept), true).size() < at) ++kept;
  std::vector<int32_t> expected(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(kept));
  EXPECT_EQ(cut["output_ids"].get<std::vector<int32_t>>(), expected) << "stop " << stop;
  EXPECT_EQ(cut["token_logprobs"].size(), kept);
}

TEST_F(TextGenerate, NoTokenizerIsAClearError) {
  const std::string bare = test::model_dir("opt-pub-tiny");
  auto r = run("generate --model " + bare + " --prompt hi");
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_NE(r.err.find("--prompt #1: a text prompt needs a tokenizer"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  TempDir in;
  test::write_text(in.file("r.jsonl"),
                   "{\"id\": 1, \"input_ids\": [2, 5]}\n{\"id\": 2, \"prompt\": \"x\"}\n");
  r = run("generate --model " + bare + " --input " + in.file("r.jsonl"));
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_NE(r.err.find(in.file("r.jsonl") + ":2: a text prompt needs a tokenizer"),
            std::string::npos)
      << r.err;
  r = run("generate --model " + bare + " --stop x --input " + in.file("r.jsonl"));
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_NE(r.err.find("--stop needs a tokenizer"), std::string::npos) << r.err;
  // With ids only, a model without a tokenizer works as before and writes no "text".
  test::write_text(in.file("ids.jsonl"), "{\"id\": 1, \"input_ids\": [2, 5]}\n");
  r = run("generate --gen-len 2 --model " + bare + " --input " + in.file("ids.jsonl"));
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_FALSE(json::parse(r.out).contains("text"));
  // --tokenizer lends one to a model directory that has none.
  r = run("generate --gen-len 2 --model " + bare + " --tokenizer " + kTinyTokenizer +
          " --prompt hi");
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["input_ids"].get<std::vector<int32_t>>(), tokenizer_->encode("hi"));
}

}  // namespace
}  // namespace strata
