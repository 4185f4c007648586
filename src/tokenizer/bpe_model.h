// Hugging Face's BPE model over one pre-tokenised piece: the piece's first symbols (bytes for a
// byte-level tokenizer, else characters looked up in the vocabulary, with <0xHH> byte fallback
// or unk for the missing ones), then merges by rank.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/bpe.h"
#include "tokenizer/tokenizer.h"

namespace strata {

// "<0xHH>", the token SentencePiece-style vocabularies keep for a byte.
std::string byte_fallback_token(uint8_t byte);
// The byte such a token stands for, or -1 for any other text.
int byte_of_fallback_token(std::string_view text);

class BpeModel {
 public:
  // byte_level: pieces are raw bytes and the vocabulary is in GPT-2's byte-to-unicode form.
  BpeModel(const TokenizerSpec& spec, bool byte_level);

  // Appends the ids of one piece. Not thread-safe (the cache); callers lock.
  void encode_piece(std::string_view piece, std::vector<int32_t>& out);

 private:
  void first_symbols(std::string_view piece, std::vector<int32_t>& ids) const;
  void character_symbols(std::string_view piece, std::vector<int32_t>& ids) const;

  bool byte_level_;
  bool byte_fallback_, ignore_merges_, fuse_unk_;
  int32_t unk_id_;
  std::array<int32_t, 256> byte_ids_;  // byte-level: the token of each byte; else <0xHH>; or -1
  StringMap<int32_t> piece_ids_;       // a whole piece (raw bytes when byte-level) -> its token
  BytePairEncoder bpe_;
  PieceCache cache_;
  std::vector<int32_t> scratch_;
};

}  // namespace strata
