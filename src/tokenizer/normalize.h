// tokenizer.json's normalizers: Unicode normal forms (ICU), Prepend and literal Replace.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace strata {

// `text` (valid UTF-8) through each step in order. Prepend adds nothing to an empty text.
std::string normalize(std::string_view text, const std::vector<NormalizerStep>& steps);

}  // namespace strata
