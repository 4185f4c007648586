// CUDA tests: skipped (exit 77, which CTest counts as skipped) where no GPU is present; a driver
// the runtime cannot use fails (device_count throws), it is not a skip.
#include <gtest/gtest.h>

#include <cstdio>

#include "kernels/cuda/device.h"

int main(int argc, char** argv) {
  if (strata::cuda::device_count() == 0) {
    std::printf("no CUDA device: skipped\n");
    return 77;
  }
  std::printf("CUDA device 0: %s\n", strata::cuda::device_name(0).c_str());
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
