#include "core/log.h"

#include <atomic>
#include <cstdio>

namespace strata {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::kWarn)};
const char* level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "?";
}
}  // namespace

void set_log_level(LogLevel level) {
  g_level = static_cast<int>(level);
}
LogLevel log_level() {
  return static_cast<LogLevel>(g_level.load());
}

void log_message(LogLevel level, const std::string& message) {
  if (static_cast<int>(level) < g_level.load()) return;
  std::fprintf(stderr, "strata: %s: %s\n", level_name(level), message.c_str());
}

}  // namespace strata
