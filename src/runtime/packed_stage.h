// A stage's weights in their compressed form (--compress-weight): every 2-D tensor quantised
// in groups along its rows (the output dimension of a linear layer, FlexGen's choice), 1-D
// tensors (biases, layer norms) kept in fp16 as FlexGen keeps them. This form lives on every
// tier and crosses every link; it is expanded to fp32 once per stage per step.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/stages.h"

namespace strata {

struct PackedTensor {
  int64_t offset = 0;  // elements, in the stage's fp32 layout
  int64_t rows = 1, cols = 0;
  bool quantized = false;
  uint64_t byte_offset = 0;  // within the packed stage, 4-byte aligned
  uint64_t bytes = 0;
};

struct PackedStage {
  int bits = 4;
  std::vector<PackedTensor> tensors;
  uint64_t bytes = 0;
  // The packed layout of `layout` at `bits` (4 or 8).
  static PackedStage of(const StageLayout& layout, int bits);
  // fp32 stage (layout.numel values) -> bytes.
  void pack(const float* stage, uint8_t* dst) const;
  // bytes -> fp32 stage; every element of dst is written.
  void unpack(const uint8_t* src, float* stage) const;
};

}  // namespace strata
