// The byte-level BPE tokenizer of GPT-2 and OPT, read from a Hugging Face model directory.
//
// Behaviour worth knowing:
// - The files decide everything model-specific: ids (OPT renumbers GPT-2's tokens), the tokens
//   put around every text (OPT: `</s>` first; GPT-2: none), add_prefix_space.
// - Added and special tokens (`</s>`, `<|endoftext|>`, ...) written literally in the text are
//   encoded as those tokens, as Hugging Face does.
// - Invalid UTF-8 in the text is not an error: each maximal ill-formed subsequence is encoded as
//   U+FFFD (see replace_invalid_utf8), so the same bytes always give the same ids.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/bpe.h"

namespace strata {

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool special = true;
};

// What the files say, before any tables are built (see tokenizer_files.cpp).
struct TokenizerSpec {
  std::unordered_map<std::string, int32_t> vocab;  // token text (byte-to-unicode form) -> id
  std::vector<MergeRule> merges;                   // rank order
  std::vector<AddedToken> added;
  std::vector<int32_t> prefix_ids;  // put before every encoded text
  std::vector<int32_t> suffix_ids;  // and after it
  bool add_prefix_space = false;
  bool use_regex = true;  // false: the whole text is one piece
};

// Reads tokenizer.json, or vocab.json + merges.txt, plus tokenizer_config.json and
// special_tokens_map.json. nullopt when `dir` has neither tokenizer.json nor vocab.json.
std::optional<TokenizerSpec> read_tokenizer_spec(const std::string& dir);

class Tokenizer {
 public:
  explicit Tokenizer(const TokenizerSpec& spec);

  // nullopt when `dir` holds no tokenizer files; an input error when they are malformed.
  static std::optional<Tokenizer> load(const std::string& dir);

  // Text to ids, with the prefix and suffix tokens the files ask for.
  std::vector<int32_t> encode(std::string_view text) const;
  // Text to ids, nothing added around them.
  std::vector<int32_t> encode_plain(std::string_view text) const;

  // Ids to bytes. The result may end inside (or hold invalid) UTF-8; see TextStream.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;
  // The bytes one token stands for.
  const std::string& token_bytes(int32_t id) const;
  bool is_special(int32_t id) const;
  bool contains(int32_t id) const;

  // Largest id + 1.
  int32_t size() const { return static_cast<int32_t>(bytes_.size()); }
  const std::vector<int32_t>& prefix_ids() const { return prefix_ids_; }
  const std::vector<int32_t>& suffix_ids() const { return suffix_ids_; }

 private:
  struct Encoder;  // the BPE with its cache and the lock that guards it
  void encode_text(std::string_view text, std::vector<int32_t>& out) const;

  std::vector<std::string> bytes_;        // by id
  std::vector<uint8_t> kind_;             // by id: 0 unused, 1 normal, 2 special
  std::vector<AddedToken> split_tokens_;  // recognised in the text, longest first
  std::vector<int32_t> prefix_ids_, suffix_ids_;
  bool add_prefix_space_ = false;
  bool use_regex_ = true;
  std::shared_ptr<Encoder> encoder_;
};

}  // namespace strata
