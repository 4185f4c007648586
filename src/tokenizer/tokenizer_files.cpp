// Reading a tokenizer as Hugging Face saves it. Precedence follows transformers: tokenizer.json
// (the "fast" tokenizer) when present, else vocab.json + merges.txt with tokenizer_config.json.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "tokenizer/llama2c.h"
#include "tokenizer/tokenizer_files.h"

namespace strata {

namespace fs = std::filesystem;
using nlohmann::json;

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  STRATA_INPUT_CHECK(in.good(), path.string(), ": cannot open: ", std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  STRATA_INPUT_CHECK(!in.bad(), path.string(), ": read failed");
  return text.str();
}

std::optional<json> parse_json_if_present(const std::optional<std::string>& text,
                                          const fs::path& path) {
  if (!text) return std::nullopt;
  try {
    return json::parse(*text);
  } catch (const json::exception& e) {  // parse_error or out_of_range (1e999)
    throw_input(path.string() + ": not JSON (" + e.what() + ")");
  }
}

MergeRule resolve_merge(const TokenizerSpec& spec, const std::string& left,
                        const std::string& right, const std::string& where) {
  const auto find = [&](const std::string& text) {
    const auto it = spec.vocab.find(text);
    STRATA_INPUT_CHECK(it != spec.vocab.end(), where, ": merge '", left, " ", right, "' uses '",
                       text, "', which is not in the vocabulary");
    return it->second;
  };
  return {find(left), find(right), find(left + right)};
}

void read_vocab_object(const json& vocab, const std::string& where, TokenizerSpec& spec) {
  STRATA_INPUT_CHECK(vocab.is_object(), where, ": the vocabulary is not a JSON object");
  spec.vocab.reserve(vocab.size());
  for (const auto& [text, id] : vocab.items()) {
    STRATA_INPUT_CHECK(
        id.is_number_integer() && id.get<int64_t>() >= 0 && id.get<int64_t>() < INT32_MAX, where,
        ": token '", text, "' has no valid id");
    spec.vocab.emplace(text, id.get<int32_t>());
  }
}

bool flag(const json& j, const char* key, bool fallback) {
  return j.contains(key) && j[key].is_boolean() ? j[key].get<bool>() : fallback;
}

int32_t json_id(const json& v, const std::string& where) {
  STRATA_INPUT_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() < INT32_MAX,
                     where, ": a token id is not a valid integer");
  return v.get<int32_t>();
}

namespace {

// A special token is written either as its text or as {"content": text, ...}.
std::optional<std::string> token_content(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    return v["content"].get<std::string>();
  }
  return std::nullopt;
}

void read_merges_txt(const std::string& text, const fs::path& path, TokenizerSpec& spec) {
  std::istringstream in(text);
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (number == 1 && line.rfind("#version", 0) == 0)) continue;
    const std::string where = path.string() + ":" + std::to_string(number);
    const size_t space = line.find(' ');
    STRATA_INPUT_CHECK(space != std::string::npos && space > 0 && space + 1 < line.size() &&
                           line.find(' ', space + 1) == std::string::npos,
                       where, ": expected two tokens separated by one space");
    spec.merges.push_back(
        resolve_merge(spec, line.substr(0, space), line.substr(space + 1), where));
  }
}

// The id of a special token's text: an added token, a vocabulary entry, or, as transformers
// does for a special token it has not seen, a new id after all others.
int32_t special_token_id(TokenizerSpec& spec, const std::string& content) {
  for (auto& t : spec.added) {
    if (t.content == content) return t.id;
  }
  int32_t id = 0;
  const auto it = spec.vocab.find(content);
  if (it != spec.vocab.end()) {
    id = it->second;
  } else {
    for (const auto& [text, i] : spec.vocab) id = std::max(id, i + 1);
    for (const auto& t : spec.added) id = std::max(id, t.id + 1);
  }
  spec.added.push_back({content, id, true});
  return id;
}

const char* const kSpecialKeys[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                    "pad_token", "cls_token", "mask_token"};

void read_special_tokens(const std::string& config_where, const std::optional<json>& config,
                         const std::optional<json>& map, TokenizerSpec& spec,
                         std::optional<int32_t>* bos, std::optional<int32_t>* eos) {
  if (config && config->contains("added_tokens_decoder")) {
    for (const auto& [id, t] : (*config)["added_tokens_decoder"].items()) {
      const auto content = token_content(t);
      STRATA_INPUT_CHECK(content && !id.empty() && id.size() < 10 &&
                             id.find_first_not_of("0123456789") == std::string::npos,
                         config_where, ": added token '", id, "' has no content or no valid id");
      const bool known = std::any_of(spec.added.begin(), spec.added.end(),
                                     [&](const AddedToken& a) { return a.content == *content; });
      if (!known) spec.added.push_back({*content, std::stoi(id), flag(t, "special", true)});
    }
  }
  // tokenizer_config.json first, special_tokens_map.json for what it leaves out.
  for (const json* source : {config ? &*config : nullptr, map ? &*map : nullptr}) {
    if (!source) continue;
    for (const char* key : kSpecialKeys) {
      if (!source->contains(key)) continue;
      const auto content = token_content((*source)[key]);
      if (!content) continue;
      const int32_t id = special_token_id(spec, *content);
      if (std::strcmp(key, "bos_token") == 0 && !*bos) *bos = id;
      if (std::strcmp(key, "eos_token") == 0 && !*eos) *eos = id;
    }
    if (source->contains("additional_special_tokens")) {
      for (const auto& t : (*source)["additional_special_tokens"]) {
        if (const auto content = token_content(t)) special_token_id(spec, *content);
      }
    }
  }
}

// tokenizer_config.json's add_bos_token / add_eos_token. The slow tokenizers read them
// (GPT2Tokenizer's add_bos_token is how OPT gets its leading </s>), and transformers' Llama fast
// tokenizers rebuild tokenizer.json's template from them: so, where set, they decide.
void affixes_from_config(const json& config, const std::string& where, std::optional<int32_t> bos,
                         std::optional<int32_t> eos, TokenizerSpec& spec) {
  const auto set = [&](const char* key, const std::optional<int32_t>& id, const char* name,
                       std::vector<int32_t>& ids) {
    if (!config.contains(key) || !config[key].is_boolean()) return;
    ids.clear();
    if (!config[key].get<bool>()) return;
    STRATA_INPUT_CHECK(id, where, ": ", key, " is set but there is no ", name);
    ids.push_back(*id);
  };
  set("add_bos_token", bos, "bos_token", spec.prefix_ids);
  set("add_eos_token", eos, "eos_token", spec.suffix_ids);
}

}  // namespace

TokenizerSpec parse_tokenizer_texts(const TokenizerTexts& texts) {
  const fs::path dir(texts.dir);
  const bool fast = texts.tokenizer_json.has_value();
  STRATA_CHECK(fast || (texts.vocab_json && texts.merges_txt), texts.dir,
               ": neither tokenizer.json nor vocab.json + merges.txt");
  TokenizerSpec spec;
  PostProcessing post;
  std::string where;
  try {
    if (fast) {
      where = (dir / "tokenizer.json").string();
      read_tokenizer_json(*parse_json_if_present(texts.tokenizer_json, where), where, spec, post);
      spec.prefix_ids = post.prefix;
      spec.suffix_ids = post.suffix;
    } else {
      where = (dir / "vocab.json").string();
      read_vocab_object(*parse_json_if_present(texts.vocab_json, where), where, spec);
      read_merges_txt(*texts.merges_txt, dir / "merges.txt", spec);
    }
    where = (dir / "special_tokens_map.json").string();
    const auto map = parse_json_if_present(texts.special_tokens_map, where);
    where = (dir / "tokenizer_config.json").string();
    const auto config = parse_json_if_present(texts.tokenizer_config, where);
    std::optional<int32_t> bos, eos;
    read_special_tokens(where, config, map, spec, &bos, &eos);
    if (config) {
      affixes_from_config(*config, where, bos, eos, spec);
      if (!fast) spec.add_prefix_space = flag(*config, "add_prefix_space");
    }
  } catch (const json::exception& e) {
    throw_input(where + ": unexpected content (" + e.what() + ")");
  }
  return spec;
}

std::optional<TokenizerSpec> read_tokenizer_spec(const std::string& dir_name) {
  const fs::path dir(dir_name);
  const auto text_if_present = [&](const char* name) -> std::optional<std::string> {
    const fs::path path = dir / name;
    if (!fs::exists(path)) return std::nullopt;
    return read_file(path);
  };
  TokenizerTexts texts;
  texts.dir = dir_name;
  texts.tokenizer_json = text_if_present("tokenizer.json");
  if (!texts.tokenizer_json) {
    texts.vocab_json = text_if_present("vocab.json");
    if (!texts.vocab_json) {
      const fs::path llama2c = dir / kLlama2cTokenizerFile;
      if (fs::exists(llama2c)) return read_llama2c_spec(llama2c.string());
      return std::nullopt;
    }
    texts.merges_txt = text_if_present("merges.txt");
    STRATA_INPUT_CHECK(texts.merges_txt, dir_name, ": has vocab.json but no merges.txt");
  }
  texts.tokenizer_config = text_if_present("tokenizer_config.json");
  texts.special_tokens_map = text_if_present("special_tokens_map.json");
  return parse_tokenizer_texts(texts);
}

}  // namespace strata
