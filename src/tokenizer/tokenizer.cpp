#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <mutex>

#include "core/error.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/utf8.h"

namespace strata {

struct Tokenizer::Encoder {
  Encoder(const std::array<int32_t, 256>& byte_ids, const std::vector<MergeRule>& merges)
      : bpe(byte_ids, merges) {}
  std::mutex mutex;
  BytePairEncoder bpe;
  std::vector<std::string_view> pieces;  // scratch
};

namespace {

constexpr uint8_t kUnused = 0, kNormal = 1, kSpecial = 2;

// A vocab.json token text back to the bytes it stands for; a character outside the byte map
// (only in hand-made vocabularies) stands for its own UTF-8.
std::string token_text_to_bytes(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size();) {
    const size_t length = std::max<size_t>(utf8_sequence_length(text, i), 1);
    const char32_t c = utf8_decode_valid(text, i, length);
    const int b = unicode_to_byte(c);
    if (b >= 0) {
      out += static_cast<char>(b);
    } else {
      out.append(text.substr(i, length));
    }
    i += length;
  }
  return out;
}

}  // namespace

Tokenizer::Tokenizer(const TokenizerSpec& spec)
    : prefix_ids_(spec.prefix_ids),
      suffix_ids_(spec.suffix_ids),
      add_prefix_space_(spec.add_prefix_space),
      use_regex_(spec.use_regex) {
  int32_t size = 0;
  for (const auto& [text, id] : spec.vocab) size = std::max(size, id + 1);
  for (const auto& t : spec.added) size = std::max(size, t.id + 1);
  bytes_.resize(static_cast<size_t>(size));
  kind_.assign(static_cast<size_t>(size), kUnused);
  for (const auto& [text, id] : spec.vocab) {
    STRATA_INPUT_CHECK(id >= 0, "token '", text, "' has a negative id");
    bytes_[id] = token_text_to_bytes(text);
    kind_[id] = kNormal;
  }
  for (const auto& t : spec.added) {
    STRATA_INPUT_CHECK(t.id >= 0, "added token '", t.content, "' has a negative id");
    STRATA_INPUT_CHECK(!t.content.empty(), "added token ", t.id, " is empty");
    bytes_[t.id] = t.content;
    kind_[t.id] = t.special ? kSpecial : kNormal;
    split_tokens_.push_back(t);
  }
  // At one position the longest added token wins ("<|endoftext|>" over "<|").
  std::stable_sort(split_tokens_.begin(), split_tokens_.end(), [](const auto& a, const auto& b) {
    return a.content.size() > b.content.size();
  });
  for (int32_t id : prefix_ids_)
    STRATA_INPUT_CHECK(contains(id), "prefix token ", id, " is unknown");
  for (int32_t id : suffix_ids_)
    STRATA_INPUT_CHECK(contains(id), "suffix token ", id, " is unknown");
  std::array<int32_t, 256> byte_ids;
  for (int b = 0; b < 256; ++b) {
    const auto it = spec.vocab.find(bytes_to_token_text(std::string(1, static_cast<char>(b))));
    byte_ids[b] = it == spec.vocab.end() ? -1 : it->second;
  }
  encoder_ = std::make_shared<Encoder>(byte_ids, spec.merges);
}

std::optional<Tokenizer> Tokenizer::load(const std::string& dir) {
  auto spec = read_tokenizer_spec(dir);
  if (!spec) return std::nullopt;
  return Tokenizer(*spec);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids = prefix_ids_;
  encode_text(text, ids);
  ids.insert(ids.end(), suffix_ids_.begin(), suffix_ids_.end());
  return ids;
}

std::vector<int32_t> Tokenizer::encode_plain(std::string_view text) const {
  std::vector<int32_t> ids;
  encode_text(text, ids);
  return ids;
}

void Tokenizer::encode_text(std::string_view raw, std::vector<int32_t>& out) const {
  std::string replaced;
  if (!is_valid_utf8(raw)) replaced = replace_invalid_utf8(raw);
  const std::string_view text = replaced.empty() ? raw : std::string_view(replaced);
  std::lock_guard lock(encoder_->mutex);
  auto& pieces = encoder_->pieces;
  std::string with_space;
  // Each stretch between added tokens is pre-tokenised on its own, as Hugging Face does.
  const auto encode_segment = [&](std::string_view segment) {
    if (segment.empty()) return;
    if (add_prefix_space_ && segment.front() != ' ') {
      with_space = " ";
      with_space.append(segment);
      segment = with_space;
    }
    pieces.clear();
    if (use_regex_) {
      split_gpt2(segment, pieces);
    } else {
      pieces.push_back(segment);
    }
    for (std::string_view piece : pieces) encoder_->bpe.encode_piece(piece, out);
  };
  // Next occurrence of each added token, refreshed only once passed: O(text x added tokens).
  std::vector<size_t> next;
  for (const auto& t : split_tokens_) next.push_back(text.find(t.content));
  size_t pos = 0;
  while (pos < text.size()) {
    size_t best_at = std::string_view::npos, best = 0;
    for (size_t k = 0; k < split_tokens_.size(); ++k) {
      if (next[k] != std::string_view::npos && next[k] < pos) {
        next[k] = text.find(split_tokens_[k].content, pos);
      }
      if (next[k] < best_at) {
        best_at = next[k];
        best = k;
      }
    }
    if (best_at == std::string_view::npos) break;
    encode_segment(text.substr(pos, best_at - pos));
    out.push_back(split_tokens_[best].id);
    pos = best_at + split_tokens_[best].content.size();
  }
  if (pos < text.size()) encode_segment(text.substr(pos));
}

bool Tokenizer::contains(int32_t id) const {
  return id >= 0 && id < size() && kind_[id] != kUnused;
}

bool Tokenizer::is_special(int32_t id) const {
  return contains(id) && kind_[id] == kSpecial;
}

const std::string& Tokenizer::token_bytes(int32_t id) const {
  STRATA_INPUT_CHECK(contains(id), "token id ", id, " is not in the tokenizer's vocabulary");
  return bytes_[id];
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string out;
  for (int32_t id : ids) {
    const std::string& bytes = token_bytes(id);
    if (!(skip_special && kind_[id] == kSpecial)) out += bytes;
  }
  return out;
}

}  // namespace strata
