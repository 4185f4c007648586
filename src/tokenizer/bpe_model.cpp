#include "tokenizer/bpe_model.h"

#include <cstdio>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace strata {

std::string byte_fallback_token(uint8_t byte) {
  char text[8];
  std::snprintf(text, sizeof text, "<0x%02X>", byte);
  return text;
}

int byte_of_fallback_token(std::string_view text) {
  if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return -1;
  int value = 0;
  for (const char c : text.substr(3, 2)) {
    const int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (digit < 0) return -1;
    value = value * 16 + digit;
  }
  return value;
}

BpeModel::BpeModel(const TokenizerSpec& spec, bool byte_level)
    : byte_level_(byte_level),
      byte_fallback_(spec.byte_fallback),
      ignore_merges_(spec.ignore_merges),
      fuse_unk_(spec.fuse_unk),
      unk_id_(spec.unk_id),
      bpe_(spec.merges) {
  piece_ids_.reserve(spec.vocab.size());
  for (const auto& [text, id] : spec.vocab) {
    piece_ids_.emplace(byte_level ? token_text_to_bytes(text) : text, id);
  }
  for (int b = 0; b < 256; ++b) {
    const auto key = static_cast<char>(b);
    const auto it = byte_level ? piece_ids_.find(std::string_view(&key, 1))
                               : piece_ids_.find(byte_fallback_token(static_cast<uint8_t>(b)));
    byte_ids_[b] = it == piece_ids_.end() ? -1 : it->second;
  }
}

void BpeModel::encode_piece(std::string_view piece, std::vector<int32_t>& out) {
  if (piece.empty()) return;
  if (ignore_merges_) {
    const auto it = piece_ids_.find(piece);
    if (it != piece_ids_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  if (const auto* cached = cache_.find(piece)) {
    out.insert(out.end(), cached->begin(), cached->end());
    return;
  }
  first_symbols(piece, scratch_);
  bpe_.merge(scratch_);
  cache_.put(piece, scratch_);
  out.insert(out.end(), scratch_.begin(), scratch_.end());
}

void BpeModel::first_symbols(std::string_view piece, std::vector<int32_t>& ids) const {
  ids.clear();
  if (!byte_level_) return character_symbols(piece, ids);
  for (char c : piece) {
    const auto b = static_cast<uint8_t>(c);
    STRATA_INPUT_CHECK(byte_ids_[b] >= 0, "the vocabulary has no token for byte ", int{b});
    ids.push_back(byte_ids_[b]);
  }
}

void BpeModel::character_symbols(std::string_view piece, std::vector<int32_t>& ids) const {
  bool unk_open = false;  // the last symbol is an unk that the next may join
  for (size_t i = 0; i < piece.size();) {
    const size_t length = std::max<size_t>(utf8_sequence_length(piece, i), 1);
    const std::string_view c = piece.substr(i, length);
    i += length;
    if (const auto it = piece_ids_.find(c); it != piece_ids_.end()) {
      ids.push_back(it->second);
      unk_open = false;
      continue;
    }
    bool all_bytes = byte_fallback_;
    for (char b : c) all_bytes = all_bytes && byte_ids_[static_cast<uint8_t>(b)] >= 0;
    if (all_bytes) {
      for (char b : c) ids.push_back(byte_ids_[static_cast<uint8_t>(b)]);
      unk_open = false;
      continue;
    }
    // As Hugging Face: an unknown character without an unk token is dropped.
    if (unk_id_ >= 0 && !(fuse_unk_ && unk_open)) ids.push_back(unk_id_);
    unk_open = unk_id_ >= 0;
  }
}

}  // namespace strata
