// Reading a JSON file the user named: one error path for "cannot open" and "not JSON".
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace strata {

// Input error naming `path` (and `what` it should be) when it cannot be opened or parsed.
nlohmann::json read_json_file(const std::string& path, const std::string& what);

}  // namespace strata
