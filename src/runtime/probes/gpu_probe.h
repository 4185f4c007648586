// What the planner needs to know of a GPU (strata profile): its links to the host, GEMM and
// attention rates, memory bandwidth and size, measured with the kernels the engine runs.
#pragma once

#include <cstdint>
#include <optional>

namespace strata {

struct GpuFigures {
  double h2d_gbps = 0;  // pinned
  double d2h_gbps = 0;
  double gemm_gflops = 0;         // fp16 GEMM, square
  double gemm_decode_gflops = 0;  // 32 rows against a wide weight
  double attention_gflops = 0;    // causal prefill attention
  double attention_decode_gflops = 0;
  double mem_gbps = 0;     // device-to-device copy, bytes read + written
  uint64_t mem_bytes = 0;  // free when probed
};

// GPU `index`'s figures (smaller probes when quick); nothing without a CUDA build or that GPU.
std::optional<GpuFigures> measure_gpu(int index, bool quick);
// Host-to-device bandwidth from pinned memory on GPU `index` (GB/s): the bound an engine's
// weight loads are judged against. 0 without CUDA.
double measure_pinned_h2d_gbps(int index);

}  // namespace strata
