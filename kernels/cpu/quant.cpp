#include "kernels/cpu/quant.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <thread>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"

namespace strata {
namespace {

// Encodes values v[0], v[stride], ... (len of them) into one group.
template <int Bits>
void encode_group(const float* v, int64_t stride, int64_t len, QuantGroup<Bits>& g) {
  float lo = v[0], hi = v[0];
  for (int64_t e = 1; e < len; ++e) {
    lo = std::min(lo, v[e * stride]);
    hi = std::max(hi, v[e * stride]);
  }
  g.min = fp32_to_fp16(lo);
  g.scale = fp32_to_fp16((hi - lo) / static_cast<float>(QuantGroup<Bits>::kMaxCode));
  // Codes are chosen against the stored fp16 pair, so decoding sees what encoding assumed.
  const float min = fp16_to_fp32(g.min), scale = fp16_to_fp32(g.scale);
  const float inv = scale > 0 ? 1.0f / scale : 0.0f;
  std::fill(std::begin(g.codes), std::end(g.codes), uint8_t{0});
  for (int64_t e = 0; e < len; ++e) {
    const float x = std::nearbyint((v[e * stride] - min) * inv);
    const uint32_t code =
        static_cast<uint32_t>(std::clamp(x, 0.0f, static_cast<float>(QuantGroup<Bits>::kMaxCode)));
    if constexpr (Bits == 4) {
      g.codes[e >> 1] |= static_cast<uint8_t>(code << ((e & 1) * 4));
    } else {
      g.codes[e] = static_cast<uint8_t>(code);
    }
  }
}

template <int Bits>
void decode_group(const QuantGroup<Bits>& g, int64_t len, float* v, int64_t stride) {
  const float min = fp16_to_fp32(g.min), scale = fp16_to_fp32(g.scale);
  for (int64_t e = 0; e < len; ++e) {
    v[e * stride] = quant_decode(quant_code(g, static_cast<int>(e)), scale, min);
  }
}

template <int Bits>
void quantize_t(const float* src, int64_t n, int64_t group_len, void* dst) {
  auto* groups = static_cast<QuantGroup<Bits>*>(dst);
  const int64_t n_groups = quant_groups(n, group_len);
  for (int64_t j = 0; j < n_groups; ++j) {
    const int64_t begin = j * group_len;
    encode_group<Bits>(src + begin, 1, std::min(group_len, n - begin), groups[j]);
  }
}

template <int Bits>
void dequantize_t(const void* src, int64_t n, int64_t group_len, float* dst) {
  const auto* groups = static_cast<const QuantGroup<Bits>*>(src);
  const int64_t n_groups = quant_groups(n, group_len);
  for (int64_t j = 0; j < n_groups; ++j) {
    const int64_t begin = j * group_len;
    decode_group<Bits>(groups[j], std::min(group_len, n - begin), dst + begin, 1);
  }
}

template <int Bits>
void quantize_matrix_t(const float* src, int64_t rows, int64_t cols, void* dst) {
  auto* groups = static_cast<QuantGroup<Bits>*>(dst);
  const int64_t per_col = quant_groups(rows, kQuantGroup);
  for (int64_t c = 0; c < cols; ++c) {
    for (int64_t j = 0; j < per_col; ++j) {
      const int64_t r = j * kQuantGroup;
      encode_group<Bits>(src + r * cols + c, cols, std::min<int64_t>(kQuantGroup, rows - r),
                         groups[c * per_col + j]);
    }
  }
}

// Decodes a whole group into 64 contiguous values (vectorisable: no strides, no tail).
template <int Bits>
void decode_full_group(const QuantGroup<Bits>& g, float* v) {
  const float min = fp16_to_fp32(g.min), scale = fp16_to_fp32(g.scale);
  if constexpr (Bits == 4) {
    for (int b = 0; b < kQuantGroup / 2; ++b) {
      v[2 * b] = quant_decode(g.codes[b] & 0xFu, scale, min);
      v[2 * b + 1] = quant_decode(g.codes[b] >> 4, scale, min);
    }
  } else {
    for (int e = 0; e < kQuantGroup; ++e) v[e] = quant_decode(g.codes[e], scale, min);
  }
}

// Tiles of 64 rows x kTile columns: groups decode contiguously into a small buffer, which is
// then written out row by row, so the strided (transposed) writes stay in cache.
template <int Bits>
void dequantize_rows_t(const void* src, int64_t rows, int64_t cols, float* dst, int64_t j_begin,
                       int64_t j_end) {
  constexpr int64_t kTile = 16;
  const auto* groups = static_cast<const QuantGroup<Bits>*>(src);
  const int64_t per_col = quant_groups(rows, kQuantGroup);
  alignas(64) float tile[kTile][kQuantGroup];
  for (int64_t j = j_begin; j < j_end; ++j) {
    const int64_t r0 = j * kQuantGroup;
    const int64_t len = std::min<int64_t>(kQuantGroup, rows - r0);
    for (int64_t c0 = 0; c0 < cols; c0 += kTile) {
      const int64_t width = std::min(kTile, cols - c0);
      for (int64_t c = 0; c < width; ++c) {
        decode_full_group<Bits>(groups[(c0 + c) * per_col + j], tile[c]);
      }
      for (int64_t r = 0; r < len; ++r) {
        float* out = dst + (r0 + r) * cols + c0;
        for (int64_t c = 0; c < width; ++c) out[c] = tile[c][r];
      }
    }
  }
}

// Large matrices are expanded on as many threads as OpenBLAS uses, by row blocks: the
// expansion sits on the compute stream between GEMMs, which use those cores too.
template <int Bits>
void dequantize_matrix_t(const void* src, int64_t rows, int64_t cols, float* dst) {
  const int64_t per_col = quant_groups(rows, kQuantGroup);
  const int64_t threads =
      std::clamp<int64_t>(openblas_get_num_threads(), 1, std::min<int64_t>(per_col, 16));
  if (threads == 1 || rows * cols < (int64_t{1} << 20)) {
    dequantize_rows_t<Bits>(src, rows, cols, dst, 0, per_col);
    return;
  }
  std::vector<std::thread> workers;
  for (int64_t t = 1; t < threads; ++t) {
    workers.emplace_back(dequantize_rows_t<Bits>, src, rows, cols, dst, per_col * t / threads,
                         per_col * (t + 1) / threads);
  }
  dequantize_rows_t<Bits>(src, rows, cols, dst, 0, per_col / threads);
  for (auto& w : workers) w.join();
}

void check_args(int bits, int64_t group_len) {
  STRATA_CHECK(bits == 4 || bits == 8, "quantisation bits must be 4 or 8, got ", bits);
  STRATA_CHECK(group_len >= 1 && group_len <= kQuantGroup, "quantisation group of ", group_len);
}

}  // namespace

void quantize(int bits, const float* src, int64_t n, int64_t group_len, void* dst) {
  check_args(bits, group_len);
  bits == 4 ? quantize_t<4>(src, n, group_len, dst) : quantize_t<8>(src, n, group_len, dst);
}

void dequantize(int bits, const void* src, int64_t n, int64_t group_len, float* dst) {
  check_args(bits, group_len);
  bits == 4 ? dequantize_t<4>(src, n, group_len, dst) : dequantize_t<8>(src, n, group_len, dst);
}

uint64_t quantized_matrix_bytes(int bits, int64_t rows, int64_t cols) {
  return static_cast<uint64_t>(cols * quant_groups(rows, kQuantGroup)) * quant_group_bytes(bits);
}

void quantize_matrix(int bits, const float* src, int64_t rows, int64_t cols, void* dst) {
  check_args(bits, kQuantGroup);
  bits == 4 ? quantize_matrix_t<4>(src, rows, cols, dst)
            : quantize_matrix_t<8>(src, rows, cols, dst);
}

void dequantize_matrix(int bits, const void* src, int64_t rows, int64_t cols, float* dst) {
  check_args(bits, kQuantGroup);
  bits == 4 ? dequantize_matrix_t<4>(src, rows, cols, dst)
            : dequantize_matrix_t<8>(src, rows, cols, dst);
}

}  // namespace strata
