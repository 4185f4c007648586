// The GPU's fp16 conversion against the CPU's, over every fp16 bit pattern.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "kernels/cuda/device.h"

TEST(CudaConversion, Fp16ToFp32MatchesCpu) {
  std::vector<uint16_t> all(65536);
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint16_t>(i);
  std::vector<float> gpu(all.size(), std::nanf("")), cpu(all.size());
  strata::cuda::fp16_to_fp32_roundtrip(all.data(), gpu.data(), all.size());
  strata::convert_to_f32(strata::DType::kF16, all.data(), cpu.data(), all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    if (std::isnan(cpu[i])) {
      EXPECT_TRUE(std::isnan(gpu[i])) << i;
    } else {
      EXPECT_EQ(std::memcmp(&gpu[i], &cpu[i], 4), 0) << i;
    }
  }
}
