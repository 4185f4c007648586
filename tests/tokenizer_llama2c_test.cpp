// llama2.c's tokenizer file: the real stories260K tokenizer against its published golden (ids and
// text from llama2.c's run.c and test_all.py, tests/data/stories260K), then the merge rules and
// the file checks on small hand-made files.
#include <fstream>

#include "core/error.h"
#include "test_util.h"
#include "tokenizer/text_stream.h"
#include "tokenizer/tokenizer.h"

namespace strata {
namespace {

using nlohmann::json;
using test::TempDir;
using Ids = std::vector<int32_t>;

const std::string kStories = test::kDataDir + "/stories260K";

struct Golden {
  Ids input_ids, output_ids;
  std::string text;
};

Golden golden() {
  const json j = json::parse(test::read_text(kStories + "/golden.json"));
  return {j["input_ids"].get<Ids>(), j["output_ids"].get<Ids>(), j["text"].get<std::string>()};
}

TEST(Llama2c, GoldenIdsDecodeToTheGoldenText) {
  const auto t = Tokenizer::load(kStories);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->size(), 512);
  const Golden g = golden();
  ASSERT_EQ(g.input_ids, Ids{1});  // generation starts from BOS alone
  Ids ids = g.input_ids;
  ids.insert(ids.end(), g.output_ids.begin(), g.output_ids.end());
  EXPECT_EQ(t->decode(ids, true), g.text);
  EXPECT_EQ(t->decode(ids), "\n<s>\n" + g.text);  // BOS as the file spells it
  // A stream of generated ids follows the prompt's BOS.
  EXPECT_EQ(TextStream::text_of(*t, g.output_ids), g.text);
  // Without BOS before it, run.c keeps the first token's space.
  EXPECT_EQ(t->decode(g.output_ids), " " + g.text);
}

TEST(Llama2c, GoldenTextEncodesToTheGoldenIds) {
  const auto t = Tokenizer::load(kStories);
  ASSERT_TRUE(t);
  const Golden g = golden();
  Ids ids = g.input_ids;
  ids.insert(ids.end(), g.output_ids.begin(), g.output_ids.end());
  EXPECT_EQ(t->encode(g.text), ids);
  EXPECT_EQ(t->prefix_ids(), Ids{1});
  EXPECT_TRUE(t->suffix_ids().empty());
  EXPECT_EQ(t->encode(""), Ids{1});  // no dummy prefix for an empty text
  for (const char* text : {"Lily and Ben", "  two  spaces ", "x\ny", "caf\xC3\xA9 \xE4\xBD\xA0"}) {
    EXPECT_EQ(t->decode(t->encode(text), true), text);
  }
  EXPECT_TRUE(t->is_special(0) && t->is_special(1) && t->is_special(2));
  EXPECT_FALSE(t->is_special(3));
}

// A completion continues its prompt's text, so its first token keeps its leading space; only a
// text that starts right after BOS drops it, as llama2.c's decode does.
TEST(Llama2c, ContinuationsKeepTheirLeadingSpace) {
  const auto t = Tokenizer::load(kStories);
  ASSERT_TRUE(t.has_value());
  const std::vector<int32_t> prompt = t->encode("Once upon a time");
  const std::vector<int32_t> next = t->encode_plain(", there was");
  const std::vector<int32_t> word = {next.back()};  // " was"
  EXPECT_EQ(TextStream::text_of(*t, word, false), "was");
  EXPECT_EQ(TextStream::text_of(*t, word, true), " was");
  EXPECT_TRUE(TextStream::has_text(*t, prompt));
  EXPECT_FALSE(TextStream::has_text(*t, std::vector<int32_t>{1}));  // BOS alone
}

TEST(Llama2c, UnknownCharactersFallBackToBytes) {
  const auto t = Tokenizer::load(kStories);
  ASSERT_TRUE(t);
  const int32_t space = 410;  // the " " piece
  ASSERT_EQ(t->token_bytes(space), " ");
  // U+4F60 is not a piece: its UTF-8 bytes E4 BD A0 are ids byte + 3.
  EXPECT_EQ(t->encode_plain("\xE4\xBD\xA0"), (Ids{space, 0xE4 + 3, 0xBD + 3, 0xA0 + 3}));
  EXPECT_EQ(t->token_bytes(0xE4 + 3), "\xE4");
  EXPECT_EQ(t->decode(Ids{1, space, 0xE4 + 3, 0xBD + 3, 0xA0 + 3}, true), "\xE4\xBD\xA0");
}

// A llama2.c file: unk, BOS, EOS, the 256 byte tokens (score 0), then `pieces`.
void write_llama2c(const std::string& path,
                   const std::vector<std::pair<std::string, float>>& pieces,
                   int32_t max_length = 16) {
  std::vector<std::pair<std::string, float>> all = {{"<unk>", 0}, {"\n<s>\n", 0}, {"\n</s>\n", 0}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    all.emplace_back(name, 0.0f);
  }
  all.insert(all.end(), pieces.begin(), pieces.end());
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(&max_length), sizeof max_length);
  for (const auto& [piece, score] : all) {
    const auto length = static_cast<int32_t>(piece.size());
    out.write(reinterpret_cast<const char*>(&score), sizeof score);
    out.write(reinterpret_cast<const char*>(&length), sizeof length);
    out.write(piece.data(), length);
  }
}

constexpr int32_t kFirst = 259;  // the first piece after the byte tokens

TEST(Llama2c, BestScoreMergesFirstThenLeftmost) {
  TempDir dir;
  // Ids: " " 259, "a" 260, "b" 261, "ab" 262, " a" 263, "aa" 264.
  write_llama2c(dir.file("tokenizer-llama2c.bin"),
                {{" ", -9}, {"a", -9}, {"b", -9}, {"ab", -1}, {" a", -5}, {"aa", -2}});
  const auto t = Tokenizer::load(dir.path().string());
  ASSERT_TRUE(t);
  // " ", "a", "b": "ab" (-1) beats " a" (-5), which left to right would have taken first.
  EXPECT_EQ(t->encode_plain("ab"), (Ids{kFirst, kFirst + 3}));
  // " ", "a", "a", "a": the pairs "aa" tie, the leftmost wins; then " a" has no partner left.
  EXPECT_EQ(t->encode_plain("aaa"), (Ids{kFirst, kFirst + 5, kFirst + 1}));
  EXPECT_EQ(t->encode_plain("ba"), (Ids{kFirst, kFirst + 2, kFirst + 1}));
  EXPECT_EQ(t->encode_plain("c"), (Ids{kFirst, 'c' + 3}));
  EXPECT_EQ(t->decode(Ids{1, kFirst, kFirst + 3}), "\n<s>\nab");  // the space after BOS goes
}

TEST(Llama2c, BadFilesAreInputErrors) {
  TempDir dir;
  const std::string path = dir.file("tokenizer-llama2c.bin");
  const auto error_of = [&]() -> std::string {
    try {
      Tokenizer::load(dir.path().string());
    } catch (const Error& e) {
      EXPECT_EQ(e.exit_status(), kExitBadInput);
      return e.what();
    }
    return "no error";
  };
  write_llama2c(path, {{"abc", 0}});
  EXPECT_NE(error_of().find("no \" \" piece"), std::string::npos) << error_of();
  write_llama2c(path, {{" ", 0}, {"much too long a piece", 0}});
  EXPECT_NE(error_of().find("token 260 has length 21"), std::string::npos) << error_of();
  write_llama2c(path, {{" ", 0}, {"ab", 0}});
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 1);
  EXPECT_NE(error_of().find(path + ": token 260 is cut short"), std::string::npos) << error_of();
  test::write_text(path, std::string(4, '\0'));
  EXPECT_NE(error_of().find("max_token_length"), std::string::npos) << error_of();
  test::write_text(path, std::string("\x10\0\0\0", 4));
  EXPECT_NE(error_of().find("has 0 tokens"), std::string::npos) << error_of();
}

}  // namespace
}  // namespace strata
