// tokenizer.json as Tokenizer::load reads it, then a short encode and decode with it.
#include "tests/fuzz/tokenizer_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  strata::fuzz::expect_input_errors_only([&] {
    strata::TokenizerTexts texts;
    texts.dir = "tok";
    texts.tokenizer_json = strata::fuzz::text(data, size);
    strata::fuzz::exercise(strata::parse_tokenizer_texts(texts));
  });
  return 0;
}
