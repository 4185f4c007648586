// The compressed block layout shared by CPU and CUDA code: FlexGen's asymmetric min/max
// group-wise quantisation. A group holds up to kQuantGroup values, a (scale, min) pair in
// fp16 and the codes, two per byte at 4 bits (element 2j in the low nibble), one at 8.
// A value decodes as code * scale + min, rounded after the product and after the sum (no
// fused multiply-add), so every backend produces the same fp32 bits from the same bytes.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define STRATA_HD __host__ __device__ __forceinline__
#else
#define STRATA_HD inline
#endif

namespace strata {

inline constexpr int kQuantGroup = 64;

template <int Bits>
struct QuantGroup {
  static_assert(Bits == 4 || Bits == 8, "4- or 8-bit codes");
  static constexpr int kBits = Bits;
  static constexpr int kMaxCode = (1 << Bits) - 1;
  uint16_t scale;  // fp16 bits: (max - min) / kMaxCode
  uint16_t min;    // fp16 bits
  uint8_t codes[kQuantGroup * Bits / 8];
};
using Q4Group = QuantGroup<4>;
using Q8Group = QuantGroup<8>;
static_assert(sizeof(Q4Group) == 36, "4-bit group: 32 code bytes + two fp16");
static_assert(sizeof(Q8Group) == 68, "8-bit group: 64 code bytes + two fp16");
static_assert(alignof(Q4Group) == 2 && alignof(Q8Group) == 2, "groups pack without padding");
// 36 / 128: a 4-bit tensor holds 28% of its fp16 bytes.

// Bytes of one group; bits is 4 or 8.
STRATA_HD constexpr uint64_t quant_group_bytes(int bits) {
  return bits == 4 ? sizeof(Q4Group) : sizeof(Q8Group);
}

template <int Bits>
STRATA_HD uint32_t quant_code(const QuantGroup<Bits>& g, int e) {
  if constexpr (Bits == 4) {
    return (g.codes[e >> 1] >> ((e & 1) * 4)) & 0xFu;
  } else {
    return g.codes[e];
  }
}

// code * scale + min with the product and the sum each rounded to fp32.
STRATA_HD float quant_decode(uint32_t code, float scale, float min) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(__fmul_rn(static_cast<float>(code), scale), min);
#else
  return static_cast<float>(code) * scale + min;  // C++ is built with -ffp-contract=off
#endif
}

}  // namespace strata
