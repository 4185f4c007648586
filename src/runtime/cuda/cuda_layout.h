// Every block the CUDA engine takes from its device pool and its pinned arena, sized in one
// place: plan_memory sums it (so --gpu-mem and --cpu-mem are checked against what is allocated)
// and the engine allocates from it.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/cuda/stage_runner.h"
#include "runtime/engine_layout.h"
#include "runtime/memory_plan.h"

namespace strata {

struct CudaLayout {
  std::vector<uint64_t> stage_units;  // per stage: fp16 elements, or packed bytes
  uint64_t max_stage_units = 0;
  uint64_t weight_unit = 2;  // bytes per weight unit
  int64_t n_cache = 0;       // (layer, batch) cache blocks
  StoredFormat cache_stored;
  int64_t kv_units = 0;  // units of one cache block
  uint64_t kv_unit_bytes = 0;
  uint64_t io_bytes = 0;           // pinned staging of cache / activation disk rows, each of two
  uint64_t weight_disk_bytes = 0;  // the largest stage's disk part, whole blocks
  uint64_t logits_bytes = 0;       // one GPU batch's fp32 logits
  uint64_t hidden_f32_bytes = 0;   // a pipeline slice's hidden rows crossing in fp32
  uint64_t attention_bytes = 0;    // cpu_cache_compute: q, k, v and the output of one batch
  uint64_t host_rows_bytes = 0;    // HeteGen's fp32 host rows (pageable)
  bool slice = false;              // a pipeline slice (no embedding or no head)
  bool hetegen = false;
  cuda::StageRunnerLimits limits;
  uint64_t blas_workspace_bytes = 0;  // cuBLAS's workspace, a pool block
  uint64_t linear_scratch_bytes = 0;  // linear()'s fp32 output blocks (Blas::set_output_scratch)
  uint64_t reserve_bytes = 0;         // device memory outside the pool (kDeviceReserveBytes)
  uint64_t device_bytes = 0;          // the pool
  uint64_t pinned_bytes = 0;          // the arena
};

// Device memory the engine leaves outside its pool, counted in the GPU tier of the plan and
// checked against free memory: kernel modules the CUDA runtime loads at their first launch
// (cuBLAS's among them) and the local memory it grows for them.
inline constexpr uint64_t kDeviceReserveBytes = uint64_t{8} << 20;
// cuBLAS's workspace for GEMMs of these limits, handed to it from the pool (cuBLAS would
// otherwise cudaMalloc its own at the first GEMM): 32 MiB, what it takes by default on Hopper,
// or less where twice the largest GEMM output in fp32 (split-K partial sums) is smaller; a
// smaller workspace only narrows cuBLAS's choice of algorithm.
uint64_t blas_workspace_bytes(const ModelConfig& c, const cuda::StageRunnerLimits& limits);

// A pool or arena block of `bytes`, as the range allocator rounds it.
uint64_t pool_bytes(uint64_t bytes);
// HeteGen: rows of a linear's n computed on the host at `alpha`: whole groups when packed,
// multiples of 8 otherwise.
int64_t host_split_rows(const Policy& p, double alpha, int64_t n);
// The name the stage runner gives a decoder linear ("layers.3.fc1") and its kind (0 attention
// projections, 1 fc1, 2 fc2), or -1 for none.
int linear_kind(const std::string& tensor, std::string& short_name);
double kind_alpha(const LinearAlphas& a, int kind);

CudaLayout cuda_layout(const ModelConfig& c, const EngineOptions& o,
                       const std::vector<StageLayout>& layouts, const Shapes& shapes);
// The CUDA engine's memory plan: the data on each tier as every engine splits it, the working
// sets from cuda_layout.
MemoryPlan plan_cuda_memory(const ModelConfig& c, const EngineOptions& o);

}  // namespace strata
