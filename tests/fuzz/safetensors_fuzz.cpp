// The safetensors header, as SafetensorsFile validates a mapped checkpoint.
#include "model/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  strata::fuzz::expect_input_errors_only([&] {
    size_t data_offset = 0;
    const auto tensors =
        strata::parse_safetensors_header(data, size, "model.safetensors", &data_offset);
    // Every tensor's bytes lie inside the input and are exactly what its shape needs, as the
    // engine then reads them.
    for (const auto& [name, info] : tensors) {
      if (data_offset + info.end > size) __builtin_trap();
      unsigned __int128 bytes = strata::dtype_size(info.dtype);
      for (int64_t d : info.shape) bytes *= static_cast<uint64_t>(d);
      if (bytes != info.end - info.begin) __builtin_trap();
      if (info.end > info.begin) {
        volatile uint8_t last = data[data_offset + info.end - 1];
        (void)last;
      }
    }
  });
  return 0;
}
