// Helpers shared by the readers of Hugging Face's tokenizer files.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "tokenizer/tokenizer.h"

namespace strata {

std::string read_file(const std::filesystem::path& path);

// The texts of a tokenizer's files as read_tokenizer_spec finds them in `dir`; absent where the
// file is not there. tokenizer_json, or vocab_json with merges_txt, is given.
struct TokenizerTexts {
  std::string dir;  // names the files in errors
  std::optional<std::string> tokenizer_json, vocab_json, merges_txt, tokenizer_config,
      special_tokens_map;
};

// The spec those files give (read_tokenizer_spec without the file system).
TokenizerSpec parse_tokenizer_texts(const TokenizerTexts& texts);

// A boolean setting; absent or null means the default.
bool flag(const nlohmann::json& j, const char* key, bool fallback = false);
int32_t json_id(const nlohmann::json& v, const std::string& where);

void read_vocab_object(const nlohmann::json& vocab, const std::string& where, TokenizerSpec& spec);
MergeRule resolve_merge(const TokenizerSpec& spec, const std::string& left,
                        const std::string& right, const std::string& where);

struct PostProcessing {
  std::vector<int32_t> prefix, suffix;
};

// tokenizer.json (`j`, read from `where`) into `spec`; its post_processor into `post`.
void read_tokenizer_json(const nlohmann::json& j, const std::string& where, TokenizerSpec& spec,
                         PostProcessing& post);

}  // namespace strata
