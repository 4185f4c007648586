// Helpers shared by the readers of Hugging Face's tokenizer files.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "tokenizer/tokenizer.h"

namespace strata {

std::string read_file(const std::filesystem::path& path);
std::optional<nlohmann::json> read_json_if_present(const std::filesystem::path& path);

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
