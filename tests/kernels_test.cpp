// Every fast CPU kernel against its plain reference, on odd shapes.
#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <random>

#include "core/dtype.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/reference.h"
#include "kernels/cpu/reference_cuda_ops.h"
#include "test_util.h"

namespace strata {
namespace {

std::vector<float> random_vector(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  EXPECT_LT(test::max_rel_diff(got, want), tol);  // NaN fails
}

TEST(Kernels, LinearMatchesReference) {
  std::mt19937 rng(1);
  for (auto [m, n, k] :
       {std::tuple{1, 1, 1}, {3, 5, 7}, {17, 33, 65}, {130, 67, 129}, {1, 1000, 48}}) {
    SCOPED_TRACE(testing::Message() << m << "x" << n << "x" << k);
    auto x = random_vector(size_t(m) * k, rng), w = random_vector(size_t(n) * k, rng);
    auto bias = random_vector(size_t(n), rng);
    std::vector<float> got(size_t(m) * n, NAN), want(size_t(m) * n);
    cpu::linear(x.data(), w.data(), bias.data(), got.data(), m, n, k);
    cpu::ref::linear(x.data(), w.data(), bias.data(), want.data(), m, n, k);
    expect_close(got, want, 1e-4);
    cpu::linear(x.data(), w.data(), nullptr, got.data(), m, n, k);
    cpu::ref::linear(x.data(), w.data(), nullptr, want.data(), m, n, k);
    expect_close(got, want, 1e-4);
  }
}

// A weight rewritten once into the GEMM library's layout gives the plain weight's bits at every
// row count (decode and prefill), so a stage kept blocked agrees with one streamed plain.
TEST(Kernels, BlockedWeightGivesThePlainWeightsBits) {
  std::mt19937 rng(5);
  const int64_t n = 640, k = 512;  // n * k at oneDNN's threshold, n a multiple of 64 blocks
  if (!cpu::can_block_weight(n, k)) GTEST_SKIP() << "GEMM is " << cpu::gemm_library();
  EXPECT_FALSE(cpu::can_block_weight(67, 129));  // small: OpenBLAS
  const auto w = random_vector(size_t(n) * k, rng), bias = random_vector(size_t(n), rng);
  auto blocked = w;
  cpu::block_weight(blocked.data(), n, k);
  EXPECT_NE(blocked, w);
  for (int64_t m : {1, 7, 32, 33, 300}) {
    SCOPED_TRACE(testing::Message() << m << " rows");
    const auto x = random_vector(size_t(m * k), rng);
    std::vector<float> plain(size_t(m * n), NAN), got(size_t(m * n), NAN), want(size_t(m * n));
    cpu::linear(x.data(), w.data(), bias.data(), plain.data(), m, n, k);
    cpu::linear_blocked(x.data(), blocked.data(), bias.data(), got.data(), m, n, k);
    cpu::ref::linear(x.data(), w.data(), bias.data(), want.data(), m, n, k);
    expect_close(got, want, 1e-4);
    EXPECT_EQ(0, std::memcmp(got.data(), plain.data(), got.size() * sizeof(float)));
  }
}

TEST(Kernels, LayerNormMatchesReference) {
  std::mt19937 rng(2);
  for (auto [rows, dim] : {std::pair{1, 1}, {3, 7}, {5, 48}, {2, 1023}}) {
    auto x = random_vector(size_t(rows) * dim, rng, 3.0f);
    for (auto& v : x) v += 5.0f;  // a mean far from 0 tests the centring
    auto gamma = random_vector(size_t(dim), rng), beta = random_vector(size_t(dim), rng);
    std::vector<float> got(x.size(), NAN), want(x.size());
    cpu::layer_norm(x.data(), gamma.data(), beta.data(), got.data(), rows, dim);
    cpu::ref::layer_norm(x.data(), gamma.data(), beta.data(), want.data(), rows, dim, 1e-5f);
    expect_close(got, want, 1e-5);
    cpu::layer_norm(x.data(), nullptr, nullptr, got.data(), rows, dim);
    cpu::ref::layer_norm(x.data(), nullptr, nullptr, want.data(), rows, dim, 1e-5f);
    expect_close(got, want, 1e-5);
  }
}

TEST(Kernels, GeluMatchesReference) {
  std::mt19937 rng(3);
  auto x = random_vector(1001, rng, 4.0f);
  auto got = x, want = x;
  cpu::gelu(got.data(), 1001);
  cpu::ref::gelu(want.data(), 1001);
  expect_close(got, want, 1e-6);
}

TEST(Kernels, AttentionMatchesReferenceForPrefillAndDecode) {
  std::mt19937 rng(4);
  // (start, n_new): both the loop path (few new tokens) and the GEMM path, with a cached prefix;
  // kv_heads < heads is grouped-query attention.
  for (auto [start, n_new, heads, kv_heads, head_dim] : {std::tuple{0, 1, 1, 1, 1},
                                                         {0, 5, 3, 3, 7},
                                                         {9, 1, 4, 4, 16},
                                                         {0, 33, 2, 2, 12},
                                                         {20, 13, 3, 3, 8},
                                                         {101, 1, 5, 5, 64},
                                                         {0, 100, 4, 4, 64},
                                                         {7, 2, 8, 2, 24},
                                                         {3, 17, 6, 3, 10},
                                                         {40, 1, 4, 1, 32}}) {
    SCOPED_TRACE(testing::Message()
                 << start << "+" << n_new << " h" << heads << "/" << kv_heads << " d" << head_dim);
    const int64_t ld = heads * head_dim + 3;  // padded rows test the strides
    const int64_t ld_kv = kv_heads * head_dim + 5;
    const int64_t n_keys = start + n_new;
    auto q = random_vector(size_t(n_new * ld), rng),
         k = random_vector(size_t(n_keys * ld_kv), rng, 2.0f);
    auto v = random_vector(size_t(n_keys * ld_kv), rng);
    std::vector<float> got(size_t(n_new * ld), NAN), want(size_t(n_new * ld), NAN);
    cpu::attention(q.data(), ld, k.data(), v.data(), ld_kv, got.data(), start, n_new, heads,
                   kv_heads, head_dim);
    cpu::ref::attention(q.data(), ld, k.data(), v.data(), ld_kv, want.data(), start, n_new, heads,
                        kv_heads, head_dim);
    for (int64_t i = 0; i < n_new; ++i) {
      for (int64_t c = 0; c < heads * head_dim; ++c) {
        ASSERT_NEAR(got[i * ld + c], want[i * ld + c], 1e-4) << "row " << i << " col " << c;
      }
    }
  }
}

// Many sequences' attention through for_sequences: decode steps split the sequences over the
// threads, longer ones each sequence's heads; either way every bit must match one thread's.
TEST(Kernels, AttentionOfManySequencesIsTheSameOnAnyThreadCount) {
  std::mt19937 rng(6);
  const int64_t heads = 8, kv_heads = 4, head_dim = 40, ld = heads * head_dim,
                ld_kv = kv_heads * head_dim, n_seqs = 5, start = 30;
  for (const int64_t n_new : {1, 3, 12}) {
    SCOPED_TRACE(testing::Message() << n_new << " new tokens");
    const int64_t n_keys = start + n_new;
    auto q = random_vector(size_t(n_seqs * n_new * ld), rng);
    auto kv = random_vector(size_t(n_seqs * 2 * n_keys * ld_kv), rng, 2.0f);
    const auto run = [&](int threads) {
      cpu::set_compute_threads(threads);
      std::vector<float> out(q.size(), NAN);
      cpu::for_sequences(n_seqs, n_new, [&](int64_t s) {
        const float* k = kv.data() + s * 2 * n_keys * ld_kv;
        cpu::attention(q.data() + s * n_new * ld, ld, k, k + n_keys * ld_kv, ld_kv,
                       out.data() + s * n_new * ld, start, n_new, heads, kv_heads, head_dim);
      });
      cpu::set_compute_threads(0);
      return out;
    };
    const auto one = run(1), two = run(2), three = run(3);
    for (size_t i = 0; i < one.size(); ++i) {
      ASSERT_TRUE(std::isfinite(one[i])) << i;
      ASSERT_EQ(one[i], two[i]) << i;
      ASSERT_EQ(one[i], three[i]) << i;
    }
  }
}

// The tensor-core prefill kernel's twin (its tiles of 64 keys, online softmax, fp16
// probabilities) against the plain softmax in double, on shapes that leave partial tiles, a
// cached prefix, grouped-query heads and left padding (keys below first_key masked; queries in
// the padding get zeros). fp16 probabilities cost about 2^-11 relative; the bound is 4x that.
// The negative control (the twin told about no padding) must not pass.
TEST(Kernels, TiledPrefillTwinMatchesReference) {
  std::mt19937 rng(5);
  for (auto [start, n_new, heads, kv_heads, head_dim, first_key] : {std::tuple{0, 1, 1, 1, 64, 0},
                                                                    {0, 37, 3, 3, 64, 0},
                                                                    {45, 19, 4, 2, 128, 0},
                                                                    {0, 130, 2, 1, 64, 0},
                                                                    {7, 70, 5, 5, 128, 30},
                                                                    {100, 64, 2, 2, 64, 65},
                                                                    {3, 200, 4, 4, 24, 0}}) {
    SCOPED_TRACE(testing::Message() << start << "+" << n_new << " h" << heads << "/" << kv_heads
                                    << " d" << head_dim << " from " << first_key);
    const int64_t ld = heads * head_dim, ld_kv = kv_heads * head_dim, n_keys = start + n_new;
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    auto q = random_vector(size_t(n_new * ld), rng, 3 * scale);
    auto k = random_vector(size_t(n_keys * ld_kv), rng, 2.0f);
    auto v = random_vector(size_t(n_keys * ld_kv), rng);
    std::vector<float> got(q.size(), NAN), want(q.size(), 0.0f), unpadded(q.size(), NAN);
    cpu::ref::attention_tiled(q.data(), ld, k.data(), v.data(), ld_kv, got.data(), start, n_new,
                              heads, kv_heads, head_dim, first_key);
    const int64_t first_q = std::max<int64_t>(0, first_key - start);
    if (first_q < n_new) {
      cpu::ref::attention(q.data() + first_q * ld, ld, k.data() + first_key * ld_kv,
                          v.data() + first_key * ld_kv, ld_kv, want.data() + first_q * ld,
                          start + first_q - first_key, n_new - first_q, heads, kv_heads, head_dim);
    }
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      const double d = std::abs(double(got[i]) - want[i]);
      worst = std::isnan(d) ? INFINITY : std::max(worst, d);
    }
    EXPECT_LT(worst, 4 * 0x1p-11) << "largest difference";
    if (first_key > 0) {
      cpu::ref::attention_tiled(q.data(), ld, k.data(), v.data(), ld_kv, unpadded.data(), start,
                                n_new, heads, kv_heads, head_dim, 0);
      double control = 0;
      for (size_t i = 0; i < got.size(); ++i) {
        control = std::max(control, std::abs(double(unpadded[i]) - want[i]));
      }
      EXPECT_GT(control, 0.05) << "the negative control passed";
    }
  }
}

TEST(Kernels, RmsNormMatchesReference) {
  std::mt19937 rng(6);
  const int64_t rows = 7, dim = 96;
  auto x = random_vector(size_t(rows * dim), rng, 3.0f), w = random_vector(size_t(dim), rng);
  std::vector<float> got(x.size(), NAN), want(x.size(), NAN);
  cpu::rms_norm(x.data(), w.data(), got.data(), rows, dim, 1e-5f);
  cpu::ref::rms_norm(x.data(), w.data(), want.data(), rows, dim, 1e-5f);
  expect_close(got, want, 1e-6);
}

TEST(Kernels, RotaryMatchesReferenceAndKeepsNorms) {
  std::mt19937 rng(7);
  const int64_t rows = 5, heads = 3, head_dim = 16, ld = heads * head_dim + 2;
  auto x = random_vector(size_t(rows * ld), rng);
  std::vector<float> inv_freq(head_dim / 2);
  for (int64_t i = 0; i < head_dim / 2; ++i) {
    inv_freq[size_t(i)] = float(std::pow(10000.0, -2.0 * double(i) / double(head_dim)));
  }
  const std::vector<int64_t> positions = {0, 1, 17, 250, 4095};
  auto got = x, want = x;
  cpu::rotary(got.data(), ld, rows, positions.data(), heads, head_dim, inv_freq.data());
  cpu::ref::rotary(want.data(), ld, rows, positions.data(), heads, head_dim, inv_freq.data());
  expect_close(got, want, 1e-5);
  // Position 0 is the identity; the padding columns are untouched.
  for (int64_t c = 0; c < ld; ++c) EXPECT_EQ(got[size_t(c)], x[size_t(c)]) << c;
  for (int64_t r = 0; r < rows; ++r) {
    EXPECT_EQ(got[size_t(r * ld + ld - 1)], x[size_t(r * ld + ld - 1)]);
  }
}

TEST(Kernels, SiluMulMatchesReference) {
  std::mt19937 rng(8);
  auto gate = random_vector(1003, rng, 6.0f), up = random_vector(1003, rng);
  auto got = gate, want = gate;
  cpu::silu_mul(got.data(), up.data(), 1003);
  cpu::ref::silu_mul(want.data(), up.data(), 1003);
  expect_close(got, want, 1e-6);
}

TEST(Kernels, LogSoftmaxMatchesReference) {
  std::mt19937 rng(5);
  auto x = random_vector(50272, rng, 10.0f);
  std::vector<float> got(x.size()), want(x.size());
  cpu::log_softmax(x.data(), got.data(), int64_t(x.size()));
  cpu::ref::log_softmax(x.data(), want.data(), int64_t(x.size()));
  expect_close(got, want, 1e-5);
}

__attribute__((target("f16c"))) uint16_t hardware_fp16(float f) {
  return static_cast<uint16_t>(_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(f), 0), 0));
}
__attribute__((target("f16c"))) float hardware_fp32(uint16_t h) {
  return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}

// The scalar conversions against the processor's own (F16C), over every fp16 value and many
// fp32 values including subnormals, ties and overflow.
TEST(DType, Fp16ConversionsMatchHardware) {
  if (!__builtin_cpu_supports("f16c")) GTEST_SKIP() << "no F16C on this CPU to compare with";
  for (uint32_t h = 0; h < 65536; ++h) {
    const float want = hardware_fp32(uint16_t(h));
    const float got = fp16_to_fp32(uint16_t(h));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got));
    } else {
      ASSERT_EQ(std::memcmp(&got, &want, 4), 0) << "fp16 bits " << h;
    }
  }
  std::mt19937 rng(6);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 2000000; ++i) {
    uint32_t b = bits(rng);
    if (i % 2) b = (b & 0x80ffffff) | ((101 + (b >> 24) % 40) << 23);  // near fp16's range
    float f;
    std::memcpy(&f, &b, 4);
    if (std::isnan(f)) continue;
    ASSERT_EQ(fp32_to_fp16(f), hardware_fp16(f)) << "fp32 bits " << b;
  }
  std::vector<uint16_t> h(37);
  for (size_t i = 0; i < h.size(); ++i) h[i] = uint16_t(i * 1777);
  std::vector<float> bulk(h.size());
  convert_to_f32(DType::kF16, h.data(), bulk.data(), h.size());
  for (size_t i = 0; i < h.size(); ++i) {
    const float one = fp16_to_fp32(h[i]);
    EXPECT_EQ(std::memcmp(&bulk[i], &one, 4), 0) << "fp16 bits " << h[i];
  }
}

TEST(DType, Bf16RoundsToNearestEven) {
  EXPECT_EQ(fp32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(bf16_to_fp32(0x3f80), 1.0f);
  float f;
  uint32_t tie = 0x3f808000;  // exactly between 0x3f80 and 0x3f81: to even
  std::memcpy(&f, &tie, 4);
  EXPECT_EQ(fp32_to_bf16(f), 0x3f80);
  tie = 0x3f818000;
  std::memcpy(&f, &tie, 4);
  EXPECT_EQ(fp32_to_bf16(f), 0x3f82);
}

}  // namespace
}  // namespace strata
