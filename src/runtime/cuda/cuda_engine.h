// The offloading engine on a GPU: the GPU tier is device memory, the CPU tier pinned host memory,
// and FlexGen's block schedule runs on three CUDA streams: host-to-device loads of stage s+1 and
// of batch k+1's cache on the load stream, compute of (s, k) on the compute stream (the device
// stage runner: cuBLAS fp16 GEMMs, flash-style attention), stores of batch k-1's new cache rows
// on the store stream; disk reads go into pinned staging ahead of their copies. Events order the
// streams; the host waits only for disk reads and at the end of a step. All device memory comes
// from one pool sized by the memory plan and capped by --gpu-mem.
#pragma once

#include <memory>

#include "runtime/engine.h"

namespace strata {

class CudaEngine final : public Engine {
 public:
  CudaEngine(const WeightSource& source, const EngineOptions& options);
  ~CudaEngine() override;

  void write_hidden(int64_t group, int64_t k, const float* rows, int64_t n_rows) override;
  void read_hidden(int64_t group, int64_t k, float* rows, int64_t n_rows) override;
  std::span<const float> logits(int64_t k) const override;

  nlohmann::json trace() const override;

 private:
  void lane_busy(EngineStats& stats) const override;
  void clear_lanes() override;
  void run_step(const std::vector<std::vector<SequenceStep>>& steps,
                const std::vector<std::vector<int64_t>>& lengths, int64_t first_batch) override;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace strata
