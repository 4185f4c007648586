#include "tokenizer/llama2c.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace strata {
namespace {

constexpr int32_t kUnkId = 0, kBosId = 1, kEosId = 2, kFirstByteId = 3;

template <typename T>
bool read_value(std::istream& in, T& value) {
  return static_cast<bool>(in.read(reinterpret_cast<char*>(&value), sizeof value));
}

}  // namespace

TokenizerSpec read_llama2c_spec(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  STRATA_INPUT_CHECK(in.good(), path, ": cannot open: ", std::strerror(errno));
  return read_llama2c_spec(in, path);
}

TokenizerSpec read_llama2c_spec(std::istream& in, const std::string& path) {
  // The bytes there are, so a length past them fails before its string is allocated.
  const std::streampos start = in.tellg();
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg() - start;
  in.seekg(start);
  STRATA_INPUT_CHECK(start >= 0 && size >= 0 && in.good(), path, ": cannot seek in the file");
  int32_t max_length = 0;
  STRATA_INPUT_CHECK(read_value(in, max_length) && max_length > 0, path,
                     ": no valid max_token_length at the start");
  TokenizerSpec spec;
  for (int32_t id = 0; in.peek() != std::char_traits<char>::eof(); ++id) {
    float score = 0;
    int32_t length = 0;
    STRATA_INPUT_CHECK(read_value(in, score) && read_value(in, length), path, ": token ", id,
                       " is cut short");
    STRATA_INPUT_CHECK(length >= 0 && length <= max_length, path, ": token ", id, " has length ",
                       length, ", outside 0..max_token_length ", max_length);
    STRATA_INPUT_CHECK(length <= size - (in.tellg() - start), path, ": token ", id,
                       " is cut short (its ", length, " bytes run past the end of the file)");
    std::string piece(static_cast<size_t>(length), '\0');
    STRATA_INPUT_CHECK(in.read(piece.data(), length), path, ": token ", id, " is cut short");
    spec.scored_pieces.push_back(std::move(piece));
    spec.scores.push_back(score);
  }
  const auto& pieces = spec.scored_pieces;
  STRATA_INPUT_CHECK(pieces.size() >= kFirstByteId + 256, path, ": has ", pieces.size(),
                     " tokens; llama2.c needs unk, BOS, EOS and the 256 byte tokens");
  STRATA_INPUT_CHECK(std::find(pieces.begin(), pieces.end(), " ") != pieces.end(), path,
                     ": has no \" \" piece, which llama2.c puts before every text");
  spec.special_ids = {kUnkId, kBosId, kEosId};
  spec.prefix_ids = {kBosId};
  spec.byte_fallback = true;
  spec.decoder.byte_level = false;
  spec.decoder.byte_fallback = true;
  spec.decoder.strip = DecoderSpec::Strip::kAfterBos;
  spec.decoder.bos_id = kBosId;
  return spec;
}

ScoredPieceEncoder::ScoredPieceEncoder(const TokenizerSpec& spec)
    : pieces_(spec.scored_pieces), scores_(spec.scores) {
  for (size_t id = 0; id < pieces_.size(); ++id) {
    ids_.try_emplace(pieces_[id], static_cast<int32_t>(id));
  }
}

int32_t ScoredPieceEncoder::find(std::string_view piece) const {
  const auto it = ids_.find(piece);
  return it == ids_.end() ? -1 : it->second;
}

void ScoredPieceEncoder::encode(std::string_view text, std::vector<int32_t>& out) {
  if (text.empty()) return;
  auto& sym = symbols_;
  sym.clear();
  const auto add = [&](int32_t id) {
    const auto n = static_cast<int32_t>(sym.size());
    sym.push_back({id, n - 1, -1});
  };
  add(find(" "));
  for (size_t i = 0; i < text.size();) {
    const size_t length = std::max<size_t>(utf8_sequence_length(text, i), 1);
    const int32_t id = find(text.substr(i, length));
    if (id >= 0) {
      add(id);
    } else {
      for (size_t k = 0; k < length; ++k) add(kFirstByteId + static_cast<uint8_t>(text[i + k]));
    }
    i += length;
  }
  for (size_t i = 0; i + 1 < sym.size(); ++i) sym[i].next = static_cast<int32_t>(i + 1);
  // A pair merges when its joined text is a piece, the best-scoring first.
  merge_pairs(sym, [this](int32_t left, int32_t right) -> const PairMerge* {
    joined_ = pieces_[static_cast<size_t>(left)];
    joined_ += pieces_[static_cast<size_t>(right)];
    const int32_t merged = find(joined_);
    if (merged < 0) return nullptr;
    found_ = {scores_[static_cast<size_t>(merged)], merged};
    return &found_;
  });
  for (int32_t i = 0; i >= 0; i = sym[i].next) out.push_back(sym[i].id);
}

}  // namespace strata
