// llama2.c's tokenizer file (tokenizer-llama2c.bin): int32 max_token_length, then per token a
// float32 score, an int32 byte length and the bytes. Ids 0, 1, 2 are unk, BOS and EOS; 3..258
// are the bytes <0x00>..<0xFF>.
#pragma once

#include <cstdint>
#include <istream>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/bpe.h"
#include "tokenizer/tokenizer.h"

namespace strata {

inline constexpr const char* kLlama2cTokenizerFile = "tokenizer-llama2c.bin";

// The spec of a llama2.c tokenizer file; an input error naming `path` when it is malformed.
TokenizerSpec read_llama2c_spec(const std::string& path);
// The same from `in` (the file's bytes), `path` naming it in errors.
TokenizerSpec read_llama2c_spec(std::istream& in, const std::string& path);

// Encodes as run.c does: " " first (SentencePiece's dummy prefix), each UTF-8 character as its
// piece or else its bytes (id byte + 3), then, while any adjacent pair's joined text is a piece,
// the pair whose piece scores best is merged (the leftmost on a tie).
class ScoredPieceEncoder {
 public:
  explicit ScoredPieceEncoder(const TokenizerSpec& spec);

  // Appends the ids of `text` (valid UTF-8). Not thread-safe (scratch); callers lock.
  void encode(std::string_view text, std::vector<int32_t>& out);

 private:
  int32_t find(std::string_view piece) const;

  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  StringMap<int32_t> ids_;  // piece -> its lowest id
  std::vector<MergeSymbol> symbols_;
  std::string joined_;  // scratch
  PairMerge found_{};
};

}  // namespace strata
