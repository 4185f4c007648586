// Negative controls for the CUDA tests' closeness check: a NaN or a far value must fail it.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "tests/cuda/cuda_test_util.h"

namespace strata::cuda {
namespace {

TEST(CudaTestUtil, MismatchFailsOnNanAndFarValues) {
  const std::vector<float> want = {1.0f, -2.0f, 0.5f};
  EXPECT_EQ(test::mismatch(want, want, test::kRelF32), "");
  EXPECT_NE(test::mismatch({1.0f, NAN, 0.5f}, want, test::kRelF32), "");
  EXPECT_NE(test::mismatch(want, {1.0f, NAN, 0.5f}, test::kRelF32), "");
  EXPECT_NE(test::mismatch({1.0f, -2.0f, INFINITY}, want, test::kRelF32), "");
  EXPECT_NE(test::mismatch({1.0f, -2.1f, 0.5f}, want, test::kRelF32), "");
  EXPECT_NE(test::mismatch({1.0f, -2.0f}, want, test::kRelF32), "");
}

}  // namespace
}  // namespace strata::cuda
