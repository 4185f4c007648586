// GEMM, bias + activation, layer norm, residual add and embedding against the CPU references.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "kernels/cpu/reference.h"
#include "kernels/cpu/reference_cuda_ops.h"
#include "tests/cuda/cuda_test_util.h"

namespace strata::cuda {
namespace {

using test::download;
using test::mismatch;
using test::poisoned;
using test::upload;

struct GemmShape {
  int64_t m, n, k;
};

class Linear : public ::testing::TestWithParam<GemmShape> {};

TEST_P(Linear, MatchesReferenceForEachActivation) {
  const auto [m, n, k] = GetParam();
  auto gen = test::rng();
  const auto x = test::round_f16(test::random_floats(gen, m * k));
  const auto w = test::round_f16(test::random_floats(gen, n * k));
  const auto b = test::round_f16(test::random_floats(gen, n));
  std::vector<float> want(m * n);
  cpu::ref::linear(x.data(), w.data(), b.data(), want.data(), m, n, k);
  auto dx = upload(test::to_f16(x)), dw = upload(test::to_f16(w)), db = upload(test::to_f16(b));
  Blas blas;
  // Room for 2 rows only where more than 2 come: the rows go through it in blocks.
  DeviceBuffer scratch(static_cast<size_t>(std::min<int64_t>(m, 2) * n) * 4);
  blas.set_output_scratch(scratch.data(), scratch.size_bytes());
  for (Activation act : {Activation::kNone, Activation::kRelu, Activation::kGelu}) {
    auto expect = want;
    if (act == Activation::kRelu) {
      for (auto& v : expect) v = std::max(v, 0.0f);
    } else if (act == Activation::kGelu) {
      cpu::ref::gelu(expect.data(), m * n);
    }
    auto dy = poisoned<Fp16>(m * n);
    linear(blas, dx.as<Fp16>(), dw.as<Fp16>(), db.as<Fp16>(), dy.as<Fp16>(), m, n, k, act,
           test::stream());
    EXPECT_EQ(
        mismatch(test::from_f16(download<Fp16>(dy, m * n)), test::round_f16(expect), test::kRelF16),
        "")
        << "activation " << static_cast<int>(act);
  }
  auto dy32 = poisoned<float>(m * n);
  linear(blas, dx.as<Fp16>(), dw.as<Fp16>(), db.as<Fp16>(), dy32.as<float>(), m, n, k,
         test::stream());
  EXPECT_EQ(mismatch(download<float>(dy32, m * n), want, test::kRelF32), "");
}

INSTANTIATE_TEST_SUITE_P(OddShapes, Linear,
                         ::testing::Values(GemmShape{1, 1, 1}, GemmShape{3, 77, 129},
                                           GemmShape{17, 250, 64}, GemmShape{129, 65, 333},
                                           GemmShape{1, 1000, 1024}));

// A GEMM sum past fp16's 65504 that the bias brings back in range: the fp32 output is rounded
// once, after the bias, so it is finite, where an fp16 GEMM output would already be inf.
TEST(Linear, BiasAppliesBeforeTheRoundingToFp16) {
  const int64_t m = 3, n = 5, k = 256;  // each sum is 256 * 16 * 16 = 65536
  auto dx = upload(test::to_f16(std::vector<float>(m * k, 16.0f)));
  auto dw = upload(test::to_f16(std::vector<float>(n * k, 16.0f)));
  auto db = upload(test::to_f16(std::vector<float>(n, -1024.0f)));
  Blas blas;
  DeviceBuffer scratch(Blas::output_scratch_bytes(m, n));
  blas.set_output_scratch(scratch.data(), scratch.size_bytes());
  auto dy = poisoned<Fp16>(m * n);
  linear(blas, dx.as<Fp16>(), dw.as<Fp16>(), db.as<Fp16>(), dy.as<Fp16>(), m, n, k,
         Activation::kRelu, test::stream());
  for (float v : test::from_f16(download<Fp16>(dy, m * n))) EXPECT_EQ(v, 64512.0f);
  // Without a scratch such a linear is refused, not computed the rounding-twice way.
  Blas bare;
  EXPECT_THROW(linear(bare, dx.as<Fp16>(), dw.as<Fp16>(), db.as<Fp16>(), dy.as<Fp16>(), m, n, k,
                      Activation::kNone, test::stream()),
               Error);
}

TEST(LayerNorm, MatchesReferenceOnOddDims) {
  auto gen = test::rng();
  for (int64_t dim : {1, 7, 100, 1000, 2561}) {
    const int64_t rows = 13;
    const auto x = test::round_f16(test::random_floats(gen, rows * dim, -3.0f, 5.0f));
    const auto g = test::round_f16(test::random_floats(gen, dim, 0.5f, 1.5f));
    const auto b = test::round_f16(test::random_floats(gen, dim));
    std::vector<float> want(rows * dim);
    cpu::ref::layer_norm(x.data(), g.data(), b.data(), want.data(), rows, dim, kLayerNormEps);
    auto dx = upload(test::to_f16(x)), dg = upload(test::to_f16(g)), db = upload(test::to_f16(b));
    auto dy = poisoned<Fp16>(rows * dim);
    layer_norm(dx.as<Fp16>(), dg.as<Fp16>(), db.as<Fp16>(), dy.as<Fp16>(), rows, dim, kLayerNormEps,
               test::stream());
    EXPECT_EQ(mismatch(test::from_f16(download<Fp16>(dy, rows * dim)), want, test::kRelF16), "")
        << "dim " << dim;
  }
}

TEST(RmsNorm, MatchesReferenceOnOddDims) {
  auto gen = test::rng();
  for (int64_t dim : {1, 7, 100, 1000, 2561}) {
    const int64_t rows = 13;
    const auto x = test::round_f16(test::random_floats(gen, rows * dim, -3.0f, 5.0f));
    const auto w = test::round_f16(test::random_floats(gen, dim, 0.5f, 1.5f));
    std::vector<float> want(rows * dim);
    cpu::ref::rms_norm(x.data(), w.data(), want.data(), rows, dim, 1e-6f);
    auto dx = upload(test::to_f16(x)), dw = upload(test::to_f16(w));
    auto dy = poisoned<Fp16>(rows * dim);
    rms_norm(dx.as<Fp16>(), dw.as<Fp16>(), dy.as<Fp16>(), rows, dim, 1e-6f, test::stream());
    EXPECT_EQ(mismatch(test::from_f16(download<Fp16>(dy, rows * dim)), want, test::kRelF16), "")
        << "dim " << dim;
  }
}

// Rows with a stride, positions up to 100k (the fp32 angle is what HF forms), odd head counts.
TEST(Rotary, MatchesReferenceAtLongPositions) {
  auto gen = test::rng();
  const int64_t rows = 9, heads = 5, head_dim = 48, ld = heads * head_dim + 3;
  const auto x = test::round_f16(test::random_floats(gen, rows * ld));
  std::vector<float> inv_freq(head_dim / 2);
  for (int64_t i = 0; i < head_dim / 2; ++i) {
    inv_freq[i] = static_cast<float>(std::pow(500000.0, -2.0 * double(i) / double(head_dim)));
  }
  const std::vector<int32_t> positions = {0, 1, 2, 31, 255, 4096, 8191, 65535, 100000};
  const std::vector<int64_t> positions64(positions.begin(), positions.end());
  auto want = x;
  cpu::ref::rotary(want.data(), ld, rows, positions64.data(), heads, head_dim, inv_freq.data());
  auto dx = upload(test::to_f16(x)), dpos = upload(positions), dfreq = upload(inv_freq);
  rotary(dx.as<Fp16>(), ld, rows, dpos.as<int32_t>(), heads, head_dim, dfreq.as<float>(),
         test::stream());
  EXPECT_EQ(mismatch(test::from_f16(download<Fp16>(dx, rows * ld)), want, test::kRelF16), "");
}

TEST(SiluMul, MatchesReference) {
  auto gen = test::rng();
  const int64_t n = 100003;
  const auto g = test::round_f16(test::random_floats(gen, n, -8.0f, 8.0f));
  const auto u = test::round_f16(test::random_floats(gen, n));
  auto want = g;
  cpu::ref::silu_mul(want.data(), u.data(), n);
  auto dg = upload(test::to_f16(g)), du = upload(test::to_f16(u));
  silu_mul(dg.as<Fp16>(), du.as<Fp16>(), n, test::stream());
  EXPECT_EQ(mismatch(test::from_f16(download<Fp16>(dg, n)), want, test::kRelF16), "");
}

TEST(AddAndConvert, AreExactOnFp16) {
  auto gen = test::rng();
  const int64_t n = 100003;
  const auto a = test::round_f16(test::random_floats(gen, n)),
             b = test::round_f16(test::random_floats(gen, n));
  std::vector<float> sum(n);
  for (int64_t i = 0; i < n; ++i) sum[i] = a[i] + b[i];
  auto da = upload(test::to_f16(a)), db = upload(test::to_f16(b));
  add_inplace(da.as<Fp16>(), db.as<Fp16>(), n, test::stream());
  EXPECT_EQ(download<Fp16>(da, n), test::to_f16(sum));
  auto d32 = poisoned<float>(n);
  convert(da.as<Fp16>(), d32.as<float>(), n, test::stream());
  EXPECT_EQ(download<float>(d32, n), test::round_f16(sum));
  auto d16 = poisoned<Fp16>(n);
  const auto raw = test::random_floats(gen, n, -70000.0f, 70000.0f);  // overflows to inf too
  auto draw = upload(raw);
  convert(draw.as<float>(), d16.as<Fp16>(), n, test::stream());
  EXPECT_EQ(download<Fp16>(d16, n), test::to_f16(raw));
}

TEST(Embed, MatchesReferenceWithLeftPaddingAndCachedPrefixes) {
  auto gen = test::rng();
  const int64_t vocab = 97, dim = 75, max_pos = 64;
  const std::vector<int32_t> row_offsets = {0, 5, 6, 14}, starts = {0, 9, 3}, pad = {2, 0, 3};
  const int64_t n_seqs = 3, rows = row_offsets.back();
  std::vector<int32_t> tokens(rows);
  for (auto& t : tokens) t = static_cast<int32_t>(gen() % vocab);
  const auto table = test::round_f16(test::random_floats(gen, vocab * dim));
  const auto positions = test::round_f16(test::random_floats(gen, (max_pos + 2) * dim));
  std::vector<float> want(rows * dim);
  cpu::ref::embed(table.data(), positions.data(), tokens.data(), row_offsets.data(), starts.data(),
                  pad.data(), n_seqs, dim, want.data());
  auto dt = upload(test::to_f16(table)), dp = upload(test::to_f16(positions));
  auto dtok = upload(tokens), doff = upload(row_offsets), dstart = upload(starts),
       dpad = upload(pad);
  auto out = poisoned<Fp16>(rows * dim);
  embed(dt.as<Fp16>(), dp.as<Fp16>(), dtok.as<int32_t>(), doff.as<int32_t>(), dstart.as<int32_t>(),
        dpad.as<int32_t>(), n_seqs, rows, dim, out.as<Fp16>(), test::stream());
  // One fp32 add of two fp16 values, rounded once: bit-exact.
  EXPECT_EQ(download<Fp16>(out, rows * dim), test::to_f16(want));

  // Positions only (after OPT-350m's project_in), no padding.
  const auto words = test::round_f16(test::random_floats(gen, rows * dim));
  auto want2 = words;
  cpu::ref::embed(nullptr, positions.data(), nullptr, row_offsets.data(), starts.data(), nullptr,
                  n_seqs, dim, want2.data());
  auto dw = upload(test::to_f16(words));
  embed(nullptr, dp.as<Fp16>(), nullptr, doff.as<int32_t>(), dstart.as<int32_t>(), nullptr, n_seqs,
        rows, dim, dw.as<Fp16>(), test::stream());
  EXPECT_EQ(download<Fp16>(dw, rows * dim), test::to_f16(want2));
}

}  // namespace
}  // namespace strata::cuda
