// Byte-pair encoding as GPT-2 defines it: a piece starts as one symbol per byte (byte-level) or
// per character (SentencePiece-style), then the adjacent pair with the lowest merge rank is merged,
// repeatedly, until no pair has a rank. Works on token ids, so any vocabulary numbering (GPT-2's,
// OPT's, Llama's) is the same code.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace strata {

// GPT-2's reversible map from bytes to printable characters, used for the token texts in
// vocab.json and merges.txt.
char32_t byte_to_unicode(uint8_t byte);
// The byte a character stands for, or -1 when it is not in the map.
int unicode_to_byte(char32_t code_point);
// Raw bytes -> the token text that vocab.json uses for them.
std::string bytes_to_token_text(std::string_view bytes);
// The reverse; a character outside the map (only in hand-made vocabularies) stands for its own
// UTF-8.
std::string token_text_to_bytes(std::string_view text);

struct MergeRule {
  int32_t left = 0;
  int32_t right = 0;
  int32_t merged = 0;
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <typename T>
using StringMap = std::unordered_map<std::string, T, StringHash, std::equal_to<>>;

class BytePairEncoder {
 public:
  // merges: in rank order (rank = index).
  explicit BytePairEncoder(const std::vector<MergeRule>& merges);

  // Merges a piece's symbols (ids) in place. Not thread-safe (scratch); callers lock.
  void merge(std::vector<int32_t>& ids);

 private:
  struct Rank {
    int32_t rank;
    int32_t merged;
  };
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
  };

  static uint64_t pair_key(int32_t left, int32_t right) {
    return static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32 | static_cast<uint32_t>(right);
  }
  const Rank* find_rank(int32_t left, int32_t right) const;

  std::unordered_map<uint64_t, Rank> ranks_;
  std::vector<Symbol> symbols_;  // scratch, reused between pieces
};

// Pieces already encoded, by their bytes. Long pieces are not kept, and the cache is emptied when
// it grows too large, which bounds its memory.
class PieceCache {
 public:
  const std::vector<int32_t>* find(std::string_view piece) const;
  void put(std::string_view piece, std::span<const int32_t> ids);

 private:
  StringMap<std::vector<int32_t>> map_;
};

}  // namespace strata
