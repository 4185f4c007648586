// The decode attention's workspace, sized here without CUDA: the kernels split each sequence's
// cache into blocks of kDecodeSplitKeys keys and keep one softmax state and accumulator per
// (sequence, head, block); the memory plan (built with or without CUDA) counts the same bytes.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace strata::cuda {

inline constexpr int64_t kDecodeSplitKeys = 256;  // keys per block; more blocks for longer contexts

struct DecodePartial {  // one (sequence, head, block)'s softmax state
  float m, l;
};

inline int64_t decode_splits(int64_t max_len) {
  return std::max<int64_t>(1, (max_len + kDecodeSplitKeys - 1) / kDecodeSplitKeys);
}

inline size_t attention_decode_workspace_bytes(int64_t n_seqs, int64_t n_heads, int64_t head_dim,
                                               int64_t max_len) {
  const int64_t slots = n_seqs * n_heads * decode_splits(max_len);
  return static_cast<size_t>(slots) * (sizeof(DecodePartial) + sizeof(float) * head_dim);
}

// The shapes the tensor-core prefill kernel takes (both builds decide alike; the GPU also needs
// sm_80): head_dim 64 or 128, row strides in multiples of 8 elements, 16-byte aligned pointers.
inline bool prefill_tensor_core_shapes(int64_t head_dim, int64_t ld_q, int64_t ld_kv,
                                       int64_t seq_stride_q, int64_t seq_stride_kv, const void* q,
                                       const void* k, const void* v, const void* out) {
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return (head_dim == 64 || head_dim == 128) && ld_q % 8 == 0 && ld_kv % 8 == 0 &&
         seq_stride_q % 8 == 0 && seq_stride_kv % 8 == 0 && aligned(q) && aligned(k) &&
         aligned(v) && aligned(out);
}

}  // namespace strata::cuda
