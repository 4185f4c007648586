#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <mutex>

#include "core/error.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/llama2c.h"
#include "tokenizer/normalize.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/utf8.h"

namespace strata {

struct Tokenizer::Encoder {
  explicit Encoder(const TokenizerSpec& spec);
  std::mutex mutex;
  std::vector<NormalizerStep> normalizers;
  std::optional<std::vector<PreTokenizerStep>> steps;     // unset: GPT-2's ByteLevel
  std::vector<std::unique_ptr<RegexSplitter>> splitters;  // by step; null for other kinds
  bool add_prefix_space = false, use_regex = true;
  std::optional<BpeModel> bpe;
  std::optional<ScoredPieceEncoder> scored;
  std::vector<std::string_view> views;    // scratch
  std::vector<std::string> pieces, next;  // scratch
};

namespace {

constexpr uint8_t kUnused = 0, kNormal = 1, kSpecial = 2;
using Strip = DecoderSpec::Strip;
using Step = PreTokenizerStep;

// A vocabulary token's text as the decoder turns it into bytes.
std::string token_text_bytes(const std::string& text, const DecoderSpec& decoder) {
  if (decoder.byte_level) return token_text_to_bytes(text);
  if (const int b = decoder.byte_fallback ? byte_of_fallback_token(text) : -1; b >= 0) {
    return std::string(1, static_cast<char>(b));
  }
  if (decoder.metaspace.empty()) return text;
  std::string out;
  size_t pos = 0;
  for (size_t at; (at = text.find(decoder.metaspace, pos)) != std::string::npos;
       pos = at + decoder.metaspace.size()) {
    out.append(text, pos, at - pos);
    out += ' ';
  }
  return out.append(text, pos);
}

bool is_white_space_at(std::string_view s, size_t i, size_t* length) {
  *length = std::max<size_t>(utf8_sequence_length(s, i), 1);
  return char_class(utf8_decode_valid(s, i, *length)) == CharClass::kSpace;
}

// Where an added token matched at [begin, end) really starts and ends once lstrip / rstrip take
// the white space around it (never before `floor`, the end of the previous match).
std::pair<size_t, size_t> stripped_match(std::string_view s, size_t begin, size_t end, size_t floor,
                                         const AddedToken& t) {
  if (t.lstrip) {
    size_t start = floor;  // the white space runs back to the last other character
    for (size_t i = floor, length = 0; i < begin; i += length) {
      if (!is_white_space_at(s, i, &length)) start = i + length;
    }
    begin = start;
  }
  for (size_t length = 0; t.rstrip && end < s.size() && is_white_space_at(s, end, &length);) {
    end += length;
  }
  return {begin, end};
}

// Cuts `text` at the added tokens (leftmost, then longest, as Hugging Face's Aho-Corasick
// does): each stretch between them goes to on_segment(stretch, starts_the_text), each token to
// `out`. The next occurrence of each token is refreshed only once passed: O(text x tokens).
template <typename F>
void split_added(std::string_view text, const std::vector<AddedToken>& tokens,
                 std::vector<int32_t>& out, F&& on_segment) {
  std::vector<size_t> next;
  for (const auto& t : tokens) next.push_back(text.find(t.content));
  size_t pos = 0;
  while (pos < text.size()) {
    size_t best_at = std::string_view::npos, best = 0;
    for (size_t k = 0; k < tokens.size(); ++k) {
      if (next[k] != std::string_view::npos && next[k] < pos) {
        next[k] = text.find(tokens[k].content, pos);
      }
      if (next[k] < best_at) {
        best_at = next[k];
        best = k;
      }
    }
    if (best_at == std::string_view::npos) break;
    const auto [begin, end] =
        stripped_match(text, best_at, best_at + tokens[best].content.size(), pos, tokens[best]);
    if (begin > pos) on_segment(text.substr(pos, begin - pos), pos == 0);
    out.push_back(tokens[best].id);
    pos = end;
  }
  if (pos < text.size()) on_segment(text.substr(pos), pos == 0);
}

// One pre-tokenizer step on one piece; `at_start`: the piece begins the text.
void pre_tokenize(const Step& step, RegexSplitter* splitter, const std::string& piece,
                  bool at_start, std::vector<std::string>& out) {
  switch (step.kind) {
    case Step::Kind::kSplit:
      return splitter->split(piece, out);
    case Step::Kind::kMetaspace:
      return split_metaspace(piece, step.replacement,
                             step.prepend == Step::Prepend::kAlways ||
                                 (step.prepend == Step::Prepend::kFirst && at_start),
                             step.split, out);
    case Step::Kind::kByteLevel: {
      const std::string spaced = step.add_prefix_space && piece[0] != ' ' ? " " + piece : piece;
      if (!step.use_regex) return out.push_back(spaced);
      std::vector<std::string_view> views;
      split_gpt2(spaced, views);
      for (std::string_view v : views) out.emplace_back(v);
      return;
    }
  }
}

}  // namespace

bool is_byte_level(const TokenizerSpec& spec) {
  if (!spec.pre_tokenizers) return true;
  return std::any_of(spec.pre_tokenizers->begin(), spec.pre_tokenizers->end(),
                     [](const Step& s) { return s.kind == Step::Kind::kByteLevel; });
}

Tokenizer::Encoder::Encoder(const TokenizerSpec& spec)
    : normalizers(spec.normalizers),
      steps(spec.pre_tokenizers),
      add_prefix_space(spec.add_prefix_space),
      use_regex(spec.use_regex) {
  if (!spec.scores.empty()) {
    scored.emplace(spec);
    return;
  }
  bpe.emplace(spec, is_byte_level(spec));
  if (!steps) return;
  for (const Step& step : *steps) {
    splitters.push_back(step.kind == Step::Kind::kSplit
                            ? std::make_unique<RegexSplitter>(step.pattern, step.literal)
                            : nullptr);
  }
}

Tokenizer::Tokenizer(const TokenizerSpec& spec)
    : prefix_ids_(spec.prefix_ids), suffix_ids_(spec.suffix_ids), decoder_(spec.decoder) {
  set_vocab(spec);
  for (const auto& t : spec.added) {
    STRATA_INPUT_CHECK(t.id >= 0, "added token '", t.content, "' has a negative id");
    STRATA_INPUT_CHECK(!t.content.empty(), "added token ", t.id, " is empty");
    bytes_[t.id] = t.content;
    kind_[t.id] = t.special ? kSpecial : kNormal;
    (t.normalized && !spec.normalizers.empty() ? normalized_tokens_ : raw_tokens_).push_back(t);
  }
  for (int32_t id : spec.special_ids) {
    STRATA_INPUT_CHECK(contains(id), "special token ", id, " is unknown");
    kind_[id] = kSpecial;
  }
  // At one position the longest added token wins ("<|endoftext|>" over "<|").
  for (auto* tokens : {&raw_tokens_, &normalized_tokens_}) {
    std::stable_sort(tokens->begin(), tokens->end(), [](const auto& a, const auto& b) {
      return a.content.size() > b.content.size();
    });
  }
  for (int32_t id : prefix_ids_)
    STRATA_INPUT_CHECK(contains(id), "prefix token ", id, " is unknown");
  for (int32_t id : suffix_ids_)
    STRATA_INPUT_CHECK(contains(id), "suffix token ", id, " is unknown");
  encoder_ = std::make_shared<Encoder>(spec);
}

void Tokenizer::set_vocab(const TokenizerSpec& spec) {
  // The id table is dense, so one absurd id would size it: ids must stay near the token count.
  const size_t tokens = spec.scored_pieces.size() + spec.vocab.size() + spec.added.size();
  const int64_t max_ids = std::max<int64_t>(int64_t{1} << 20, 2 * static_cast<int64_t>(tokens));
  int64_t size = static_cast<int64_t>(spec.scored_pieces.size());
  const auto grow = [&](const std::string& text, int32_t id) {
    STRATA_INPUT_CHECK(id < max_ids, "token '", text, "' has id ", id, ", far past the ", tokens,
                       " tokens defined (ids must be below ", max_ids, ")");
    size = std::max(size, int64_t{id} + 1);
  };
  for (const auto& [text, id] : spec.vocab) grow(text, id);
  for (const auto& t : spec.added) grow(t.content, t.id);
  bytes_.resize(static_cast<size_t>(size));
  kind_.assign(static_cast<size_t>(size), kUnused);
  for (size_t id = 0; id < spec.scored_pieces.size(); ++id) {
    bytes_[id] = token_text_bytes(spec.scored_pieces[id], spec.decoder);
    kind_[id] = kNormal;
  }
  for (const auto& [text, id] : spec.vocab) {
    STRATA_INPUT_CHECK(id >= 0, "token '", text, "' has a negative id");
    bytes_[id] = token_text_bytes(text, spec.decoder);
    kind_[id] = kNormal;
  }
}

std::optional<Tokenizer> Tokenizer::load(const std::string& dir) {
  auto spec = read_tokenizer_spec(dir);
  if (!spec) return std::nullopt;
  return Tokenizer(*spec);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids = prefix_ids_;
  encode_text(text, ids);
  ids.insert(ids.end(), suffix_ids_.begin(), suffix_ids_.end());
  return ids;
}

std::vector<int32_t> Tokenizer::encode_plain(std::string_view text) const {
  std::vector<int32_t> ids;
  encode_text(text, ids);
  return ids;
}

void Tokenizer::encode_text(std::string_view raw, std::vector<int32_t>& out) const {
  std::string replaced;
  if (!is_valid_utf8(raw)) replaced = replace_invalid_utf8(raw);
  const std::string_view text = replaced.empty() ? raw : std::string_view(replaced);
  std::lock_guard lock(encoder_->mutex);
  // As Hugging Face: tokens matched in the raw text first, then each stretch between them is
  // normalised on its own and searched for the tokens matched in normalised text.
  split_added(text, raw_tokens_, out, [&](std::string_view segment, bool at_start) {
    if (encoder_->normalizers.empty()) return encode_segment(segment, at_start, out);
    const std::string normal = normalize(segment, encoder_->normalizers);
    split_added(normal, normalized_tokens_, out, [&](std::string_view part, bool first) {
      encode_segment(part, at_start && first, out);
    });
  });
}

void Tokenizer::encode_segment(std::string_view segment, bool at_start,
                               std::vector<int32_t>& out) const {
  Encoder& e = *encoder_;
  if (segment.empty()) return;
  if (e.scored) return e.scored->encode(segment, out);
  if (!e.steps) {  // GPT-2's ByteLevel, on views for speed
    std::string with_space;
    if (e.add_prefix_space && segment.front() != ' ') {
      with_space = " ";
      with_space.append(segment);
      segment = with_space;
    }
    e.views.clear();
    if (e.use_regex) {
      split_gpt2(segment, e.views);
    } else {
      e.views.push_back(segment);
    }
    for (std::string_view piece : e.views) e.bpe->encode_piece(piece, out);
    return;
  }
  e.pieces.assign(1, std::string(segment));
  for (size_t k = 0; k < e.steps->size(); ++k) {
    e.next.clear();
    for (size_t j = 0; j < e.pieces.size(); ++j) {
      pre_tokenize((*e.steps)[k], e.splitters[k].get(), e.pieces[j], at_start && j == 0, e.next);
    }
    std::swap(e.pieces, e.next);
  }
  for (const std::string& piece : e.pieces) e.bpe->encode_piece(piece, out);
}

bool Tokenizer::contains(int32_t id) const {
  return id >= 0 && id < size() && kind_[id] != kUnused;
}

bool Tokenizer::is_special(int32_t id) const {
  return contains(id) && kind_[id] == kSpecial;
}

const std::string& Tokenizer::token_bytes(int32_t id) const {
  STRATA_INPUT_CHECK(contains(id), "token id ", id, " is not in the tokenizer's vocabulary");
  return bytes_[id];
}

std::string Tokenizer::first_token_bytes(int32_t id) const {
  std::string bytes = token_bytes(id);
  if (decoder_.strip == Strip::kMetaspaceFirst && kind_[id] == kNormal) {
    std::erase(bytes, ' ');  // Hugging Face's Metaspace decoder drops them all
  } else if (decoder_.strip != Strip::kNone && !bytes.empty() && bytes[0] == ' ') {
    bytes.erase(0, 1);
  }
  return bytes;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string out;
  bool first = true;
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string& bytes = token_bytes(ids[i]);
    if (skip_special && kind_[ids[i]] == kSpecial) continue;
    // run.c looks at the previous id, even a BOS that is not written.
    const bool after_bos = decoder_.strip == Strip::kAfterBos && i > 0 &&
                           ids[i - 1] == decoder_.bos_id && !bytes.empty() && bytes[0] == ' ';
    if (after_bos) {
      out.append(bytes, 1);
    } else if (first && decoder_.strip != Strip::kAfterBos) {
      out += first_token_bytes(ids[i]);
    } else {
      out += bytes;
    }
    first = false;
  }
  return out;
}

}  // namespace strata
