// Shared by the CUDA tests: seeded random inputs, fp16 rounding, device upload / download with
// the output poisoned first, and one closeness check per dtype.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/ops.h"
#include "tests/test_util.h"

namespace strata::cuda::test {

// The suites' shared seed (STRATA_TEST_SEED replays) and per-test generator.
using strata::test::rng;
using strata::test::seed;

std::vector<float> random_floats(std::mt19937_64& gen, size_t n, float lo = -1.0f, float hi = 1.0f);
// fp16 bits of v and v rounded through fp16 (what the CPU reference must see).
std::vector<Fp16> to_f16(const std::vector<float>& v);
std::vector<float> round_f16(const std::vector<float>& v);
std::vector<float> from_f16(const std::vector<Fp16>& v);

Stream& stream();

template <typename T>
DeviceBuffer upload(const std::vector<T>& host) {
  DeviceBuffer buf(host.size() * sizeof(T));
  if (!host.empty()) copy_h2d(buf.data(), host.data(), host.size() * sizeof(T), stream());
  stream().synchronize();
  return buf;
}

// A device buffer of n elements filled with NaN bytes, so unwritten outputs cannot pass.
template <typename T>
DeviceBuffer poisoned(size_t n) {
  DeviceBuffer buf(n * sizeof(T));
  fill_bytes(buf.data(), 0xFF, n * sizeof(T), stream());
  return buf;
}

template <typename T>
std::vector<T> download(const DeviceBuffer& buf, size_t n) {
  std::vector<T> host(n);
  stream().synchronize();
  copy_d2h(host.data(), buf.data(), n * sizeof(T), stream());
  stream().synchronize();
  return host;
}

// Empty when every |got - want| <= rel * (|want| + rms(want)) and nothing is NaN; else a line
// naming the first offender and the count. The rms term keeps cancellation from failing.
std::string mismatch(const std::vector<float>& got, const std::vector<float>& want, double rel);

inline constexpr double kRelF16 = 3e-3;  // fp16 outputs: 2^-11 rounding plus fp32 order effects
inline constexpr double kRelF32 = 1e-4;  // fp32 outputs of fp32 accumulations

}  // namespace strata::cuda::test
