// Dequantisation must match kernels/cpu/quant.cpp bit for bit; the fused 4-bit linear must match
// dequantize + reference linear.
#include <gtest/gtest.h>

#include <cstring>

#include "core/dtype.h"
#include "kernels/cpu/quant.h"
#include "kernels/cpu/reference.h"
#include "tests/cuda/cuda_test_util.h"

namespace strata::cuda {
namespace {

using test::download;
using test::poisoned;
using test::upload;

std::vector<uint8_t> bytes_of(const std::vector<float>& v, int bits, int64_t group_len) {
  std::vector<uint8_t> out(quant_groups(static_cast<int64_t>(v.size()), group_len) *
                           quant_group_bytes(bits));
  strata::quantize(bits, v.data(), static_cast<int64_t>(v.size()), group_len, out.data());
  return out;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

TEST(Dequantize, ContiguousGroupsBitExact) {
  auto gen = test::rng();
  for (int bits : {4, 8}) {
    for (int64_t group_len : {1, 13, 63, 64}) {
      for (int64_t n : {1, 100, 4097}) {
        const auto src = test::random_floats(gen, n, -3.0f, 2.0f);
        const auto packed = bytes_of(src, bits, group_len);
        std::vector<float> want(n);
        strata::dequantize(bits, packed.data(), n, group_len, want.data());
        auto dsrc = upload(packed);
        auto d32 = poisoned<float>(n);
        auto d16 = poisoned<Fp16>(n);
        dequantize(bits, dsrc.data(), n, group_len, d32.as<float>(), test::stream());
        dequantize(bits, dsrc.data(), n, group_len, d16.as<Fp16>(), test::stream());
        EXPECT_TRUE(same_bits(download<float>(d32, n), want))
            << bits << " bits, group " << group_len << ", n " << n;
        EXPECT_EQ(download<Fp16>(d16, n), test::to_f16(want));
      }
    }
  }
}

TEST(Quantize, ContiguousGroupsMatchCpuBytes) {
  auto gen = test::rng();
  for (int bits : {4, 8}) {
    for (int64_t group_len : {1, 2, 13, 64}) {
      for (int64_t n : {1, 127, 4096 + 33}) {
        // Through fp16 first: the GPU quantises fp16 activations, the CPU the same values in fp32.
        const auto src = test::round_f16(test::random_floats(gen, n, -3.0f, 2.0f));
        const auto want = bytes_of(src, bits, group_len);
        auto d16 = upload(test::to_f16(src)), d32 = upload(src);
        auto out16 = poisoned<uint8_t>(want.size()), out32 = poisoned<uint8_t>(want.size());
        quantize(bits, d16.as<Fp16>(), n, group_len, out16.data(), test::stream());
        quantize(bits, d32.as<float>(), n, group_len, out32.data(), test::stream());
        EXPECT_EQ(download<uint8_t>(out16, want.size()), want)
            << bits << " bits, group " << group_len << ", n " << n;
        EXPECT_EQ(download<uint8_t>(out32, want.size()), want)
            << bits << " bits, group " << group_len << ", n " << n;
      }
    }
  }
}

TEST(Dequantize, MatrixGroupedAlongRowsBitExact) {
  auto gen = test::rng();
  for (int bits : {4, 8}) {
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 1}, {65, 3}, {200, 77}, {1024, 129}}) {
      const auto src = test::random_floats(gen, rows * cols);
      std::vector<uint8_t> packed(quantized_matrix_bytes(bits, rows, cols));
      quantize_matrix(bits, src.data(), rows, cols, packed.data());
      std::vector<float> want(rows * cols);
      strata::dequantize_matrix(bits, packed.data(), rows, cols, want.data());
      auto dsrc = upload(packed);
      auto d32 = poisoned<float>(rows * cols);
      dequantize_matrix(bits, dsrc.data(), rows, cols, d32.as<float>(), test::stream());
      const auto got = download<float>(d32, rows * cols);
      EXPECT_TRUE(same_bits(got, want)) << bits << " bits " << rows << "x" << cols;
      auto d16 = poisoned<Fp16>(rows * cols);
      dequantize_matrix(bits, dsrc.data(), rows, cols, d16.as<Fp16>(), test::stream());
      EXPECT_EQ(download<Fp16>(d16, rows * cols), test::to_f16(want));

      // Negative control: one flipped bit of the first group's min must change the output
      // (a code would not do for a one-value group, whose scale is 0).
      packed[2] ^= 0x01;
      auto dbad = upload(packed);
      dequantize_matrix(bits, dbad.data(), rows, cols, d32.as<float>(), test::stream());
      EXPECT_FALSE(same_bits(download<float>(d32, rows * cols), want));
    }
  }
}

TEST(Q4Linear, MatchesDequantizeThenReference) {
  auto gen = test::rng();
  for (int64_t m : {1, 3, 8, 16}) {
    for (auto [n, k] : {std::pair<int64_t, int64_t>{1, 1}, {65, 33}, {300, 257}, {1024, 768}}) {
      const auto wf = test::random_floats(gen, n * k);
      std::vector<uint8_t> packed(quantized_matrix_bytes(4, n, k));
      quantize_matrix(4, wf.data(), n, k, packed.data());
      std::vector<float> w(n * k);
      strata::dequantize_matrix(4, packed.data(), n, k, w.data());
      const auto x = test::round_f16(test::random_floats(gen, m * k));
      const auto b = test::round_f16(test::random_floats(gen, n));
      std::vector<float> want(m * n);
      cpu::ref::linear(x.data(), w.data(), b.data(), want.data(), m, n, k);
      auto dx = upload(test::to_f16(x)), db = upload(test::to_f16(b)), dw = upload(packed);
      auto dy = poisoned<Fp16>(m * n);
      q4_linear(dx.as<Fp16>(), dw.data(), db.as<Fp16>(), dy.as<Fp16>(), m, n, k, test::stream());
      EXPECT_EQ(test::mismatch(test::from_f16(download<Fp16>(dy, m * n)), want, test::kRelF16), "")
          << m << "x" << n << "x" << k;
    }
  }
  EXPECT_ANY_THROW(
      q4_linear(nullptr, nullptr, nullptr, nullptr, kQ4LinearMaxRows + 1, 1, 1, test::stream()));
}

}  // namespace
}  // namespace strata::cuda
