#include "core/units.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <utility>

#include "core/error.h"

namespace strata {

uint64_t parse_bytes(const std::string& text, const std::string& what) {
  size_t pos = 0;
  double value = 0;
  try {
    value = std::stod(text, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  const bool starts_as_number =
      !text.empty() && (std::isdigit(static_cast<unsigned char>(text[0])) || text[0] == '.');
  STRATA_INPUT_CHECK(starts_as_number && pos > 0 && std::isfinite(value) && value >= 0, what, ": '",
                     text, "' is not a size (e.g. 16GiB)");
  std::string unit = text.substr(pos);
  for (auto& ch : unit) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  static const std::pair<const char*, double> kUnits[] = {{"", 1},
                                                          {"b", 1},
                                                          {"kb", 1e3},
                                                          {"mb", 1e6},
                                                          {"gb", 1e9},
                                                          {"tb", 1e12},
                                                          {"kib", 1024.0},
                                                          {"mib", 1048576.0},
                                                          {"gib", 1073741824.0},
                                                          {"tib", 1099511627776.0},
                                                          {"k", 1024.0},
                                                          {"m", 1048576.0},
                                                          {"g", 1073741824.0},
                                                          {"t", 1099511627776.0}};
  for (const auto& [name, scale] : kUnits) {
    if (unit != name) continue;
    // 2^64 bytes is past any machine; the check keeps the conversion defined.
    STRATA_INPUT_CHECK(value * scale < 1.8e19, what, ": '", text, "' is too large");
    return static_cast<uint64_t>(std::round(value * scale));  // llround stops at 2^63
  }
  throw_input(what + ": '" + text + "' has an unknown unit (B, KB, MB, GB, KiB, MiB, GiB, TiB)");
}

std::string format_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.2f %s", bytes, units[u]);
  return buf;
}

}  // namespace strata
