#include "tokenizer/text_stream.h"

#include <algorithm>

#include "tokenizer/utf8.h"

namespace strata {
namespace {

// Appends what `id` adds to a stream's bytes; the first token is written as decode writes it.
void append_token(const Tokenizer& t, int32_t id, bool skip_special, bool& started,
                  std::string& bytes) {
  if (!t.contains(id) || (skip_special && t.is_special(id))) return;
  bytes += started ? t.token_bytes(id) : t.first_token_bytes(id);
  started = true;
}

}  // namespace

std::string TextStream::push(int32_t id) {
  append_token(*tokenizer_, id, skip_special_, started_, pending_);
  const size_t complete = pending_.size() - incomplete_utf8_tail(pending_);
  std::string out = replace_invalid_utf8(std::string_view(pending_).substr(0, complete));
  pending_.erase(0, complete);
  return out;
}

std::string TextStream::text_of(const Tokenizer& tokenizer, std::span<const int32_t> ids,
                                bool continues) {
  TextStream stream(tokenizer, true, continues);
  std::string text;
  for (int32_t id : ids) text += stream.push(id);
  return text + stream.finish();
}

bool TextStream::has_text(const Tokenizer& tokenizer, std::span<const int32_t> prompt) {
  return std::any_of(prompt.begin(), prompt.end(), [&](int32_t id) {
    return tokenizer.contains(id) && !tokenizer.is_special(id);
  });
}

std::string TextStream::finish() {
  std::string out = replace_invalid_utf8(pending_);
  pending_.clear();
  return out;
}

bool StopWatcher::push(int32_t id) {
  if (stopped()) return true;
  const size_t old_size = bytes_.size();
  append_token(*tokenizer_, id, true, started_, bytes_);
  ends_.push_back(bytes_.size());
  // Nothing matched before, so a match must end in the new bytes.
  for (const std::string& stop : *stops_) {
    if (stop.empty()) continue;
    const size_t from = old_size + 1 > stop.size() ? old_size + 1 - stop.size() : 0;
    const size_t at = bytes_.find(stop, from);
    if (at != std::string::npos) cut_ = std::min(cut_, at);
  }
  return stopped();
}

std::string StopWatcher::text() const {
  return replace_invalid_utf8(std::string_view(bytes_).substr(0, std::min(cut_, bytes_.size())));
}

size_t StopWatcher::kept_ids() const {
  if (!stopped()) return ends_.size();
  size_t kept = 0;
  while (kept < ends_.size() && (kept == 0 ? 0 : ends_[kept - 1]) < cut_) ++kept;
  return kept;
}

}  // namespace strata
