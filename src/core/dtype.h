// Element types of stored tensors and conversions to the fp32 the CPU computes in.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace strata {

enum class DType : uint8_t { kF32, kF16, kBF16 };

size_t dtype_size(DType dtype);
std::string_view dtype_name(DType dtype);  // safetensors spelling: F32, F16, BF16
std::optional<DType> dtype_from_safetensors(std::string_view name);
std::optional<DType> dtype_from_torch(std::string_view name);  // "float16", ...

float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);  // round to nearest even
inline float bf16_to_fp32(uint16_t b) {
  uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  __builtin_memcpy(&f, &bits, 4);
  return f;
}
uint16_t fp32_to_bf16(float f);  // round to nearest even

// Index of the first of n elements of src (in dtype) that is NaN or infinite, or n when all are
// finite: one pass over the bits (exponent all ones), cheap beside reading them.
size_t first_non_finite(DType dtype, const void* src, size_t n);

// Converts n elements of src (in dtype) to fp32.
void convert_to_f32(DType dtype, const void* src, float* dst, size_t n);
// Converts n fp32 values to dtype.
void convert_from_f32(DType dtype, const float* src, void* dst, size_t n);

}  // namespace strata
