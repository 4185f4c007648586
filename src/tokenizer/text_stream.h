// Generated ids turned into text while they arrive. An id the tokenizer does not know (OPT's
// embedding has padding rows past the vocabulary) adds no text.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace strata {

// Emits text as tokens come, never half of a multi-byte UTF-8 character: bytes that begin a
// character still missing its continuation bytes are held back until they arrive. Ill-formed
// bytes become U+FFFD, so the pieces joined equal replace_invalid_utf8 of the whole decode. The
// first token of a text is written as Tokenizer::first_token_bytes (a SentencePiece-style text
// drops its leading ' '); a stream that `continues` a prompt with text keeps it, as a
// completion's text does ("Once upon a time" + ", there was").
class TextStream {
 public:
  explicit TextStream(const Tokenizer& tokenizer, bool skip_special = true, bool continues = false)
      : tokenizer_(&tokenizer), skip_special_(skip_special), started_(continues) {}

  // The text that became complete with `id` (often empty, or more than one character).
  std::string push(int32_t id);
  // All of `ids` at once, finished.
  static std::string text_of(const Tokenizer& tokenizer, std::span<const int32_t> ids,
                             bool continues = false);
  // Whether a prompt of these ids has text (a token that is not special) for a stream to continue.
  static bool has_text(const Tokenizer& tokenizer, std::span<const int32_t> prompt);
  // What is still held back, as U+FFFD; call at the end of the sequence.
  std::string finish();

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_;
  bool started_ = false;  // a token has added bytes
  std::string pending_;
};

// Watches one sequence's generated text for stop strings. Specials (e.g. </s>) are not text.
// On a stop, text() is everything before the first stop string, and kept_ids() is the shortest
// prefix of the ids whose text covers it: ids lying wholly in the stop string or after it are
// dropped, an id that straddles its start stays.
class StopWatcher {
 public:
  StopWatcher(const Tokenizer& tokenizer, const std::vector<std::string>& stops,
              bool continues = false)
      : tokenizer_(&tokenizer), stops_(&stops), started_(continues) {}

  // Adds the next id; true once the text holds a stop string.
  bool push(int32_t id);
  bool stopped() const { return cut_ != std::string::npos; }
  // The text so far (cut before the stop when stopped), valid UTF-8.
  std::string text() const;
  size_t kept_ids() const;

 private:
  const Tokenizer* tokenizer_;
  const std::vector<std::string>* stops_;
  std::string bytes_;
  bool started_ = false;
  std::vector<size_t> ends_;  // bytes_.size() after each id
  size_t cut_ = std::string::npos;
};

}  // namespace strata
