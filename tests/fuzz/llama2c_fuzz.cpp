// llama2.c's tokenizer.bin as Tokenizer::load reads it, then a short encode and decode.
#include <sstream>

#include "tests/fuzz/tokenizer_fuzz.h"
#include "tokenizer/llama2c.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  strata::fuzz::expect_input_errors_only([&] {
    std::istringstream in(strata::fuzz::text(data, size));
    strata::fuzz::exercise(strata::read_llama2c_spec(in, "tokenizer-llama2c.bin"));
  });
  return 0;
}
