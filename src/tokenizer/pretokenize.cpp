#include "tokenizer/pretokenize.h"

#include <unicode/regex.h>
#include <unicode/uchar.h>
#include <unicode/utext.h>

#include <array>

#include "core/error.h"
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

std::string onig_to_icu_pattern(std::string_view pattern) {
  std::string out;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] != '\\' || i + 1 == pattern.size()) {
      out += pattern[i];
    } else if (pattern[i + 1] == 's' || pattern[i + 1] == 'S') {
      out += pattern[++i] == 's' ? "\\p{White_Space}" : "\\P{White_Space}";
    } else {
      out.append(pattern.substr(i++, 2));  // an escape stays whole (so "\\\\s" is not touched)
    }
  }
  return out;
}

struct RegexSplitter::Matcher {
  std::unique_ptr<icu::RegexPattern> pattern;
  std::unique_ptr<icu::RegexMatcher> matcher;
  UText text = UTEXT_INITIALIZER;
  ~Matcher() { utext_close(&text); }
};

RegexSplitter::RegexSplitter(const std::string& pattern, bool literal)
    : matcher_(std::make_unique<Matcher>()) {
  const std::string icu_pattern = literal ? pattern : onig_to_icu_pattern(pattern);
  UErrorCode status = U_ZERO_ERROR;
  UParseError where{};
  matcher_->pattern.reset(icu::RegexPattern::compile(icu::UnicodeString::fromUTF8(icu_pattern),
                                                     literal ? UREGEX_LITERAL : 0, where, status));
  STRATA_INPUT_CHECK(U_SUCCESS(status), "the regex '", pattern, "' does not compile with ICU (",
                     u_errorName(status), " at offset ", where.offset, ")");
  matcher_->matcher.reset(matcher_->pattern->matcher(status));
  STRATA_CHECK(U_SUCCESS(status), "ICU regex matcher: ", u_errorName(status));
}

RegexSplitter::~RegexSplitter() = default;

void RegexSplitter::split(std::string_view text, std::vector<std::string>& pieces) {
  UErrorCode status = U_ZERO_ERROR;
  // UTF-8 in a UText: the matcher's indexes are byte offsets into `text`.
  utext_openUTF8(&matcher_->text, text.data(), static_cast<int64_t>(text.size()), &status);
  icu::RegexMatcher& m = *matcher_->matcher;
  m.reset(&matcher_->text);
  size_t done = 0;
  while (U_SUCCESS(status) && m.find(status)) {
    const auto start = static_cast<size_t>(m.start64(status));
    const auto end = static_cast<size_t>(m.end64(status));
    if (start == end) continue;  // empty matches make no piece
    if (start > done) pieces.emplace_back(text.substr(done, start - done));
    pieces.emplace_back(text.substr(start, end - start));
    done = end;
  }
  STRATA_CHECK(U_SUCCESS(status), "ICU regex matching failed: ", u_errorName(status));
  if (done < text.size()) pieces.emplace_back(text.substr(done));
}

void split_metaspace(std::string_view text, std::string_view replacement, bool prepend, bool split,
                     std::vector<std::string>& pieces) {
  std::string s;
  if (prepend && text.substr(0, replacement.size()) != replacement && !(text.substr(0, 1) == " ")) {
    s = replacement;
  }
  for (char c : text) {
    if (c == ' ') {
      s.append(replacement);
    } else {
      s += c;
    }
  }
  if (!split) {
    if (!s.empty()) pieces.push_back(std::move(s));
    return;
  }
  // MergedWithNext: each replacement begins a piece.
  size_t begin = 0;
  for (size_t at = s.find(replacement, 1); at != std::string::npos;
       at = s.find(replacement, at + replacement.size())) {
    pieces.push_back(s.substr(begin, at - begin));
    begin = at;
  }
  if (begin < s.size()) pieces.push_back(s.substr(begin));
}

}  // namespace strata
