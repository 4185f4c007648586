// How the device stage runner lays out its one scratch block and its step metadata, and the
// device and pinned bytes it needs: plain arithmetic, built with or without CUDA, so the memory
// plan (cuda_layout.cpp) and the planner count exactly what the runner allocates.
#pragma once

#include <cstddef>
#include <cstdint>

#include "model/model_config.h"
#include "runtime/cuda/stage_runner.h"

namespace strata::cuda {

inline constexpr size_t kAlignBytes = 256;  // cuBLAS and the 16-byte vector loads want aligned rows

// Offsets of the step metadata (int32 elements) within the device metadata array.
struct MetaLayout {
  int64_t tokens, row_offsets, starts, slots, lengths, last_rows, positions, total;
};
MetaLayout meta_layout(const StageRunnerLimits& l);

// Byte offsets of each scratch buffer within the runner's one block.
struct ScratchLayout {
  size_t words, x, q, k, v, attn, mid, last, projected, decode, decode_bytes, meta, inv_freq, total;
};
ScratchLayout scratch_layout(const ModelConfig& c, const StageRunnerLimits& l);

// The widest output or input of a split linear (HeteGen's buffers hold one).
size_t widest_linear(const ModelConfig& c);

}  // namespace strata::cuda
