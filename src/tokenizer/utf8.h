// UTF-8 helpers for the tokenizer: decoding code points, replacing invalid bytes, and finding
// where a stream may be cut without splitting a character.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace strata {

inline constexpr char32_t kReplacementChar = 0xFFFD;

// Length of the valid UTF-8 sequence starting at s[i], or 0 when the bytes there are not one
// (bad lead byte, bad continuation, overlong form, surrogate, > U+10FFFF, or cut short).
size_t utf8_sequence_length(std::string_view s, size_t i);

// Decodes the code point at s[i]; s must hold a valid sequence there (see above).
char32_t utf8_decode_valid(std::string_view s, size_t i, size_t length);

void append_utf8(std::string& out, char32_t code_point);

bool is_valid_utf8(std::string_view s);

// Each maximal ill-formed subsequence becomes one U+FFFD (the Unicode / WHATWG practice, the
// same as TextDecoder in browsers and node, and Python's errors="replace").
std::string replace_invalid_utf8(std::string_view s);

// Bytes at the end of s that begin a UTF-8 character still missing continuation bytes;
// 0 when s ends on a character boundary or in bytes that can never become valid.
size_t incomplete_utf8_tail(std::string_view s);

}  // namespace strata
