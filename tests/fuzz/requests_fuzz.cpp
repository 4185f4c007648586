// Request lines in strata's JSONL format ({"id", "input_ids" | "prompt", ...}).
#include "tests/fuzz/requests_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  strata::fuzz::read_and_check_requests(data, size);
  return 0;
}
