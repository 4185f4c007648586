// Tokenizers read from a model directory, behind one class:
// - Hugging Face tokenizer.json with a BPE model: byte-level (GPT-2, OPT, Llama 3, Qwen2) or
//   SentencePiece-style over characters with <0xHH> byte fallback (Llama 2, Mistral); also
//   vocab.json + merges.txt (GPT-2, OPT).
// - llama2.c's tokenizer-llama2c.bin (scored pieces, merged as llama2.c's run.c merges them).
//
// Behaviour worth knowing:
// - The files decide everything model-specific: ids (OPT renumbers GPT-2's tokens), the tokens
//   put around every text (OPT: `</s>` first; Llama: `<s>`; GPT-2: none), add_prefix_space.
// - Added and special tokens (`</s>`, `<|endoftext|>`, ...) written literally in the text are
//   encoded as those tokens, as Hugging Face does (not for llama2.c files, as run.c does not).
// - Invalid UTF-8 in the text is not an error: each maximal ill-formed subsequence is encoded as
//   U+FFFD (see replace_invalid_utf8), so the same bytes always give the same ids.
// - Decoding follows the files' decoder: SentencePiece-style tokenizers drop the space that
//   starts the text (Hugging Face's Strip / Metaspace decoders), llama2.c the space of the
//   token that follows BOS (run.c).
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
  bool lstrip = false;      // the match takes the white space before it
  bool rstrip = false;      // and after it
  bool normalized = false;  // matched in the normalised text, not the raw text
};

// tokenizer.json's normalizer, one step of its Sequence.
struct NormalizerStep {
  enum class Kind { kNfc, kNfkc, kNfd, kNfkd, kPrepend, kReplace };
  Kind kind = Kind::kNfc;
  std::string from;  // kReplace: the literal replaced
  std::string to;    // kReplace: its replacement; kPrepend: the text put first
};

// tokenizer.json's pre_tokenizer, one step of its Sequence.
struct PreTokenizerStep {
  enum class Kind { kSplit, kByteLevel, kMetaspace };
  enum class Prepend { kAlways, kFirst, kNever };
  Kind kind = Kind::kByteLevel;
  std::string pattern;            // kSplit: an ICU regex (see RegexSplitter)
  bool literal = false;           // kSplit: the pattern is a plain string
  bool add_prefix_space = false;  // kByteLevel
  bool use_regex = true;          // kByteLevel: split by GPT-2's pattern
  std::string replacement;        // kMetaspace: stands for ' ' (U+2581)
  Prepend prepend = Prepend::kAlways;
  bool split = true;  // kMetaspace: a piece starts at each replacement
};

// How ids become text again.
struct DecoderSpec {
  enum class Strip { kNone, kFirstSpace, kMetaspaceFirst, kAfterBos };
  bool byte_level = true;      // token texts are GPT-2's byte-to-unicode form
  std::string metaspace;       // non-empty: this text in a token stands for ' '
  bool byte_fallback = false;  // <0xHH> tokens are the byte HH
  // kFirstSpace: one ' ' that starts the text goes (Strip after Fuse); kMetaspaceFirst: the first
  // token loses its metaspaces; kAfterBos: a ' ' starting the token after bos_id goes (run.c).
  Strip strip = Strip::kNone;
  int32_t bos_id = -1;
};

// What the files say, before any tables are built (see tokenizer_files.cpp).
struct TokenizerSpec {
  std::unordered_map<std::string, int32_t> vocab;  // token text (as the files write it) -> id
  std::vector<MergeRule> merges;                   // rank order
  std::vector<AddedToken> added;
  std::vector<int32_t> prefix_ids;  // put before every encoded text
  std::vector<int32_t> suffix_ids;  // and after it
  // GPT-2's ByteLevel pre-tokenizer, used when pre_tokenizers is unset.
  bool add_prefix_space = false;
  bool use_regex = true;  // false: the whole text is one piece
  std::vector<NormalizerStep> normalizers;
  std::optional<std::vector<PreTokenizerStep>> pre_tokenizers;
  // The BPE model's options (tokenizer.json names).
  bool byte_fallback = false;  // a character not in the vocabulary becomes its <0xHH> tokens
  bool ignore_merges = false;  // a piece that is a token is that token, unmerged
  bool fuse_unk = false;       // unknown characters in a row are one unk
  int32_t unk_id = -1;
  DecoderSpec decoder;
  // llama2.c: its pieces by id, with their scores; non-empty replaces vocab and merges.
  std::vector<std::string> scored_pieces;
  std::vector<float> scores;
  std::vector<int32_t> special_ids;  // special, yet never matched in text
};

// Whether the model reads bytes (a ByteLevel pre-tokenizer, or GPT-2's default) or characters.
bool is_byte_level(const TokenizerSpec& spec);

// Reads tokenizer.json, or vocab.json + merges.txt, plus tokenizer_config.json and
// special_tokens_map.json; else tokenizer-llama2c.bin. nullopt when `dir` has none of these.
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
  // The bytes one token stands for (a SentencePiece '▁' as ' ').
  const std::string& token_bytes(int32_t id) const;
  bool is_special(int32_t id) const;
  bool contains(int32_t id) const;
  // The bytes of `id` as the first token of a text: SentencePiece-style decoders drop the ' '
  // it starts with. TextStream starts every stream so (for llama2.c too: a stream follows BOS).
  std::string first_token_bytes(int32_t id) const;

  // Largest id + 1.
  int32_t size() const { return static_cast<int32_t>(bytes_.size()); }
  const std::vector<int32_t>& prefix_ids() const { return prefix_ids_; }
  const std::vector<int32_t>& suffix_ids() const { return suffix_ids_; }

 private:
  struct Encoder;  // the model with its caches and the lock that guards them
  void set_vocab(const TokenizerSpec& spec);
  void encode_text(std::string_view text, std::vector<int32_t>& out) const;
  void encode_segment(std::string_view segment, bool at_start, std::vector<int32_t>& out) const;

  std::vector<std::string> bytes_;                          // by id
  std::vector<uint8_t> kind_;                               // by id: 0 unused, 1 normal, 2 special
  std::vector<AddedToken> raw_tokens_, normalized_tokens_;  // recognised in the text
  std::vector<int32_t> prefix_ids_, suffix_ids_;
  DecoderSpec decoder_;
  std::shared_ptr<Encoder> encoder_;
};

}  // namespace strata
