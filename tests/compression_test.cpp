// Group-wise quantisation: the per-group error bound the format implies, the matrix layout
// against a per-column reference, tiered arrays of groups, and the bytes compressed data takes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "core/dtype.h"
#include "kernels/cpu/quant.h"
#include "model/model_config.h"
#include "runtime/engine.h"
#include "runtime/memory_plan.h"
#include "runtime/packed_stage.h"
#include "runtime/tiered_array.h"
#include "test_util.h"

namespace strata {
namespace {

// The worst error a group can have: half a step, plus what storing scale and min in fp16
// moves the grid by (the top code sits kMaxCode steps above min).
float group_bound(int bits, float lo, float hi) {
  const float max_code = static_cast<float>((1 << bits) - 1);
  const float scale = (hi - lo) / max_code;
  const float scale16 = fp16_to_fp32(fp32_to_fp16(scale));
  const float min16 = fp16_to_fp32(fp32_to_fp16(lo));
  return 0.5f * scale16 + std::fabs(min16 - lo) + max_code * std::fabs(scale16 - scale) +
         1e-6f * (std::fabs(lo) + std::fabs(hi));
}

TEST(Quantize, RoundTripWithinTheFormatsBound) {
  auto rng = test::rng();  // seed printed; STRATA_TEST_SEED replays
  for (int bits : {4, 8}) {
    for (int64_t group_len : {64, 48, 16, 1}) {
      for (int64_t n : {1, 63, 64, 65, 1000, 4099}) {
        SCOPED_TRACE(testing::Message() << bits << " bits, groups of " << group_len << ", n " << n);
        std::vector<float> x(n);
        const float spread = std::uniform_real_distribution<float>(1e-3f, 50)(rng);
        std::normal_distribution<float> d(std::uniform_real_distribution<float>(-5, 5)(rng),
                                          spread);
        for (auto& v : x) v = d(rng);
        if (n > 70) std::fill(x.begin(), x.begin() + 64, 3.25f);  // a constant group
        std::vector<uint8_t> packed(quant_groups(n, group_len) * quant_group_bytes(bits));
        quantize(bits, x.data(), n, group_len, packed.data());
        std::vector<float> y(n, NAN);
        dequantize(bits, packed.data(), n, group_len, y.data());
        for (int64_t g = 0; g * group_len < n; ++g) {
          const int64_t b = g * group_len, e = std::min(n, b + group_len);
          const auto [lo, hi] = std::minmax_element(x.begin() + b, x.begin() + e);
          const float bound = group_bound(bits, *lo, *hi);
          for (int64_t i = b; i < e; ++i)
            ASSERT_LE(std::fabs(y[i] - x[i]), bound) << "element " << i;
        }
      }
    }
  }
}

TEST(Quantize, EightBitsIsFinerThanFour) {
  std::mt19937 rng(5);
  std::normal_distribution<float> d(0, 1);
  std::vector<float> x(4096);
  for (auto& v : x) v = d(rng);
  double err[2] = {0, 0};
  for (int i = 0; i < 2; ++i) {
    const int bits = i == 0 ? 4 : 8;
    std::vector<uint8_t> packed(quant_groups(4096, 64) * quant_group_bytes(bits));
    std::vector<float> y(4096);
    quantize(bits, x.data(), 4096, 64, packed.data());
    dequantize(bits, packed.data(), 4096, 64, y.data());
    for (size_t j = 0; j < x.size(); ++j) err[i] += std::fabs(y[j] - x[j]);
  }
  EXPECT_GT(err[0], 8 * err[1]);  // 16x finer steps
}

// The matrix form groups along rows; the reference quantises each column on its own.
TEST(Quantize, MatrixGroupsRunAlongTheOutputDimension) {
  auto rng = test::rng();  // seed printed; STRATA_TEST_SEED replays
  std::normal_distribution<float> d(0, 1);
  for (int bits : {4, 8}) {
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{130, 7}, {64, 1}, {5, 33}, {192, 48}}) {
      std::vector<float> w(rows * cols);
      for (auto& v : w) v = d(rng);
      std::vector<uint8_t> packed(quantized_matrix_bytes(bits, rows, cols));
      quantize_matrix(bits, w.data(), rows, cols, packed.data());
      std::vector<float> got(rows * cols, NAN);
      dequantize_matrix(bits, packed.data(), rows, cols, got.data());
      const uint64_t col_bytes = quant_groups(rows, 64) * quant_group_bytes(bits);
      for (int64_t c = 0; c < cols; ++c) {
        std::vector<float> column(rows), want(rows);
        for (int64_t r = 0; r < rows; ++r) column[r] = w[r * cols + c];
        std::vector<uint8_t> ref(col_bytes);
        quantize(bits, column.data(), rows, 64, ref.data());
        ASSERT_TRUE(std::equal(ref.begin(), ref.end(), packed.begin() + c * col_bytes))
            << "column " << c;
        dequantize(bits, ref.data(), rows, 64, want.data());
        for (int64_t r = 0; r < rows; ++r) ASSERT_EQ(got[r * cols + c], want[r]);
      }
    }
  }
}

// Stores of random whole-group ranges, with everything outside the range poisoned, leave the
// other groups as they were: edge blocks on disk are read back, not re-encoded.
TEST(TieredArray, QuantisedRangesKeepTheirNeighbours) {
  test::TempDir dir;
  auto rng = test::rng();  // seed printed; STRATA_TEST_SEED replays
  std::normal_distribution<float> d(0, 3);
  for (int bits : {4, 8}) {
    for (TierSplit split : {TierSplit{100, 0}, TierSplit{0, 100}, TierSplit{0, 0},
                            TierSplit{30, 30}, TierSplit{3, 0}}) {
      SCOPED_TRACE(testing::Message()
                   << bits << " bits " << split.gpu_percent << "/" << split.cpu_percent);
      const int64_t group = 16, n = 16 * 1001;
      DiskStore disk(dir.path().string(), 1 << 20);
      TierCounters counters;
      TieredArray array(n, StoredFormat::quantized(bits, group), split, &disk, counters);
      std::vector<float> plain(n);
      for (auto& v : plain) v = d(rng);
      array.fill(plain.data());
      auto expected = [&](std::vector<float> values) {
        std::vector<uint8_t> packed(quant_groups(n, group) * quant_group_bytes(bits));
        quantize(bits, values.data(), n, group, packed.data());
        dequantize(bits, packed.data(), n, group, values.data());
        return values;
      };
      HostBuffer staging(array.staging_bytes() + 4096);
      for (int round = 0; round < 30; ++round) {
        int64_t b = rng() % (n / group), e = rng() % (n / group);
        if (b > e) std::swap(b, e);
        b *= group;
        e = (e + 1) * group;
        std::vector<float> work(n, NAN);
        for (int64_t i = b; i < e; ++i) work[i] = plain[i] = d(rng);
        array.store(work.data(), b, e, staging);
        std::vector<float> check(n, NAN);
        array.load(check.data(), 0, n, staging);
        ASSERT_EQ(check, expected(plain)) << "after storing [" << b << ", " << e << ")";
      }
    }
  }
}

// FlexGen's figure: 4-bit groups of 64 take about 28% of the fp16 bytes, on every tier.
TEST(Compression, EveryTierHoldsAtMostThirtyPercentOfFp16) {
  const ModelConfig c = parse_model_config(builtin_config_json("opt-1.3b"), "opt-1.3b");
  for (bool sep : {false, true}) {
    for (const auto& layout : stage_layouts(c, sep)) {
      const PackedStage p = PackedStage::of(layout, 4);
      for (const auto& t : p.tensors) {
        if (t.quantized) EXPECT_LE(t.bytes, 0.30 * 2 * t.rows * t.cols);
      }
    }
  }
  EngineOptions o;
  o.max_prompt_len = 512;
  o.gen_len = 32;
  o.policy.gpu_batch_size = 8;
  for (TierSplit s : {TierSplit{100, 0}, TierSplit{0, 100}, TierSplit{0, 0}, TierSplit{20, 30}}) {
    o.policy.weights = o.policy.cache = s;
    o.policy.compress_weight = o.policy.compress_cache = false;
    const MemoryPlan full = plan_memory(c, o);
    o.policy.compress_weight = o.policy.compress_cache = true;
    const MemoryPlan small = plan_memory(c, o);
    for (int t = 0; t < kNumTiers; ++t) {
      SCOPED_TRACE(testing::Message() << "tier " << t << " split " << s.gpu_percent);
      // Weights are fp16 uncompressed; the GPU tier holds them as fp32 there, the cache is fp32.
      const double fp16_weights = full.weights[t] * (t == 0 ? 0.5 : 1.0);
      EXPECT_LE(small.weights[t], 0.30 * fp16_weights + 3 * 4096.0 * 1000);
      EXPECT_LE(small.cache[t], 0.30 * full.cache[t] / 2 + 4096.0 * 200);
    }
  }
}

}  // namespace
}  // namespace strata
