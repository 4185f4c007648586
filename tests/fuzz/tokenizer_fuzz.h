// The tokenizer harnesses' shared tail: a spec that was accepted must build a tokenizer that
// encodes and decodes without failing.
#pragma once

#include <vector>

#include "tests/fuzz/fuzz_util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_files.h"

namespace strata::fuzz {

inline void exercise(const TokenizerSpec& spec) {
  const Tokenizer tokenizer(spec);
  for (const char* sample : {"Hello world", " a  b\n\tc", "\xc3\xa9t\xc3\xa9 123 \xe2\x82\xac!"}) {
    const std::vector<int32_t> ids = tokenizer.encode(sample);
    (void)tokenizer.decode(ids, false);
    (void)tokenizer.decode(ids, true);
  }
}

}  // namespace strata::fuzz
