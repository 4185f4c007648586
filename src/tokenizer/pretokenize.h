// GPT-2's pre-tokenisation: the text is cut into pieces by the pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// and BPE runs inside each piece. This is a hand-written scanner with the same leftmost-first
// semantics; letter and number classes are Unicode general categories (ICU), \s is the Unicode
// White_Space property (as in Hugging Face tokenizers and Python's `regex`; JavaScript's \s
// differs on U+0085 and U+FEFF only).
#pragma once

#include <string_view>
#include <vector>

namespace strata {

enum class CharClass : unsigned char { kLetter, kNumber, kSpace, kOther };

CharClass char_class(char32_t code_point);

// Appends the pieces of `text`, which must be valid UTF-8, to `pieces` (views into text).
void split_gpt2(std::string_view text, std::vector<std::string_view>& pieces);

}  // namespace strata
