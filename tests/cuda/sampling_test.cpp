// Log-softmax, greedy and temperature sampling against the CPU.
#include <gtest/gtest.h>

#include <algorithm>

#include "kernels/cpu/reference.h"
#include "kernels/cpu/reference_cuda_ops.h"
#include "tests/cuda/cuda_test_util.h"

namespace strata::cuda {
namespace {

using test::download;
using test::poisoned;
using test::upload;

TEST(LogSoftmax, MatchesReference) {
  auto gen = test::rng();
  for (int64_t n : {1, 5, 1000, 50272}) {
    const int64_t rows = 6;
    const auto logits = test::random_floats(gen, rows * n, -20.0f, 20.0f);
    std::vector<float> want(rows * n);
    for (int64_t r = 0; r < rows; ++r) {
      cpu::ref::log_softmax(logits.data() + r * n, want.data() + r * n, n);
    }
    auto dl = upload(logits);
    auto dout = poisoned<float>(rows * n);
    log_softmax(dl.as<float>(), dout.as<float>(), rows, n, test::stream());
    // fp32 against the double reference: values are O(10), errors O(1e-6).
    EXPECT_EQ(test::mismatch(download<float>(dout, rows * n), want, 1e-5), "") << "n " << n;
  }
}

TEST(Argmax, FirstMaximumLikeTorch) {
  auto gen = test::rng();
  const int64_t rows = 9, n = 50272;
  auto logits = test::random_floats(gen, rows * n, -5.0f, 5.0f);
  for (int64_t r = 0; r < rows; ++r) {  // ties: the same maximum at two places in some rows
    const int64_t a = gen() % n, b = gen() % n;
    logits[r * n + a] = 9.0f;
    if (r % 2 == 0) logits[r * n + b] = 9.0f;
  }
  std::vector<int32_t> want(rows);
  for (int64_t r = 0; r < rows; ++r) {
    want[r] = static_cast<int32_t>(
        std::max_element(logits.begin() + r * n, logits.begin() + (r + 1) * n) -
        (logits.begin() + r * n));
  }
  auto dl = upload(logits);
  auto dt = poisoned<int32_t>(rows);
  argmax(dl.as<float>(), rows, n, dt.as<int32_t>(), test::stream());
  EXPECT_EQ(download<int32_t>(dt, rows), want);
}

TEST(SampleTemperature, PicksTheTokenWhoseCdfIntervalHoldsTheDraw) {
  auto gen = test::rng();
  const int64_t rows = 64;
  for (int64_t n : {2, 37, 50272}) {
    for (float temperature : {0.3f, 1.0f, 1.7f}) {
      const auto logits = test::random_floats(gen, rows * n, -4.0f, 4.0f);
      auto uniforms = test::random_floats(gen, rows, 0.0f, 1.0f);
      uniforms[0] = 0.0f;  // the first token with mass
      auto dl = upload(logits), du = upload(uniforms);
      auto dt = poisoned<int32_t>(rows);
      sample_temperature(dl.as<float>(), rows, n, temperature, du.as<float>(), dt.as<int32_t>(),
                         test::stream());
      const auto got = download<int32_t>(dt, rows);
      for (int64_t r = 0; r < rows; ++r) {
        const auto cdf = cpu::ref::softmax_cdf(logits.data() + r * n, n, temperature);
        ASSERT_GE(got[r], 0);
        ASSERT_LT(got[r], n);
        const double lo = got[r] == 0 ? 0.0 : cdf[got[r] - 1], hi = cdf[got[r]];
        // fp32 running sums: boundaries drift with the number of terms summed.
        const double slack = n > 1000 ? 1e-4 : 1e-6;
        EXPECT_LE(lo - slack, uniforms[r]) << "row " << r << " n " << n;
        EXPECT_GE(hi + slack, uniforms[r]) << "row " << r << " n " << n;
      }
    }
  }
}

}  // namespace
}  // namespace strata::cuda
