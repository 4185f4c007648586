#include "core/dtype.h"

#include <cpuid.h>
#include <immintrin.h>

#include <cstring>

#include "core/error.h"

namespace strata {

size_t dtype_size(DType dtype) {
  return dtype == DType::kF32 ? 4 : 2;
}

std::string_view dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
  }
  return "?";
}

std::optional<DType> dtype_from_safetensors(std::string_view name) {
  if (name == "F32") return DType::kF32;
  if (name == "F16") return DType::kF16;
  if (name == "BF16") return DType::kBF16;
  return std::nullopt;
}

std::optional<DType> dtype_from_torch(std::string_view name) {
  if (name == "float32") return DType::kF32;
  if (name == "float16") return DType::kF16;
  if (name == "bfloat16") return DType::kBF16;
  return std::nullopt;
}

float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13) | (mant ? 0x400000u : 0u);  // NaNs come out quiet
  } else if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        mant <<= 1;
        ++e;
      } while ((mant & 0x400) == 0);
      bits = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | ((mant & 0x3ff) << 13);
    }
  } else {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t fp32_to_fp16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  const uint32_t abs = x & 0x7fffffff;
  if (abs >= 0x7f800000) return sign | 0x7c00 | (abs > 0x7f800000 ? 0x200 : 0);  // inf / nan
  if (abs >= 0x477ff000) return sign | 0x7c00;                                   // rounds to inf
  if (abs < 0x38800000) {  // subnormal or zero in fp16
    if (abs < 0x33000000) return sign;
    const uint32_t exp = abs >> 23;
    const uint32_t mant = (abs & 0x7fffff) | 0x800000;
    const uint32_t shift = 126 - exp;  // 14 + (112 - exp) + 13 - 13
    uint32_t result = mant >> (shift);
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (result & 1))) ++result;
    return sign | static_cast<uint16_t>(result);
  }
  uint32_t result = ((abs >> 13) - (112u << 10));
  const uint32_t rem = abs & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (result & 1))) ++result;
  return sign | static_cast<uint16_t>(result);
}

uint16_t fp32_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((x >> 16) | 0x40);
  x += 0x7fff + ((x >> 16) & 1);
  return static_cast<uint16_t>(x >> 16);
}

namespace {

__attribute__((target("avx2,f16c"))) void f16_to_f32_f16c(const uint16_t* src, float* dst,
                                                          size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) dst[i] = fp16_to_fp32(src[i]);
}

__attribute__((target("avx2,f16c"))) void f32_to_f16_f16c(const float* src, uint16_t* dst,
                                                          size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), h);
  }
  for (; i < n; ++i) dst[i] = fp32_to_fp16(src[i]);
}

bool has_f16c() {
  // CPUID's F16C bit, as clang 14's __builtin_cpu_supports does not know "f16c".
  static const bool value = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) && __builtin_cpu_supports("avx2");
  }();
  return value;
}

}  // namespace

namespace {

template <typename Bits>
size_t first_with_exponent(const void* src, size_t n, Bits exponent) {
  const auto* p = static_cast<const Bits*>(src);
  for (size_t i = 0; i < n; ++i) {
    if ((p[i] & exponent) == exponent) return i;
  }
  return n;
}

}  // namespace

size_t first_non_finite(DType dtype, const void* src, size_t n) {
  switch (dtype) {
    case DType::kF32:
      return first_with_exponent<uint32_t>(src, n, 0x7f800000u);
    case DType::kF16:
      return first_with_exponent<uint16_t>(src, n, 0x7c00);
    case DType::kBF16:
      return first_with_exponent<uint16_t>(src, n, 0x7f80);
  }
  STRATA_CHECK(false, "unknown dtype");
  return n;
}

void convert_to_f32(DType dtype, const void* src, float* dst, size_t n) {
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, n * 4);
      return;
    case DType::kF16: {
      const auto* h = static_cast<const uint16_t*>(src);
      if (has_f16c()) {
        f16_to_f32_f16c(h, dst, n);
      } else {
        for (size_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(h[i]);
      }
      return;
    }
    case DType::kBF16: {
      const auto* b = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(b[i]);
      return;
    }
  }
  STRATA_CHECK(false, "unknown dtype");
}

void convert_from_f32(DType dtype, const float* src, void* dst, size_t n) {
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, n * 4);
      return;
    case DType::kF16: {
      auto* h = static_cast<uint16_t*>(dst);
      if (has_f16c()) {
        f32_to_f16_f16c(src, h, n);
      } else {
        for (size_t i = 0; i < n; ++i) h[i] = fp32_to_fp16(src[i]);
      }
      return;
    }
    case DType::kBF16: {
      auto* b = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < n; ++i) b[i] = fp32_to_bf16(src[i]);
      return;
    }
  }
  STRATA_CHECK(false, "unknown dtype");
}

}  // namespace strata
