// Byte-pair encoding as GPT-2 defines it: a piece starts as one symbol per byte (byte-level) or
// per character (SentencePiece-style), then the adjacent pair with the lowest merge rank is merged,
// repeatedly, until no pair has a rank. Works on token ids, so any vocabulary numbering (GPT-2's,
// OPT's, Llama's) is the same code.
#pragma once

#include <algorithm>
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

// A piece's symbols as a linked list over token ids, merged in place.
struct MergeSymbol {
  int32_t id;
  int32_t prev;
  int32_t next;  // -1 at the end
};
// What merging one adjacent pair would give: its priority (higher merges first) and the id.
struct PairMerge {
  double priority;
  int32_t merged;
};

// The merge loop both BPE variants share: while any adjacent pair has a merge
// (best(left_id, right_id) returns a PairMerge*, null for none), the one of highest priority
// is merged, the leftmost on a tie. sym must be linked; the result is read from index 0.
template <class Best>
void merge_pairs(std::vector<MergeSymbol>& sym, const Best& best) {
  struct Candidate {
    double priority;
    int32_t left;  // index of the left symbol
    int32_t left_id, right_id, merged;
    bool operator<(const Candidate& o) const {  // std heaps keep the largest on top
      return priority != o.priority ? priority < o.priority : left > o.left;
    }
  };
  std::vector<Candidate> heap;
  const auto push = [&](int32_t left) {
    const int32_t right = sym[left].next;
    if (const PairMerge* m = best(sym[left].id, sym[right].id)) {
      heap.push_back({m->priority, left, sym[left].id, sym[right].id, m->merged});
      std::push_heap(heap.begin(), heap.end());
    }
  };
  for (int32_t i = 0; i >= 0 && sym[i].next >= 0; i = sym[i].next) push(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    const Candidate c = heap.back();
    heap.pop_back();
    MergeSymbol& left = sym[c.left];
    // Stale entries: either side was merged since the pair was queued.
    if (left.id != c.left_id || left.next < 0 || sym[left.next].id != c.right_id) continue;
    const int32_t right = left.next;
    left.id = c.merged;
    left.next = sym[right].next;
    sym[right].id = -1;
    if (left.next >= 0) sym[left.next].prev = c.left;
    if (left.prev >= 0) push(left.prev);
    if (left.next >= 0) push(c.left);
  }
}

class BytePairEncoder {
 public:
  // merges: in rank order (rank = index).
  explicit BytePairEncoder(const std::vector<MergeRule>& merges);

  // Merges a piece's symbols (ids) in place. Not thread-safe (scratch); callers lock.
  void merge(std::vector<int32_t>& ids);

 private:
  static uint64_t pair_key(int32_t left, int32_t right) {
    return static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32 | static_cast<uint32_t>(right);
  }

  std::unordered_map<uint64_t, PairMerge> ranks_;  // priority -rank: the lowest rank first
  std::vector<MergeSymbol> symbols_;               // scratch, reused between pieces
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
