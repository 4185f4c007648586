// vocab.json + merges.txt (+ tokenizer_config.json) as Tokenizer::load reads them: the input is
// the three texts separated by NUL bytes.
#include "tests/fuzz/tokenizer_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input = strata::fuzz::text(data, size);
  std::vector<std::string> parts;
  for (size_t begin = 0;;) {
    const size_t end = input.find('\0', begin);
    parts.push_back(input.substr(begin, end == std::string::npos ? end : end - begin));
    if (end == std::string::npos || parts.size() == 3) break;
    begin = end + 1;
  }
  if (parts.size() < 2) return 0;
  strata::fuzz::expect_input_errors_only([&] {
    strata::TokenizerTexts texts;
    texts.dir = "tok";
    texts.vocab_json = parts[0];
    texts.merges_txt = parts[1];
    if (parts.size() > 2) texts.tokenizer_config = parts[2];
    strata::fuzz::exercise(strata::parse_tokenizer_texts(texts));
  });
  return 0;
}
