// Shared by the fuzz harnesses: what counts as a normal outcome for malformed input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"

namespace strata::fuzz {

// Runs `parse`; the input error it may throw is the expected answer to bad bytes. Anything else
// (an internal error, another exception) escapes, so the fuzzer and the replay driver abort.
template <typename F>
void expect_input_errors_only(F&& parse) {
  try {
    parse();
  } catch (const Error& e) {
    if (e.exit_status() != kExitBadInput) throw;
  }
}

inline std::string text(const uint8_t* data, size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

}  // namespace strata::fuzz
