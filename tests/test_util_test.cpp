// Negative controls for the shared test helpers: a comparison that a NaN slips through passes
// every broken kernel that writes nothing into a NaN-poisoned output.
#include <cmath>
#include <cstdlib>
#include <vector>

#include "test_util.h"

namespace strata {
namespace {

TEST(TestUtil, MaxRelDiffIsNanWhenEitherSideIsNan) {
  const std::vector<float> want = {1.0f, -200.0f, 0.0f};
  EXPECT_EQ(test::max_rel_diff(want, want), 0.0);
  EXPECT_DOUBLE_EQ(test::max_rel_diff(std::vector<float>{1.5f, -200.0f, 0.0f}, want), 0.5);
  EXPECT_DOUBLE_EQ(test::max_rel_diff(std::vector<float>{1.0f, -202.0f, 0.0f}, want), 0.01);
  for (size_t i = 0; i < want.size(); ++i) {
    std::vector<float> got = want, bad_want = want;
    got[i] = NAN;
    bad_want[i] = NAN;
    EXPECT_TRUE(std::isnan(test::max_rel_diff(got, want))) << "NaN got at " << i;
    EXPECT_TRUE(std::isnan(test::max_rel_diff(want, bad_want))) << "NaN want at " << i;
  }
  EXPECT_TRUE(std::isnan(test::max_rel_diff(std::vector<float>{1.0f}, want)));
  EXPECT_FALSE(test::max_rel_diff(std::vector<float>{1.0f, -200.0f, INFINITY}, want) < 1e-3);
  // A NaN after a large difference is still reported (std::max(worst, NaN) keeps worst).
  EXPECT_TRUE(std::isnan(test::max_rel_diff(std::vector<float>{9.0f, -200.0f, NAN}, want)));
}

TEST(TestUtil, SeedIsStableAndRngFollowsTheTestName) {
  EXPECT_EQ(test::seed(), test::seed());
  auto a = test::rng(), b = test::rng();
  EXPECT_EQ(a(), b());
  if (const char* env = std::getenv("STRATA_TEST_SEED"); env && *env) {
    EXPECT_EQ(test::seed(), std::strtoull(env, nullptr, 10));
  }
}

}  // namespace
}  // namespace strata
