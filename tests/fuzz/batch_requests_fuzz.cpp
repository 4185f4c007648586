// Request lines in OpenAI's Batch API format ({"custom_id", "method", "url", "body"}); the same
// reader as requests_fuzz, with a corpus of batch files.
#include "tests/fuzz/requests_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  strata::fuzz::read_and_check_requests(data, size);
  return 0;
}
