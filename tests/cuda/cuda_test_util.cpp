#include "tests/cuda/cuda_test_util.h"

#include <gtest/gtest.h>

#include <cmath>
#include <sstream>

#include "core/dtype.h"

namespace strata::cuda::test {

std::vector<float> random_floats(std::mt19937_64& gen, size_t n, float lo, float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

std::vector<Fp16> to_f16(const std::vector<float>& v) {
  std::vector<Fp16> out(v.size());
  convert_from_f32(DType::kF16, v.data(), out.data(), v.size());
  return out;
}

std::vector<float> from_f16(const std::vector<Fp16>& v) {
  std::vector<float> out(v.size());
  convert_to_f32(DType::kF16, v.data(), out.data(), v.size());
  return out;
}

std::vector<float> round_f16(const std::vector<float>& v) {
  return from_f16(to_f16(v));
}

Stream& stream() {
  static Stream s;
  return s;
}

std::string mismatch(const std::vector<float>& got, const std::vector<float>& want, double rel) {
  if (got.size() != want.size()) return "sizes differ";
  double sq = 0;
  for (float w : want) sq += static_cast<double>(w) * w;
  const double rms = want.empty() ? 0 : std::sqrt(sq / static_cast<double>(want.size()));
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (!(err <= rel * (std::fabs(want[i]) + rms))) {  // NaN fails too
      if (bad++ == 0) first = i;
    }
  }
  if (bad == 0) return "";
  std::ostringstream out;
  out << bad << " of " << got.size() << " outside rel " << rel << "; first at " << first << ": got "
      << got[first] << " want " << want[first] << " (rms " << rms << ")";
  return out.str();
}

}  // namespace strata::cuda::test
