// tokenizer.json as Hugging Face's tokenizers library writes it, for BPE models: the normalizer,
// pre_tokenizer, model, added_tokens, post_processor and decoder fields that GPT-2, OPT, Llama 2 /
// 3, Mistral and Qwen2 / 3 use. Anything else is an input error naming the field.
#include "core/error.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer_files.h"

namespace strata {
namespace {

using nlohmann::json;
using Step = PreTokenizerStep;

std::string type_of(const json& j) {
  return j.is_object() && j.contains("type") && j["type"].is_string() ? j["type"].get<std::string>()
                                                                      : "";
}

[[noreturn]] void unsupported(const std::string& where, const std::string& field,
                              const std::string& type) {
  throw_input(where + ": " + field + " type '" + type + "' is not supported");
}

// {"String": s} -> (s, literal); {"Regex": r} -> (r, regex).
std::pair<std::string, bool> read_pattern(const json& p, const std::string& where,
                                          const std::string& field) {
  if (p.contains("String")) return {p["String"].get<std::string>(), true};
  STRATA_INPUT_CHECK(p.contains("Regex"), where, ": ", field, " has neither String nor Regex");
  return {p["Regex"].get<std::string>(), false};
}

void read_normalizer(const json& n, const std::string& where, TokenizerSpec& spec) {
  if (n.is_null()) return;
  using Kind = NormalizerStep::Kind;
  const std::string type = type_of(n);
  if (type == "Sequence") {
    for (const auto& m : n.at("normalizers")) read_normalizer(m, where, spec);
  } else if (type == "NFC" || type == "NFKC" || type == "NFD" || type == "NFKD") {
    const Kind kind = type == "NFC"    ? Kind::kNfc
                      : type == "NFKC" ? Kind::kNfkc
                      : type == "NFD"  ? Kind::kNfd
                                       : Kind::kNfkd;
    spec.normalizers.push_back({kind, "", ""});
  } else if (type == "Prepend") {
    spec.normalizers.push_back({Kind::kPrepend, "", n.at("prepend").get<std::string>()});
  } else if (type == "Replace") {
    const auto [from, literal] = read_pattern(n.at("pattern"), where, "normalizer Replace");
    STRATA_INPUT_CHECK(literal, where,
                       ": normalizer Replace with a Regex pattern is not supported");
    spec.normalizers.push_back({Kind::kReplace, from, n.at("content").get<std::string>()});
  } else {
    unsupported(where, "normalizer", type);
  }
}

Step::Prepend read_prepend_scheme(const json& p, const std::string& where) {
  if (!p.contains("prepend_scheme")) {  // files before tokenizers 0.14
    return flag(p, "add_prefix_space", true) ? Step::Prepend::kAlways : Step::Prepend::kNever;
  }
  const std::string scheme = p["prepend_scheme"].get<std::string>();
  if (scheme == "always") return Step::Prepend::kAlways;
  if (scheme == "first") return Step::Prepend::kFirst;
  STRATA_INPUT_CHECK(scheme == "never", where, ": Metaspace prepend_scheme '", scheme,
                     "' is not always, first or never");
  return Step::Prepend::kNever;
}

Step read_split(const json& p, const std::string& where) {
  Step step;
  step.kind = Step::Kind::kSplit;
  std::tie(step.pattern, step.literal) =
      read_pattern(p.at("pattern"), where, "pre_tokenizer Split");
  const std::string behavior = p.value("behavior", "");
  STRATA_INPUT_CHECK(behavior == "Isolated", where, ": pre_tokenizer Split behavior '", behavior,
                     "' is not supported (only Isolated)");
  STRATA_INPUT_CHECK(!flag(p, "invert"), where,
                     ": pre_tokenizer Split with invert is not supported");
  try {
    RegexSplitter check(step.pattern, step.literal);
  } catch (const Error& e) {
    throw_input(where + ": pre_tokenizer Split: " + e.what());
  }
  return step;
}

void read_pre_tokenizer(const json& p, const std::string& where, std::vector<Step>& steps) {
  if (p.is_null()) return;
  const std::string type = type_of(p);
  if (type == "Sequence") {
    for (const auto& q : p.at("pretokenizers")) read_pre_tokenizer(q, where, steps);
  } else if (type == "Split") {
    steps.push_back(read_split(p, where));
  } else if (type == "ByteLevel") {
    Step& step = steps.emplace_back();
    step.kind = Step::Kind::kByteLevel;
    step.add_prefix_space = flag(p, "add_prefix_space");
    step.use_regex = flag(p, "use_regex", true);
  } else if (type == "Metaspace") {
    Step& step = steps.emplace_back();
    step.kind = Step::Kind::kMetaspace;
    step.replacement = p.value("replacement", "\xE2\x96\x81");
    step.prepend = read_prepend_scheme(p, where);
    step.split = flag(p, "split", true);
  } else {
    unsupported(where, "pre_tokenizer", type);
  }
}

void read_decoder_step(const json& d, const std::string& where, bool* fused, DecoderSpec& out) {
  const std::string type = type_of(d);
  if (type == "ByteLevel") {
    out.byte_level = true;
  } else if (type == "ByteFallback") {
    out.byte_fallback = true;
  } else if (type == "Fuse") {
    *fused = true;
  } else if (type == "Replace") {
    const auto [from, literal] = read_pattern(d.at("pattern"), where, "decoder Replace");
    STRATA_INPUT_CHECK(literal && d.value("content", "") == " " && !from.empty(), where,
                       ": decoder Replace is supported only from a string to \" \"");
    out.metaspace = from;
  } else if (type == "Strip") {
    // Strip works on each token; after Fuse there is one, the whole text.
    STRATA_INPUT_CHECK(*fused && d.value("content", "") == " " && d.value("start", 0) <= 1 &&
                           d.value("stop", 0) == 0,
                       where, ": decoder Strip is supported only after Fuse, of one leading \" \"");
    if (d.value("start", 0) == 1) out.strip = DecoderSpec::Strip::kFirstSpace;
  } else if (type == "Metaspace") {
    out.metaspace = d.value("replacement", "\xE2\x96\x81");
    if (read_prepend_scheme(d, where) != Step::Prepend::kNever) {
      out.strip = DecoderSpec::Strip::kMetaspaceFirst;
    }
  } else {
    unsupported(where, "decoder", type);
  }
}

DecoderSpec read_decoder(const json& d, const std::string& where, bool byte_level_model) {
  DecoderSpec out;
  out.byte_level = false;
  bool fused = false;
  if (d.is_null()) {
    out.byte_level = byte_level_model;
  } else if (type_of(d) == "Sequence") {
    for (const auto& step : d.at("decoders")) read_decoder_step(step, where, &fused, out);
  } else {
    read_decoder_step(d, where, &fused, out);
  }
  return out;
}

void read_merges(const json& merges, const std::string& where, TokenizerSpec& spec) {
  for (const auto& m : merges) {
    if (m.is_array()) {
      STRATA_INPUT_CHECK(m.size() == 2, where, ": a merge is not a pair");
      spec.merges.push_back(
          resolve_merge(spec, m[0].get<std::string>(), m[1].get<std::string>(), where));
    } else {
      const std::string text = m.get<std::string>();
      const size_t space = text.find(' ');
      STRATA_INPUT_CHECK(space != std::string::npos, where, ": merge '", text, "' has no space");
      spec.merges.push_back(
          resolve_merge(spec, text.substr(0, space), text.substr(space + 1), where));
    }
  }
}

void read_model(const json& model, const std::string& where, TokenizerSpec& spec) {
  const std::string type = model.value("type", "BPE");
  STRATA_INPUT_CHECK(type == "BPE", where, ": model type '", type, "' is not supported (only BPE)");
  const auto unset = [&](const char* key) {
    return !model.contains(key) || model[key].is_null() || model[key] == "";
  };
  for (const char* key : {"dropout", "continuing_subword_prefix", "end_of_word_suffix"}) {
    STRATA_INPUT_CHECK(unset(key), where, ": model option '", key, "' is not supported");
  }
  spec.byte_fallback = flag(model, "byte_fallback");
  spec.ignore_merges = flag(model, "ignore_merges");
  spec.fuse_unk = flag(model, "fuse_unk");
  read_vocab_object(model.at("vocab"), where, spec);
  if (!unset("unk_token")) {
    const auto it = spec.vocab.find(model["unk_token"].get<std::string>());
    STRATA_INPUT_CHECK(it != spec.vocab.end(), where, ": model unk_token is not in the vocabulary");
    spec.unk_id = it->second;
  }
  read_merges(model.at("merges"), where, spec);
}

void read_added_tokens(const json& tokens, const std::string& where, TokenizerSpec& spec) {
  for (const auto& t : tokens) {
    const std::string content = t.at("content").get<std::string>();
    STRATA_INPUT_CHECK(!flag(t, "single_word"), where, ": added token '", content,
                       "' has single_word set, which is not supported");
    AddedToken& a = spec.added.emplace_back();
    a.content = content;
    a.id = json_id(t.at("id"), where);
    a.special = flag(t, "special", true);
    a.lstrip = flag(t, "lstrip");
    a.rstrip = flag(t, "rstrip");
    a.normalized = flag(t, "normalized", !a.special);
  }
}

// tokenizer.json's post_processor: the tokens put around a single text.
void read_post_processor(const json& p, const std::string& where, PostProcessing& out) {
  if (p.is_null()) return;
  const std::string type = type_of(p);
  if (type == "ByteLevel") return;
  if (type == "Sequence") {
    for (const auto& q : p.at("processors")) read_post_processor(q, where, out);
  } else if (type == "TemplateProcessing") {
    bool after = false;
    for (const auto& item : p.at("single")) {
      if (item.contains("Sequence")) {
        after = true;
        continue;
      }
      const std::string name = item.at("SpecialToken").at("id").get<std::string>();
      STRATA_INPUT_CHECK(p.at("special_tokens").contains(name), where,
                         ": post_processor uses undefined special token '", name, "'");
      for (const auto& id : p["special_tokens"][name].at("ids")) {
        (after ? out.suffix : out.prefix).push_back(json_id(id, where));
      }
    }
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    out.prefix.push_back(json_id(p.at("cls").at(1), where));
    out.suffix.push_back(json_id(p.at("sep").at(1), where));
  } else {
    unsupported(where, "post_processor", type);
  }
}

const json& field(const json& j, const char* key) {
  static const json null;
  return j.contains(key) ? j[key] : null;
}

}  // namespace

void read_tokenizer_json(const json& j, const std::string& where, TokenizerSpec& spec,
                         PostProcessing& post) {
  read_model(j.at("model"), where, spec);
  read_normalizer(field(j, "normalizer"), where, spec);
  const json& pre = field(j, "pre_tokenizer");
  if (type_of(pre) == "ByteLevel") {  // GPT-2's own, on the fast path
    spec.add_prefix_space = flag(pre, "add_prefix_space");
    spec.use_regex = flag(pre, "use_regex", true);
  } else {
    spec.pre_tokenizers.emplace();
    read_pre_tokenizer(pre, where, *spec.pre_tokenizers);
  }
  const bool byte_level = is_byte_level(spec);
  STRATA_INPUT_CHECK(!(byte_level && spec.byte_fallback), where,
                     ": model byte_fallback with a ByteLevel pre_tokenizer is not supported");
  spec.decoder = read_decoder(field(j, "decoder"), where, byte_level);
  read_added_tokens(field(j, "added_tokens"), where, spec);
  read_post_processor(field(j, "post_processor"), where, post);
}

}  // namespace strata
