// CudaEngine's state and the helpers its two files share (cuda_engine.cpp: construction, the
// tiers and the accessors; cuda_schedule.cpp: the block schedule). Private to the engine.
#pragma once

#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/ops.h"
#include "kernels/cuda/launchers.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/stage_runner.h"
#include "runtime/cuda/cuda_engine.h"
#include "runtime/cuda/device_tiers.h"
#include "runtime/engine_layout.h"
#include "runtime/packed_stage.h"
#include "runtime/stream.h"

namespace strata {
namespace cuda_engine {

using cuda::Fp16;

constexpr uint64_t kDiskAlign = DiskStore::kAlignment;  // O_DIRECT wants aligned host buffers

inline uint64_t pool_bytes(uint64_t bytes) {
  constexpr uint64_t a = cuda::RangeAllocator::kAlign;
  return (bytes + a - 1) / a * a;
}

// Spans of one kind of work (loads, compute, stores) timed by event pairs on whichever stream ran
// them, read back once the step has synchronised.
class SpanLog {
 public:
  explicit SpanLog(std::string name) : name_(std::move(name)) {}
  const std::string& name() const { return name_; }

  // After the stream's waits, so a span starts when its work can.
  void begin(std::string label, const cuda::Stream& stream) {
    if (used_ == events_.size()) events_.emplace_back();
    if (used_ == labels_.size()) labels_.emplace_back();
    labels_[used_] = std::move(label);
    events_[used_].first.record(stream);
  }
  void end(const cuda::Stream& stream) { events_[used_++].second.record(stream); }

  // Spans against `origin`, an event recorded at host time origin_s; the events are reused.
  void collect(const cuda::Event& origin, double origin_s) {
    for (size_t i = 0; i < used_; ++i) {
      const double b = origin_s + events_[i].first.elapsed_ms(origin) * 1e-3;
      const double e = origin_s + events_[i].second.elapsed_ms(origin) * 1e-3;
      spans_.push_back({labels_[i], b, e});
      busy_s_ += e - b;
    }
    used_ = 0;
  }
  double busy_s() const { return busy_s_; }
  const std::vector<TraceSpan>& spans() const { return spans_; }
  void clear() {
    spans_.clear();
    busy_s_ = 0;
  }

 private:
  std::string name_;
  std::vector<std::pair<cuda::Event, cuda::Event>> events_;
  std::vector<std::string> labels_;
  size_t used_ = 0;
  std::vector<TraceSpan> spans_;
  double busy_s_ = 0;
};

// Selects the GPU before any stream, event or buffer of the engine is made.
struct DeviceSelect {
  explicit DeviceSelect(int index) {
    const int n = cuda::device_count();
    STRATA_INPUT_CHECK(index >= 0 && index < n, "GPU ", index, " asked for but ", n,
                       " CUDA device(s) present");
    cuda::set_device(index);
  }
};

// HeteGen: the leading rows of one linear's weight, fp32 on the host (the fp16 values the device
// holds, widened once), enough for the larger of the prefill and decode splits.
struct HostRows {
  int64_t n = 0, k = 0;
  int kind = 0;  // 0 attention projections, 1 fc1, 2 fc2
  std::vector<float> weight, bias;
};

// The runner's name for a decoder linear ("layers.3.fc1") and its kind (0 attention projections,
// 1 fc1, 2 fc2), or -1 for none.
int linear_kind(const std::string& tensor, std::string& short_name);

inline double kind_alpha(const LinearAlphas& a, int kind) {
  return kind == 0 ? a.attention : kind == 1 ? a.fc1 : a.fc2;
}

}  // namespace cuda_engine

struct CudaEngine::Impl {
  using Fp16 = cuda::Fp16;

  // Declaration order is destruction order reversed: buffers go back to the pool and arena
  // before those are freed, and the disk store (which waits for reads into pinned staging) goes
  // before the arena.
  cuda_engine::DeviceSelect select;
  OptConfig config;
  EngineOptions options;
  std::vector<StageLayout> layouts;
  Shapes shapes{};
  MemoryPlan plan;
  TierCounters counters;
  int64_t total_batches = 0;
  std::vector<PackedStage> packed;  // per stage, when weights are compressed
  cuda::Stream compute, loader, storer;
  std::unique_ptr<cuda::DevicePool> pool;
  std::unique_ptr<cuda::PinnedArena> pinned;
  std::unique_ptr<DiskStore> disk;
  cuda::Blas blas;
  std::unique_ptr<cuda::StageRunner> runner;
  std::vector<std::unique_ptr<DeviceTieredArray>> weights;  // per stage
  // [(layer - first_layer) * total_batches + group * num_gpu_batches + k]
  std::vector<std::unique_ptr<DeviceTieredArray>> cache;
  std::vector<std::unique_ptr<DeviceTieredArray>> acts;  // fp16 hidden rows per GPU batch
  cuda::Block weight_buffers[2], packed_buffer, cache_buffers[kRing], act_buffers[kRing];
  cuda::Block cache_groups[kRing];  // a compressed cache's packed rows, beside cache_buffers
  StoredFormat cache_stored;        // the cache's format on every tier
  cuda::Block logits_device, hidden_device;
  cuda::Block weight_staging[kWeightSlots], logits_host, hidden_host;
  cuda::Block attention_host;     // cpu_cache_compute: q, k, v, then the output, [gbs, h] each
  std::exception_ptr host_error;  // from work run in stream order on the host
  std::vector<std::map<std::string, cuda_engine::HostRows>>
      host_rows;             // per stage: HeteGen's CPU rows
  bool step_decode = false;  // the step in flight adds one token per sequence
  // Disk reads of stages 0 and 1 for the next step, submitted at the end of this one.
  bool carried = false;
  uint64_t carried_tickets[kWeightSlots - 1] = {};
  uint8_t* staging[kWeightSlots] = {};  // block-aligned inside weight_staging
  // Disk reads (load stream) and read-modify-writes (store stream) of cache and activation rows.
  cuda::Block io_blocks[2];
  uint8_t* io_staging[2] = {};
  uint64_t staging_bytes = 0;
  // Ordering: w_ready[b] weights in buffer b, stage_done[b] last compute that read buffer b,
  // staging_free[slot] the copy out of a disk staging slot, cache_ready / batch_done /
  // cache_free[slot] a cache ring buffer loaded, computed on, stored back.
  cuda::Event w_ready[2], stage_done[2], staging_free[kWeightSlots];
  cuda::Event cache_ready[kRing], batch_done[kRing], cache_free[kRing];
  // Activations off the device: act_ready / act_done / act_free per ring buffer, act_stored per
  // GPU batch (its hidden rows are back on their tiers).
  cuda::Event act_ready[kRing], act_done[kRing], act_free[kRing];
  std::vector<cuda::Event> act_stored;
  cuda::Event origin;
  cuda_engine::SpanLog load_log{"load"}, compute_log{"compute"}, store_log{"store"};
  double disk_busy_base = 0;

  explicit Impl(const EngineOptions& o) : select(o.gpu_index) {}

  ~Impl() {
    try {
      if (carried) {
        for (int i = 0; i < kWeightSlots - 1; ++i) {
          weights[static_cast<size_t>(i)]->finish_fetch(carried_tickets[i]);
        }
      }
      compute.synchronize();
      loader.synchronize();
      storer.synchronize();
    } catch (...) {  // the error was reported where it happened
    }
  }

  const Policy& policy() const { return options.policy; }
  const cuda::Stream& load_stream() const { return policy().overlap ? loader : compute; }
  const cuda::Stream& store_stream() const { return policy().overlap ? storer : compute; }
  // HeteGen's split column of a linear in the step in flight (0: the device computes it all).
  int64_t split_of(const cuda_engine::HostRows& rows) const {
    const HeteGenAlpha& a = policy().hetegen_alpha;
    return split_rows_of(cuda_engine::kind_alpha(step_decode ? a.decode : a.prefill, rows.kind),
                         rows.n);
  }
  // Packed weights split at whole groups of rows, so the device's rows cross as whole groups.
  int64_t split_rows_of(double alpha, int64_t n) const {
    const int64_t split = cpu::split_column(alpha, n);
    return policy().compress_weight ? split / kQuantGroup * kQuantGroup : split;
  }
  // Group g's batch k's hidden rows, for n values crossing to or from a pipeline neighbour.
  DeviceTieredArray& hidden_array(int64_t group, int64_t k, int64_t n) {
    STRATA_CHECK(hidden_host.data() && n <= shapes.act_numel,
                 "hidden rows past the engine's activation buffer");
    return *acts[static_cast<size_t>(group * policy().num_gpu_batches + k)];
  }
  cuda::HostLinear host_linear(const StageLayout& layout, const std::string& name);
  void load_cache(DeviceTieredArray& a, int slot, int64_t begin, int64_t end,
                  const cuda::Stream& stream);
  void store_cache(DeviceTieredArray& a, int slot, int64_t begin, int64_t end,
                   const cuda::Stream& stream);
  bool in_place(int64_t s) const {
    return !policy().compress_weight && weights[static_cast<size_t>(s)]->resident();
  }

  const Fp16* load_weights(int64_t s, std::vector<uint64_t>& tickets);
  void attention_on_host(const StageLayout& layout, const Fp16* w, Fp16* hidden,
                         const std::vector<SequenceStep>& batch, const std::vector<int64_t>& lens,
                         DeviceTieredArray& kv_array);
  void run_step(const std::vector<std::vector<SequenceStep>>& steps,
                const std::vector<std::vector<int64_t>>& lengths, int64_t base);
};

}  // namespace strata
