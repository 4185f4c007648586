#include "runtime/packed_stage.h"

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/cpu/quant.h"

namespace strata {

PackedStage PackedStage::of(const StageLayout& layout, int bits) {
  STRATA_CHECK(bits == 4 || bits == 8, "compression bits must be 4 or 8");
  PackedStage p;
  p.bits = bits;
  for (const auto& t : layout.tensors) {
    PackedTensor pt;
    pt.offset = t.offset;
    pt.quantized = t.shape.size() == 2;
    pt.rows = pt.quantized ? t.shape[0] : 1;
    pt.cols = pt.quantized ? t.shape[1] : t.numel;
    pt.byte_offset = p.bytes;
    pt.bytes = pt.quantized ? quantized_matrix_bytes(bits, pt.rows, pt.cols)
                            : static_cast<uint64_t>(t.numel) * 2;
    p.bytes += (pt.bytes + 3) / 4 * 4;
    p.tensors.push_back(pt);
  }
  return p;
}

void PackedStage::pack(const float* stage, uint8_t* dst) const {
  for (const auto& t : tensors) {
    if (t.quantized) {
      quantize_matrix(bits, stage + t.offset, t.rows, t.cols, dst + t.byte_offset);
    } else {
      convert_from_f32(DType::kF16, stage + t.offset, dst + t.byte_offset,
                       static_cast<size_t>(t.cols));
    }
  }
}

void PackedStage::unpack(const uint8_t* src, float* stage) const {
  for (const auto& t : tensors) {
    if (t.quantized) {
      dequantize_matrix(bits, src + t.byte_offset, t.rows, t.cols, stage + t.offset);
    } else {
      convert_to_f32(DType::kF16, src + t.byte_offset, stage + t.offset,
                     static_cast<size_t>(t.cols));
    }
  }
}

}  // namespace strata
