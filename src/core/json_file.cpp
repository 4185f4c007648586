#include "core/json_file.h"

#include <fstream>

#include "core/error.h"

namespace strata {

nlohmann::json read_json_file(const std::string& path, const std::string& what) {
  std::ifstream in(path);
  STRATA_INPUT_CHECK(in.good(), path, ": cannot open ", what);
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    throw_input(path + ": not JSON (" + e.what() + ")");
  }
}

}  // namespace strata
