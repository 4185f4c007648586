// Tokenizer pieces checked against hand-derived expectations (no downloaded data needed):
// UTF-8 replacement (the Unicode standard's own example), GPT-2 pre-tokenisation rules,
// merge order, added tokens, streaming decode and stop strings, file loading errors.
#include <random>

#include "core/error.h"
#include "test_util.h"
#include "tokenizer/normalize.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/text_stream.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace strata {
namespace {

using test::TempDir;
using test::write_text;

const std::string kFffd = "\xEF\xBF\xBD";

TEST(Utf8, ReplacesMaximalSubparts) {
  // Unicode 15, section 3.9, table 3-8: 61 F1 80 80 E1 80 C2 62 80 63 80 BF 64.
  EXPECT_EQ(replace_invalid_utf8("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64"),
            "a" + kFffd + kFffd + kFffd + "b" + kFffd + "c" + kFffd + kFffd + "d");
  EXPECT_EQ(replace_invalid_utf8("\xC0\x80"), kFffd + kFffd);              // overlong
  EXPECT_EQ(replace_invalid_utf8("\xED\xA0\x80"), kFffd + kFffd + kFffd);  // surrogate
  EXPECT_EQ(replace_invalid_utf8("\xF4\x90\x80\x80"), kFffd + kFffd + kFffd + kFffd);
  EXPECT_EQ(replace_invalid_utf8("\xE6\x97"), kFffd);  // cut short: one replacement
  EXPECT_EQ(replace_invalid_utf8("ok \xE6\x97\xA5 \xF0\x9F\x8C\x8D"),
            "ok \xE6\x97\xA5 \xF0\x9F\x8C\x8D");
  EXPECT_FALSE(is_valid_utf8("\xFF"));
  EXPECT_TRUE(is_valid_utf8("\xE6\x97\xA5"));
}

TEST(Utf8, IncompleteTail) {
  EXPECT_EQ(incomplete_utf8_tail("ab"), 0u);
  EXPECT_EQ(incomplete_utf8_tail("a\xE6"), 1u);
  EXPECT_EQ(incomplete_utf8_tail("a\xE6\x97"), 2u);
  EXPECT_EQ(incomplete_utf8_tail("a\xE6\x97\xA5"), 0u);
  EXPECT_EQ(incomplete_utf8_tail("a\xF0\x9F\x8C"), 3u);
  EXPECT_EQ(incomplete_utf8_tail("a\xE0\x80"), 0u);  // E0 80 can never be valid
  EXPECT_EQ(incomplete_utf8_tail("a\x80\x80"), 0u);
}

std::vector<std::string> pieces(std::string_view text) {
  std::vector<std::string_view> views;
  split_gpt2(text, views);
  return {views.begin(), views.end()};
}

using Pieces = std::vector<std::string>;

TEST(Pretokenize, FollowsThePattern) {
  EXPECT_EQ(pieces("Hello world"), (Pieces{"Hello", " world"}));
  EXPECT_EQ(pieces("I'm here's"), (Pieces{"I", "'m", " here", "'s"}));
  EXPECT_EQ(pieces("we'll they've you're it'd"),
            (Pieces{"we", "'ll", " they", "'ve", " you", "'re", " it", "'d"}));
  EXPECT_EQ(pieces("'''s"), (Pieces{"'''", "s"}));  // a run of punctuation is one piece
  EXPECT_EQ(pieces(" 'll"), (Pieces{" '", "ll"}));  // the space joins the punctuation
  EXPECT_EQ(pieces("'S"), (Pieces{"'", "S"}));      // contractions are lower case only
  EXPECT_EQ(pieces("a  b"), (Pieces{"a", " ", " b"}));
  EXPECT_EQ(pieces("a\n\nb"), (Pieces{"a", "\n", "\n", "b"}));
  EXPECT_EQ(pieces("a \n b"), (Pieces{"a", " \n", " b"}));
  EXPECT_EQ(pieces("a   "), (Pieces{"a", "   "}));
  EXPECT_EQ(pieces("x 123 !! 4x"), (Pieces{"x", " 123", " !!", " 4", "x"}));
  EXPECT_EQ(pieces(" "), (Pieces{" "}));
  EXPECT_EQ(pieces(""), (Pieces{}));
}

TEST(Pretokenize, UnicodeClasses) {
  EXPECT_EQ(pieces("e\xCC\x81t\xC3\xA9"),
            (Pieces{"e", "\xCC\x81", "t\xC3\xA9"}));  // combining mark
  EXPECT_EQ(pieces("\xE6\x97\xA5\xE6\x9C\xAC \xE8\xAA\x9E"),
            (Pieces{"\xE6\x97\xA5\xE6\x9C\xAC", " \xE8\xAA\x9E"}));
  EXPECT_EQ(pieces("x\xC2\xA0y"), (Pieces{"x", "\xC2\xA0", "y"}));  // NBSP is \s but not ' '
  EXPECT_EQ(pieces("\xD9\xA3\xD9\xA4 \xC2\xB2"),
            (Pieces{"\xD9\xA3\xD9\xA4", " \xC2\xB2"}));  // \p{N}
  EXPECT_EQ(pieces("a\xF0\x9F\x98\x80\xF0\x9F\x98\x81"),
            (Pieces{"a", "\xF0\x9F\x98\x80\xF0\x9F\x98\x81"}));
  EXPECT_EQ(pieces("a\xC2\x85\xC2\x85"
                   "b"),
            (Pieces{"a", "\xC2\x85", "\xC2\x85", "b"}));     // U+0085 is White_Space
  EXPECT_EQ(char_class(U'\U00010400'), CharClass::kLetter);  // outside the BMP table
  EXPECT_EQ(char_class(U'\U0001F600'), CharClass::kOther);
}

std::vector<std::string> regex_pieces(const std::string& pattern, const std::string& text,
                                      bool literal = false) {
  RegexSplitter splitter(pattern, literal);
  std::vector<std::string> out;
  splitter.split(text, out);
  return out;
}

const std::string kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

TEST(RegexSplit, Llama3Pattern) {
  EXPECT_EQ(regex_pieces(kLlama3Pattern, "Hello world's 12345 'LL\n\n  x"),
            (Pieces{"Hello", " world", "'s", " ", "123", "45", " '", "LL", "\n\n", " ", " x"}));
  // U+0085 is white space to Oniguruma (Hugging Face) but not to ICU's own \s.
  EXPECT_EQ(regex_pieces(kLlama3Pattern, "a\u0085\u0085b"), (Pieces{"a", "\u0085", "\u0085b"}));
  // (ICU's \s would let [^\s\p{L}] match U+0085 and cut this text in three.)
  EXPECT_EQ(regex_pieces(R"([^\s\p{L}]+)", "a\u0085\u0085b"), (Pieces{"a\u0085\u0085b"}));
  EXPECT_EQ(onig_to_icu_pattern(R"([^\s]\S\\s)"), R"([^\p{White_Space}]\P{White_Space}\\s)");
}

TEST(RegexSplit, IsolatedKeepsTheGapsAndLiteralsAreLiteral) {
  EXPECT_EQ(regex_pieces("b", "abcbd"), (Pieces{"a", "b", "c", "b", "d"}));
  EXPECT_EQ(regex_pieces("x*", "abx"), (Pieces{"ab", "x"}));  // empty matches make no piece
  EXPECT_EQ(regex_pieces(".", "a.b", true), (Pieces{"a", ".", "b"}));
  EXPECT_EQ(regex_pieces(".", "", false), (Pieces{}));
  try {
    RegexSplitter bad("(", false);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.exit_status(), kExitBadInput);
  }
}

TEST(Metaspace, ReplacesPrependsAndSplits) {
  const std::string m = "\u2581";
  std::vector<std::string> out;
  split_metaspace("Hey  friend", m, true, true, out);
  EXPECT_EQ(out, (Pieces{m + "Hey", m, m + "friend"}));
  out.clear();
  split_metaspace(" a b", m, true, false, out);  // already starts with one: none added
  EXPECT_EQ(out, (Pieces{m + "a" + m + "b"}));
  out.clear();
  split_metaspace("ab c", m, false, true, out);
  EXPECT_EQ(out, (Pieces{"ab", m + "c"}));
}

TEST(Normalize, StepsInOrder) {
  using Kind = NormalizerStep::Kind;
  const std::string m = "\u2581";
  const std::vector<NormalizerStep> llama2 = {{Kind::kPrepend, "", m}, {Kind::kReplace, " ", m}};
  EXPECT_EQ(normalize(" a b", llama2), m + m + "a" + m + "b");
  EXPECT_EQ(normalize("", llama2), "");  // nothing to prepend to
  const std::vector<NormalizerStep> nfc = {{Kind::kNfc, "", ""}};
  EXPECT_EQ(normalize("e\u0301 \u212B", nfc), "\u00E9 \u00C5");
  EXPECT_EQ(normalize("\uFB01", {{Kind::kNfkc, "", ""}}), "fi");
}

// A byte-level vocabulary: every byte (id = byte), then the merges given as raw bytes.
TokenizerSpec byte_spec(const std::vector<std::pair<std::string, std::string>>& merges) {
  TokenizerSpec spec;
  for (int b = 0; b < 256; ++b) spec.vocab[bytes_to_token_text(std::string(1, char(b)))] = b;
  for (const auto& [left, right] : merges) {
    const std::string l = bytes_to_token_text(left), r = bytes_to_token_text(right);
    const int32_t merged = static_cast<int32_t>(spec.vocab.size());
    spec.vocab.emplace(l + r, merged);
    spec.merges.push_back({spec.vocab.at(l), spec.vocab.at(r), spec.vocab.at(l + r)});
  }
  return spec;
}

TEST(Bpe, MergesByRank) {
  const Tokenizer lowest_first(byte_spec({{"b", "c"}, {"a", "b"}, {"ab", "c"}}));
  EXPECT_EQ(lowest_first.encode("abc"),
            (std::vector<int32_t>{'a', 256}));  // bc won, (a, bc) has no rank
  const Tokenizer chained(byte_spec({{"a", "b"}, {"b", "c"}, {"ab", "c"}}));
  EXPECT_EQ(chained.encode("abc"), (std::vector<int32_t>{258}));
  const Tokenizer runs(byte_spec({{"a", "a"}, {"aa", "aa"}}));
  EXPECT_EQ(runs.encode("aaa"), (std::vector<int32_t>{256, 'a'}));  // left to right
  EXPECT_EQ(runs.encode("aaaa"), (std::vector<int32_t>{257}));
  EXPECT_EQ(runs.encode("aaaaa"), (std::vector<int32_t>{257, 'a'}));
  EXPECT_EQ(runs.encode("aaaaa aaaaa"), (std::vector<int32_t>{257, 'a', ' ', 257, 'a'}));  // cached
  const Tokenizer spaced(byte_spec({{" ", "a"}}));
  EXPECT_EQ(spaced.encode("a a"), (std::vector<int32_t>{'a', 256}));
}

TEST(Bpe, LongRunsAreFast) {
  const Tokenizer runs(byte_spec({{" ", " "}, {"  ", "  "}}));
  const auto ids = runs.encode(std::string(200000, ' ') + "x");
  // Pieces: 199999 spaces (49999 x 4, then 2 + 1), then " x" (no merge).
  EXPECT_EQ(ids.size(), 49999u + 2 + 2);
}

TEST(Tokenizer, AddedTokensAndAffixes) {
  TokenizerSpec spec = byte_spec({});
  spec.added = {{"</s>", 300, true}, {"<|x|>", 301, false}, {"<|x|>y", 302, true}};
  spec.prefix_ids = {300};
  const Tokenizer t(spec);
  EXPECT_EQ(t.encode("a</s>b"), (std::vector<int32_t>{300, 'a', 300, 'b'}));
  EXPECT_EQ(t.encode_plain("<|x|>y<|x|>"), (std::vector<int32_t>{302, 301}));  // longest first
  EXPECT_EQ(t.decode(std::vector<int32_t>{300, 'a', 301}), "</s>a<|x|>");
  EXPECT_EQ(t.decode(std::vector<int32_t>{300, 'a', 301}, true), "a<|x|>");  // 301 is not special
  EXPECT_THROW(t.decode(std::vector<int32_t>{299}), Error);
  EXPECT_THROW(t.decode(std::vector<int32_t>{-1}), Error);
}

// Found by the tokenizer_json fuzzer: one id of 366666668 sized the id table at 11.7 GB, and
// INT32_MAX overflowed it. Each is an input error naming the token, before any allocation.
TEST(Tokenizer, IdsFarPastTheTokenCountAreInputErrors) {
  for (const int32_t id : {366666668, 2147483646, 2147483647}) {
    TokenizerSpec in_vocab = byte_spec({});
    in_vocab.vocab["far"] = id;
    TokenizerSpec in_added = byte_spec({});
    in_added.added = {{"<far>", id, true}};
    for (const TokenizerSpec* spec : {&in_vocab, &in_added}) {
      try {
        const Tokenizer t(*spec);
        ADD_FAILURE() << "no error for id " << id;
      } catch (const Error& e) {
        EXPECT_EQ(e.exit_status(), kExitBadInput) << e.what();
        EXPECT_NE(std::string(e.what()).find("far"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find(std::to_string(id)), std::string::npos) << e.what();
      }
    }
  }
  TokenizerSpec sparse = byte_spec({});
  sparse.added = {{"<pad>", 128255, true}};  // a real vocabulary's gaps stay allowed
  EXPECT_EQ(Tokenizer(sparse).encode_plain("<pad>"), (std::vector<int32_t>{128255}));
}

TEST(Tokenizer, InvalidUtf8IsReplacedTheSameEveryTime) {
  const Tokenizer t(byte_spec({}));
  const auto ids = t.encode(
      "a\xFF\xE6\x97"
      "b");
  EXPECT_EQ(ids, t.encode("a" + kFffd + kFffd + "b"));
  EXPECT_EQ(ids, t.encode("a\xFF\xE6\x97"
                          "b"));
}

TEST(TextStream, HoldsBackIncompleteCharacters) {
  const Tokenizer t(byte_spec({}));
  TextStream stream(t);
  EXPECT_EQ(stream.push(0xE6), "");
  EXPECT_EQ(stream.push(0x97), "");
  EXPECT_EQ(stream.push(0xA5), "\xE6\x97\xA5");
  EXPECT_EQ(stream.push(0xFF), kFffd);  // known bad at once
  EXPECT_EQ(stream.push(0xE6), "");
  EXPECT_EQ(stream.push('a'), kFffd + "a");
  EXPECT_EQ(stream.push(0xF0), "");
  EXPECT_EQ(stream.finish(), kFffd);
}

TEST(TextStream, PiecesJoinToTheWholeDecode) {
  const Tokenizer t(byte_spec({{"\xE6", "\x97"}}));  // E6 97 as one token
  std::mt19937 rng(7);
  const int32_t pool[] = {'a', ' ', 0xE6, 0x97, 0xA5, 0xF0, 0x9F, 0x98, 0x80, 0xC3, 0xFF, 256};
  for (int trial = 0; trial < 500; ++trial) {
    std::vector<int32_t> ids;
    for (int k = rng() % 12; k > 0; --k) ids.push_back(pool[rng() % std::size(pool)]);
    TextStream stream(t);
    std::string joined;
    for (int32_t id : ids) {
      const std::string piece = stream.push(id);
      EXPECT_TRUE(is_valid_utf8(piece));
      joined += piece;
    }
    joined += stream.finish();
    EXPECT_EQ(joined, replace_invalid_utf8(t.decode(ids)));
  }
}

TEST(StopWatcher, CutsTextAndIds) {
  TokenizerSpec spec = byte_spec({{"H", "e"}, {"He", "l"}, {"l", "o"}, {" ", "w"}});
  spec.added = {{"</s>", 300, true}};
  const Tokenizer t(spec);
  const std::vector<int32_t> ids = {257, 258, 259, 'o', 'r', 'l', 'd'};  // "Hel" "lo" " w" o r l d
  ASSERT_EQ(t.decode(ids), "Hello world");
  const std::vector<std::string> stops = {"o w", "zz"};
  StopWatcher w(t, stops);
  EXPECT_FALSE(w.push(257));
  EXPECT_FALSE(w.push(258));
  EXPECT_TRUE(w.push(259));  // "Hello w" holds "o w", which began inside "lo"
  EXPECT_EQ(w.text(), "Hell");
  EXPECT_EQ(w.kept_ids(), 2u);  // "lo" straddles the cut and stays; " w" goes

  const std::vector<std::string> at_start = {"He"};
  StopWatcher first(t, at_start);
  EXPECT_TRUE(first.push(257));
  EXPECT_EQ(first.text(), "");
  EXPECT_EQ(first.kept_ids(), 0u);

  const std::vector<std::string> none = {"xyz"};
  StopWatcher never(t, none);
  for (int32_t id : ids) EXPECT_FALSE(never.push(id));
  EXPECT_FALSE(never.push(300));  // specials are not text
  EXPECT_EQ(never.text(), "Hello world");
  EXPECT_EQ(never.kept_ids(), ids.size() + 1);
}

TEST(TokenizerFiles, OptStyleDirectory) {
  const auto t = Tokenizer::load(test::kDataDir + "/tokenizer/opt-tiny");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->size(), 400);
  EXPECT_EQ(t->prefix_ids(), std::vector<int32_t>{2});  // add_bos_token with bos "</s>"
  EXPECT_EQ(t->encode(""), std::vector<int32_t>{2});
  EXPECT_EQ(t->encode("a</s>"), (std::vector<int32_t>{2, 4 + 'a', 2}));
  EXPECT_TRUE(t->is_special(2));
  EXPECT_TRUE(t->is_special(1));
  EXPECT_FALSE(t->is_special(4 + 'a'));
  const auto ids = t->encode("the theory");
  EXPECT_EQ(t->decode(ids), "</s>the theory");
  EXPECT_EQ(t->decode(ids, true), "the theory");
}

TEST(TokenizerFiles, NoneOrBroken) {
  TempDir dir;
  EXPECT_FALSE(Tokenizer::load(dir.path().string()));
  write_text(dir.file("vocab.json"), R"({"a": 0, "b": 1})");
  EXPECT_THROW(Tokenizer::load(dir.path().string()), Error);  // no merges.txt
  write_text(dir.file("merges.txt"), "#version: 0.2\na b\n");
  try {
    Tokenizer::load(dir.path().string());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.exit_status(), kExitBadInput);
    EXPECT_NE(std::string(e.what()).find("merges.txt:2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'ab'"), std::string::npos) << e.what();
  }
  write_text(dir.file("tokenizer.json"), R"({"model": {"type": "WordPiece", "vocab": {}}})");
  EXPECT_THROW(Tokenizer::load(dir.path().string()), Error);
  write_text(dir.file("tokenizer.json"), "{not json");
  EXPECT_THROW(Tokenizer::load(dir.path().string()), Error);
}

// What tokenizer.json may hold beyond BPE's needs: each is one line naming the file and field.
TEST(TokenizerFiles, UnsupportedTokenizerJsonFields) {
  const nlohmann::json bpe = {
      {"type", "BPE"}, {"vocab", {{"a", 0}}}, {"merges", nlohmann::json::array()}};
  const std::pair<nlohmann::json, std::string> cases[] = {
      {{{"model", {{"type", "Unigram"}, {"vocab", nlohmann::json::array()}}}},
       "model type 'Unigram' is not supported (only BPE)"},
      {{{"model", {{"type", "WordPiece"}, {"vocab", {{"a", 0}}}}}}, "model type 'WordPiece'"},
      {{{"model", bpe}, {"normalizer", {{"type", "Lowercase"}}}},
       "normalizer type 'Lowercase' is not supported"},
      {{{"model", bpe}, {"pre_tokenizer", {{"type", "Whitespace"}}}},
       "pre_tokenizer type 'Whitespace' is not supported"},
      {{{"model", bpe},
        {"pre_tokenizer",
         {{"type", "Split"}, {"pattern", {{"Regex", "a"}}}, {"behavior", "Removed"}}}},
       "pre_tokenizer Split behavior 'Removed' is not supported"},
      {{{"model", bpe},
        {"pre_tokenizer",
         {{"type", "Split"}, {"pattern", {{"Regex", "(a"}}}, {"behavior", "Isolated"}}}},
       "pre_tokenizer Split: the regex '(a' does not compile"},
      {{{"model", bpe}, {"decoder", {{"type", "WordPiece"}}}},
       "decoder type 'WordPiece' is not supported"},
      {{{"model", bpe}, {"added_tokens", {{{"id", 1}, {"content", "<x>"}, {"single_word", true}}}}},
       "added token '<x>' has single_word set"},
  };
  for (const auto& [j, message] : cases) {
    TempDir dir;
    write_text(dir.file("tokenizer.json"), j.dump());
    try {
      Tokenizer::load(dir.path().string());
      ADD_FAILURE() << "no error for " << j.dump();
    } catch (const Error& e) {
      EXPECT_EQ(e.exit_status(), kExitBadInput);
      EXPECT_NE(std::string(e.what()).find(dir.file("tokenizer.json") + ": " + message),
                std::string::npos)
          << e.what();
    }
  }
}

}  // namespace
}  // namespace strata
