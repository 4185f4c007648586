// Reading a JSON file the user named: one error path for "cannot open" and "not JSON".
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace strata {

// Input error naming `path` (and `what` it should be) when it cannot be opened or parsed.
nlohmann::json read_json_file(const std::string& path, const std::string& what);

// The text of `path` parsed; input error naming `path` when it is not JSON.
nlohmann::json parse_json_text(std::string_view text, const std::string& path);

}  // namespace strata
