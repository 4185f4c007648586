// Byte-level byte-pair encoding as GPT-2 defines it: every byte is first a symbol of its own,
// then the adjacent pair with the lowest merge rank is merged, repeatedly, until no pair has a
// rank. Works on token ids, so any vocabulary numbering (GPT-2's, OPT's) is the same code.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
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

struct MergeRule {
  int32_t left = 0;
  int32_t right = 0;
  int32_t merged = 0;
};

class BytePairEncoder {
 public:
  // byte_ids[b]: the id of the one-byte token for byte b, or -1 when the vocabulary lacks it.
  // merges: in rank order (rank = index).
  BytePairEncoder(const std::array<int32_t, 256>& byte_ids, const std::vector<MergeRule>& merges);

  // Appends the ids of one pre-tokenised piece. Not thread-safe (the cache); callers lock.
  void encode_piece(std::string_view bytes, std::vector<int32_t>& out);

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
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  static uint64_t pair_key(int32_t left, int32_t right) {
    return static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32 | static_cast<uint32_t>(right);
  }
  const Rank* find_rank(int32_t left, int32_t right) const;
  void merge(std::string_view bytes, std::vector<int32_t>& out);

  std::array<int32_t, 256> byte_ids_;
  std::unordered_map<uint64_t, Rank> ranks_;
  std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache_;
  std::vector<Symbol> symbols_;  // scratch, reused between pieces
};

}  // namespace strata
