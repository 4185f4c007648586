#include "core/json_file.h"

#include <fstream>
#include <sstream>

#include "core/error.h"

namespace strata {

nlohmann::json read_json_file(const std::string& path, const std::string& what) {
  std::ifstream in(path);
  STRATA_INPUT_CHECK(in.good(), path, ": cannot open ", what);
  std::ostringstream text;
  text << in.rdbuf();
  STRATA_INPUT_CHECK(!in.bad(), path, ": read failed");
  return parse_json_text(text.str(), path);
}

nlohmann::json parse_json_text(std::string_view text, const std::string& path) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {  // parse_error or out_of_range (1e999)
    throw_input(path + ": not JSON (" + e.what() + ")");
  }
}

}  // namespace strata
