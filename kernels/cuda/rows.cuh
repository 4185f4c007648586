// Device helpers for packed batches: rows of several sequences back to back.
#pragma once

#include <cstdint>

namespace strata::cuda {

// The sequence a packed row belongs to: the last s with row_offsets[s] <= row.
__device__ __forceinline__ int sequence_of_row(const int32_t* row_offsets, int n_seqs, int row) {
  int lo = 0, hi = n_seqs - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (row_offsets[mid] <= row) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

}  // namespace strata::cuda
