// The one engine class. Backend (CpuBackend in cpu_engine.cpp, CudaBackend in
// cuda/cuda_engine_impl.h) keeps only what differs between devices: where memory lives, how
// bytes move, how a stage computes. It implements the block schedule's steps
// (ScheduleBackend, runtime/schedule.h), owns the BlockSchedule that drives them, and offers
// the few calls below. Included by the backends' own files, which instantiate it.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>

#include "runtime/engine.h"
#include "runtime/schedule.h"

namespace strata {

template <class Backend>
class ScheduledEngine final : public Engine {
 public:
  ScheduledEngine(const WeightSource& source, const EngineOptions& options)
      : backend_(std::make_unique<Backend>(source, options)) {
    bind(backend_->parts());
  }

  void write_hidden(int64_t group, int64_t k, const float* rows, int64_t n_rows) override {
    backend_->write_hidden(group, k, rows, n_rows);
  }
  void read_hidden(int64_t group, int64_t k, float* rows, int64_t n_rows) override {
    backend_->read_hidden(group, k, rows, n_rows);
  }
  std::span<const float> logits(int64_t k) const override { return backend_->logits_of(k); }
  nlohmann::json trace() const override { return backend_->trace(); }

 private:
  void run_step(const std::vector<std::vector<SequenceStep>>& steps,
                const std::vector<std::vector<int64_t>>& lengths, int64_t first_batch) override {
    backend_->schedule->run(steps, lengths, first_batch);
  }
  void lane_busy(EngineStats& stats) const override { backend_->lane_busy(stats); }
  void clear_lanes() override { backend_->clear_lanes(); }

  std::unique_ptr<Backend> backend_;
};

}  // namespace strata
