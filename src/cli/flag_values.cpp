#include "cli/flag_values.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <system_error>

#include "core/error.h"
#include "core/units.h"

namespace strata::cli {
namespace {

std::string quoted(const std::string& flag, const std::string& text) {
  return flag + " '" + text + "'";
}

std::string range_text(double min, double max, bool min_exclusive) {
  char buf[96];
  if (std::isinf(max)) {
    std::snprintf(buf, sizeof(buf), "%s %g", min_exclusive ? ">" : ">=", min);
  } else {
    std::snprintf(buf, sizeof(buf), "in %c%g, %g]", min_exclusive ? '(' : '[', min, max);
  }
  return buf;
}

}  // namespace

std::shared_ptr<cxxopts::Value> number_value() {
  return cxxopts::value<std::string>();
}

std::shared_ptr<cxxopts::Value> number_value(const std::string& default_text) {
  return cxxopts::value<std::string>()->default_value(default_text);
}

int64_t parse_int(const std::string& flag, const std::string& text, int64_t min, int64_t max) {
  int64_t value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  const bool whole = !text.empty() && ptr == end;
  if (ec == std::errc::result_out_of_range) {
    throw_input(detail::concat(quoted(flag, text), " is out of range (at most ", max, ")"));
  }
  STRATA_INPUT_CHECK(ec == std::errc() && whole, quoted(flag, text), " is not a whole number");
  STRATA_INPUT_CHECK(value >= min, quoted(flag, text), " must be >= ", min);
  STRATA_INPUT_CHECK(value <= max, quoted(flag, text), " must be <= ", max);
  return value;
}

uint64_t parse_uint64(const std::string& flag, const std::string& text) {
  uint64_t value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  STRATA_INPUT_CHECK(ec == std::errc() && !text.empty() && ptr == end, quoted(flag, text),
                     " is not a whole number from 0 to ", std::numeric_limits<uint64_t>::max());
  return value;
}

double parse_real(const std::string& flag, const std::string& text, double min, double max,
                  bool min_exclusive) {
  double value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  STRATA_INPUT_CHECK(ec == std::errc() && !text.empty() && ptr == end && std::isfinite(value),
                     quoted(flag, text), " is not a finite number");
  const bool above = min_exclusive ? value > min : value >= min;
  STRATA_INPUT_CHECK(above && value <= max, quoted(flag, text), " must be ",
                     range_text(min, max, min_exclusive));
  return value;
}

int64_t int_flag(const cxxopts::ParseResult& flags, const std::string& name, int64_t min,
                 int64_t max) {
  return parse_int("--" + name, flags[name].as<std::string>(), min, max);
}

uint64_t uint64_flag(const cxxopts::ParseResult& flags, const std::string& name) {
  return parse_uint64("--" + name, flags[name].as<std::string>());
}

double real_flag(const cxxopts::ParseResult& flags, const std::string& name, double min, double max,
                 bool min_exclusive) {
  return parse_real("--" + name, flags[name].as<std::string>(), min, max, min_exclusive);
}

std::vector<double> real_list_flag(const cxxopts::ParseResult& flags, const std::string& name,
                                   double min, double max) {
  const std::string text = flags[name].as<std::string>();
  std::vector<double> values;
  size_t begin = 0;
  for (;;) {
    const size_t comma = text.find(',', begin);
    const std::string item =
        text.substr(begin, comma == std::string::npos ? std::string::npos : comma - begin);
    values.push_back(parse_real("--" + name, item, min, max));
    if (comma == std::string::npos) break;
    begin = comma + 1;
  }
  return values;
}

uint64_t cap_flag(const cxxopts::ParseResult& flags, const std::string& name) {
  const std::string text = flags[name].as<std::string>();
  const uint64_t bytes = parse_bytes(text, "--" + name);
  STRATA_INPUT_CHECK(bytes > 0, quoted("--" + name, text),
                     " caps the tier at nothing: give a size above 0, or leave the flag out for "
                     "no cap");
  return bytes;
}

bool looks_like_value(const std::string& arg) {
  if (arg.rfind("--", 0) == 0) return false;
  return !(arg.size() >= 2 && arg[0] == '-' && std::isalpha(static_cast<unsigned char>(arg[1])));
}

}  // namespace strata::cli
