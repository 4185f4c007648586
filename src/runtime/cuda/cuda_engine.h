// The offloading engine on a GPU: the GPU tier is device memory, the CPU tier pinned host memory,
// and FlexGen's block schedule runs on three CUDA streams: host-to-device loads of stage s+1 and
// of batch k+1's cache on the load stream, compute of (s, k) on the compute stream (the device
// stage runner: cuBLAS fp16 GEMMs, flash-style attention), stores of batch k-1's new cache rows
// on the store stream; disk reads go into pinned staging ahead of their copies. Events order the
// streams; the host waits only for disk reads and at the end of a step. All device memory comes
// from one pool sized by the memory plan and capped by --gpu-mem. The backend is CudaBackend
// (cuda_engine_impl.h).
#pragma once

#include <memory>

#include "runtime/engine.h"

namespace strata {

std::unique_ptr<Engine> make_cuda_engine(const WeightSource& source, const EngineOptions& options);

}  // namespace strata
