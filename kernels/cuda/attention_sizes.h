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

}  // namespace strata::cuda
