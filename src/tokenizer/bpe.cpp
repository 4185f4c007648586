#include "tokenizer/bpe.h"

#include <algorithm>

#include "tokenizer/utf8.h"

namespace strata {
namespace {

// Bytes that are printable in Latin-1 stand for themselves; the other 68 are moved to
// U+0100 and up, in byte order, so that no token text holds spaces or control characters.
bool is_printable_byte(int b) {
  return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

struct ByteMap {
  std::array<char32_t, 256> to_unicode{};
  ByteMap() {
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) to_unicode[b] = is_printable_byte(b) ? b : next++;
  }
};

const ByteMap& byte_map() {
  static const ByteMap map;
  return map;
}

// A piece this long or longer is not cached: long runs of spaces or digits are rare and large.
constexpr size_t kMaxCachedPieceBytes = 256;
// The cache is emptied when it grows past this many pieces, which bounds its memory.
constexpr size_t kMaxCacheEntries = size_t{1} << 18;

}  // namespace

char32_t byte_to_unicode(uint8_t byte) {
  return byte_map().to_unicode[byte];
}

int unicode_to_byte(char32_t c) {
  if (c < 256 && is_printable_byte(static_cast<int>(c))) return static_cast<int>(c);
  if (c < 256 || c >= 256 + 68) return -1;
  const auto& map = byte_map().to_unicode;
  for (int b = 0; b < 256; ++b) {
    if (map[b] == c) return b;
  }
  return -1;
}

std::string bytes_to_token_text(std::string_view bytes) {
  std::string text;
  for (char b : bytes) append_utf8(text, byte_to_unicode(static_cast<uint8_t>(b)));
  return text;
}

std::string token_text_to_bytes(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size();) {
    const size_t length = std::max<size_t>(utf8_sequence_length(text, i), 1);
    const int b = unicode_to_byte(utf8_decode_valid(text, i, length));
    if (b >= 0) {
      out += static_cast<char>(b);
    } else {
      out.append(text.substr(i, length));
    }
    i += length;
  }
  return out;
}

BytePairEncoder::BytePairEncoder(const std::vector<MergeRule>& merges) {
  ranks_.reserve(merges.size());
  for (size_t r = 0; r < merges.size(); ++r) {
    const MergeRule& m = merges[r];
    // A repeated pair keeps its first (best) rank.
    ranks_.try_emplace(pair_key(m.left, m.right), PairMerge{-static_cast<double>(r), m.merged});
  }
}

void BytePairEncoder::merge(std::vector<int32_t>& ids) {
  if (ids.size() < 2) return;
  auto& sym = symbols_;
  sym.clear();
  const auto n = static_cast<int32_t>(ids.size());
  for (int32_t i = 0; i < n; ++i) sym.push_back({ids[i], i - 1, i + 1 < n ? i + 1 : -1});
  merge_pairs(sym, [this](int32_t left, int32_t right) -> const PairMerge* {
    const auto it = ranks_.find(pair_key(left, right));
    return it == ranks_.end() ? nullptr : &it->second;
  });
  ids.clear();
  for (int32_t i = 0; i >= 0; i = sym[i].next) ids.push_back(sym[i].id);
}

const std::vector<int32_t>* PieceCache::find(std::string_view piece) const {
  if (piece.size() >= kMaxCachedPieceBytes) return nullptr;
  const auto it = map_.find(piece);
  return it == map_.end() ? nullptr : &it->second;
}

void PieceCache::put(std::string_view piece, std::span<const int32_t> ids) {
  if (piece.size() >= kMaxCachedPieceBytes) return;
  if (map_.size() >= kMaxCacheEntries) map_.clear();
  map_.emplace(std::string(piece), std::vector<int32_t>(ids.begin(), ids.end()));
}

}  // namespace strata
