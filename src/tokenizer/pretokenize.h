// GPT-2's pre-tokenisation: the text is cut into pieces by the pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// and BPE runs inside each piece. This is a hand-written scanner with the same leftmost-first
// semantics; letter and number classes are Unicode general categories (ICU), \s is the Unicode
// White_Space property (as in Hugging Face tokenizers and Python's `regex`; JavaScript's \s
// differs on U+0085 and U+FEFF only).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace strata {

enum class CharClass : unsigned char { kLetter, kNumber, kSpace, kOther };

CharClass char_class(char32_t code_point);

// Appends the pieces of `text`, which must be valid UTF-8, to `pieces` (views into text).
void split_gpt2(std::string_view text, std::vector<std::string_view>& pieces);

// tokenizer.json's Split pre-tokenizer with behaviour Isolated: each match is a piece, and so is
// each stretch between matches. Patterns are written for Oniguruma (Hugging Face's engine) and run
// on ICU's: \s and \S become White_Space, Oniguruma's meaning (ICU's \s lacks U+000B and U+0085).
class RegexSplitter {
 public:
  // An input error when ICU cannot compile the pattern.
  RegexSplitter(const std::string& pattern, bool literal);
  ~RegexSplitter();
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;

  // Appends the pieces of `text` (valid UTF-8). Not thread-safe (the matcher); callers lock.
  void split(std::string_view text, std::vector<std::string>& pieces);

 private:
  struct Matcher;
  std::unique_ptr<Matcher> matcher_;
};

// The pattern with Oniguruma's \s / \S spelled for ICU.
std::string onig_to_icu_pattern(std::string_view pattern);

// tokenizer.json's Metaspace pre-tokenizer: ' ' becomes `replacement`, which is put first when
// the piece lacks it (prepend_scheme "always", or "first" when `at_start`), then, with `split`,
// a piece starts at each replacement.
void split_metaspace(std::string_view text, std::string_view replacement, bool prepend, bool split,
                     std::vector<std::string>& pieces);

}  // namespace strata
