// The CPU engine: weights, KV cache and activations placed over the GPU, CPU and disk tiers by a
// Policy, the GPU tier being host memory and each of the schedule's lanes (runtime/schedule.h) a
// host thread, so loads of stage j+1 and of batch k+1 overlap compute of (j, k) and stores of k-1.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <span>
#include <string>
#include <vector>

#include "runtime/engine.h"
#include "runtime/memory_plan.h"

namespace strata {

// The CPU backend: the GPU tier is host memory and each stream a host thread.
class CpuEngine final : public Engine {
 public:
  CpuEngine(const WeightSource& source, const EngineOptions& options);
  ~CpuEngine() override;

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
