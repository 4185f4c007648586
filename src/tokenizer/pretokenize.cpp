#include "tokenizer/pretokenize.h"

#include <unicode/uchar.h>

#include <array>

#include "tokenizer/utf8.h"

namespace strata {
namespace {

CharClass classify(char32_t c) {
  const auto cp = static_cast<UChar32>(c);
  if (u_isUWhiteSpace(cp)) return CharClass::kSpace;
  switch (u_charType(cp)) {
    case U_UPPERCASE_LETTER:
    case U_LOWERCASE_LETTER:
    case U_TITLECASE_LETTER:
    case U_MODIFIER_LETTER:
    case U_OTHER_LETTER:
      return CharClass::kLetter;
    case U_DECIMAL_DIGIT_NUMBER:
    case U_LETTER_NUMBER:
    case U_OTHER_NUMBER:
      return CharClass::kNumber;
    default:
      return CharClass::kOther;
  }
}

// The Basic Multilingual Plane is looked up in a table built once; ICU answers the rest.
const std::array<CharClass, 0x10000>& bmp_classes() {
  static const auto table = [] {
    std::array<CharClass, 0x10000> t{};
    for (char32_t c = 0; c < 0x10000; ++c) t[c] = classify(c);
    return t;
  }();
  return table;
}

struct Char {
  char32_t code_point;
  CharClass cls;
  size_t length;  // bytes
};

Char char_at(std::string_view s, size_t i, const std::array<CharClass, 0x10000>& bmp) {
  const auto b = static_cast<unsigned char>(s[i]);
  if (b < 0x80) return {b, bmp[b], 1};
  const size_t length = utf8_sequence_length(s, i);
  // Invalid bytes were replaced before this point; treat any left as punctuation-like.
  if (length == 0) return {kReplacementChar, CharClass::kOther, 1};
  const char32_t c = utf8_decode_valid(s, i, length);
  return {c, c < 0x10000 ? bmp[c] : classify(c), length};
}

bool is_contraction(std::string_view s, size_t i, size_t* end) {
  if (s[i] != '\'' || i + 1 >= s.size()) return false;
  const char a = s[i + 1];
  if (a == 's' || a == 't' || a == 'm' || a == 'd') {
    *end = i + 2;
    return true;
  }
  if (i + 2 >= s.size()) return false;
  const char b = s[i + 2];
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) {
    *end = i + 3;
    return true;
  }
  return false;
}

// End of the piece that starts at s[i].
size_t piece_end(std::string_view s, size_t i, const std::array<CharClass, 0x10000>& bmp) {
  size_t end = 0;
  if (is_contraction(s, i, &end)) return end;
  const size_t n = s.size();
  Char first = char_at(s, i, bmp);
  size_t start = i;
  // " ?X+": an optional single space (U+0020) before a run of letters, numbers or other.
  if (first.code_point == ' ' && i + 1 < n) {
    const Char next = char_at(s, i + 1, bmp);
    if (next.cls != CharClass::kSpace) {
      first = next;
      start = i + 1;
    }
  }
  if (first.cls != CharClass::kSpace) {
    size_t j = start + first.length;
    while (j < n) {
      const Char c = char_at(s, j, bmp);
      if (c.cls != first.cls) break;
      j += c.length;
    }
    return j;
  }
  // "\s+(?!\S)|\s+": a run of spaces gives up its last character to the word that follows,
  // unless that leaves nothing.
  size_t j = i + first.length, last = i;
  while (j < n) {
    const Char c = char_at(s, j, bmp);
    if (c.cls != CharClass::kSpace) break;
    last = j;
    j += c.length;
  }
  if (j == n) return n;
  return last > i ? last : j;
}

}  // namespace

CharClass char_class(char32_t c) {
  return c < 0x10000 ? bmp_classes()[c] : classify(c);
}

void split_gpt2(std::string_view text, std::vector<std::string_view>& pieces) {
  const auto& bmp = bmp_classes();
  for (size_t i = 0; i < text.size();) {
    const size_t end = piece_end(text, i, bmp);
    pieces.push_back(text.substr(i, end - i));
    i = end;
  }
}

}  // namespace strata
