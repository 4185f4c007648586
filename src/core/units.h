// Sizes as users write them: "16GiB", "512MB", "4096".
#pragma once

#include <cstdint>
#include <string>

namespace strata {

// Parses a byte count with an optional unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB); an input
// error names `what` (the flag or field) when the text is not one.
uint64_t parse_bytes(const std::string& text, const std::string& what);
std::string format_bytes(double bytes);

}  // namespace strata
