// The CUDA backend's state and the helpers its two files share (cuda_engine.cpp: construction, the
// tiers and the accessors; cuda_schedule.cpp: the block schedule). Private to the engine.
#pragma once

#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/ops.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/ops.h"
#include "runtime/cuda/cuda_engine.h"
#include "runtime/cuda/cuda_layout.h"
#include "runtime/cuda/device_tiers.h"
#include "runtime/cuda/stage_runner.h"
#include "runtime/engine.h"
#include "runtime/engine_layout.h"
#include "runtime/packed_stage.h"
#include "runtime/schedule.h"
#include "runtime/stream.h"

namespace strata {
namespace cuda_engine {

using cuda::Fp16;

constexpr uint64_t kDiskAlign = DiskStore::kAlignment;  // O_DIRECT wants aligned host buffers

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

}  // namespace cuda_engine

struct CudaBackend final : ScheduleBackend {
  using Fp16 = cuda::Fp16;

  // Declaration order is destruction order reversed: buffers go back to the pool and arena
  // before those are freed, and the disk store (which waits for reads into pinned staging) goes
  // before the arena.
  cuda_engine::DeviceSelect select;
  ModelConfig config;
  EngineOptions options;
  std::vector<StageLayout> layouts;
  Shapes shapes{};
  MemoryPlan plan;
  TierCounters counters;
  int64_t total_batches = 0;
  std::vector<PackedStage> packed;  // per stage, when weights are compressed
  cuda::Stream compute_stream, loader, storer;
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
  cuda::Block blas_workspace;  // blas's; the pool, declared before blas, outlives it
  cuda::Block linear_scratch;  // blas's fp32 GEMM output before bias and activation
  cuda::Block weight_staging[kWeightSlots], logits_host, hidden_host;
  cuda::Block attention_host;     // cpu_cache_compute: q, k, v, then the output, [gbs, h] each
  std::exception_ptr host_error;  // from work run in stream order on the host
  std::vector<std::map<std::string, cuda_engine::HostRows>>
      host_rows;                        // per stage: HeteGen's CPU rows
  uint8_t* staging[kWeightSlots] = {};  // block-aligned inside weight_staging
  // Disk reads (load stream) and read-modify-writes (store stream) of cache and activation rows.
  cuda::Block io_blocks[2];
  uint8_t* io_staging[2] = {};
  uint64_t staging_bytes = 0;
  std::unique_ptr<MarkTable<cuda::Event>> marks;
  std::unique_ptr<BlockSchedule> schedule;
  cuda::Event origin;
  double origin_s = 0;
  cuda_engine::SpanLog load_log{"load"}, compute_log{"compute"}, store_log{"store"};
  // The step in flight.
  const std::vector<std::vector<SequenceStep>>* steps = nullptr;
  const std::vector<std::vector<int64_t>>* lengths = nullptr;
  bool step_decode = false;  // it adds one token per sequence

  CudaBackend(const WeightSource& source, const EngineOptions& engine_options);

  ~CudaBackend() override {
    if (schedule) schedule->drain();  // reads still in flight write into pinned staging
    if (disk) disk->drain();          // and those whose waits an error skipped
  }

  const Policy& policy() const { return options.policy; }
  const cuda::Stream& lane(Lane l) const {
    if (!policy().overlap) return compute_stream;
    return l == Lane::kLoad ? loader : l == Lane::kStore ? storer : compute_stream;
  }
  // HeteGen's split column of a linear in the step in flight (0: the device computes it all).
  int64_t split_of(const cuda_engine::HostRows& rows) const {
    const HeteGenAlpha& a = policy().hetegen_alpha;
    return split_rows_of(kind_alpha(step_decode ? a.decode : a.prefill, rows.kind), rows.n);
  }
  // Packed weights split at whole groups of rows, so the device's rows cross as whole groups.
  int64_t split_rows_of(double alpha, int64_t n) const {
    return host_split_rows(policy(), alpha, n);
  }
  // Group g's batch k's hidden rows, for n values crossing to or from a pipeline neighbour.
  DeviceTieredArray& hidden_array(int64_t group, int64_t k, int64_t n) {
    STRATA_CHECK(hidden_host.data() && n <= shapes.act_numel,
                 "hidden rows past the engine's activation buffer");
    return *acts[static_cast<size_t>(group * policy().num_gpu_batches + k)];
  }
  cuda::HostLinear host_linear(const StageLayout& layout, const std::string& name);
  void load_cache_rows(DeviceTieredArray& a, int slot, int64_t begin, int64_t end,
                       const cuda::Stream& stream);
  void store_cache_rows(DeviceTieredArray& a, int slot, int64_t begin, int64_t end,
                        const cuda::Stream& stream);
  bool in_place(int64_t s) const {
    return !policy().compress_weight && weights[static_cast<size_t>(s)]->resident();
  }
  DeviceTieredArray& cache_array(const BatchWork& w) const {
    return *cache[static_cast<size_t>((w.layout->layer - options.first_layer) * total_batches +
                                      w.batch)];
  }
  // Decode attention on the CPU (cpu_cache_compute): the cache never crosses the link.
  bool host_attention(const BatchWork& w) const;
  Fp16* hidden_of(const BatchWork& w) const;
  static std::string tag(const BatchWork& w) {
    return " stage " + std::to_string(w.stage) + " batch " + std::to_string(w.k);
  }
  void attention_on_host(const StageLayout& layout, const Fp16* w, Fp16* hidden,
                         const std::vector<SequenceStep>& batch, const std::vector<int64_t>& lens,
                         DeviceTieredArray& kv_array);
  void compute_stage(const BatchWork& w);
  // Construction steps.
  void place_weights(const WeightSource& source, const CudaLayout& l);
  void keep_host_rows(size_t s, const std::vector<uint8_t>& stored);
  void allocate_working(const CudaLayout& l);

  // ScheduleBackend: marks are CUDA events.
  void record(Lane l, Mark m) override { (*marks)[m].record(lane(l)); }
  void wait(Lane l, Mark m) override { (*marks)[m].wait(lane(l)); }
  void begin_step(const std::vector<std::vector<SequenceStep>>& st,
                  const std::vector<std::vector<int64_t>>& lens) override;
  void end_step() override;
  bool weights_loaded(int64_t s) const override { return !in_place(s); }
  // Copies (and decoding of packed weights) run on the load stream.
  Lane expand_lane() const override { return Lane::kLoad; }
  void submit_weight_read(int64_t s, int slot, Mark slot_free, uint64_t* ticket) override;
  void finish_weight_read(int64_t s, uint64_t* ticket) override;
  void expand_weights(int64_t s, int buffer, int slot) override;
  bool hidden_in_place(int64_t batch) const override {
    return acts[static_cast<size_t>(batch)]->resident() != nullptr;
  }
  bool cache_crosses(const BatchWork& w) const override;
  void load_hidden(const BatchWork& w) override;
  void load_cache(const BatchWork& w) override;
  void compute(const BatchWork& w) override { compute_stage(w); }
  void store_cache(const BatchWork& w) override;
  void store_hidden(const BatchWork& w) override;

  // What the engine asks of its backend (runtime/scheduled_engine.h).
  EngineParts parts() { return {&config, &options, &layouts, &plan, &counters, disk.get()}; }
  void write_hidden(int64_t group, int64_t k, const float* rows, int64_t n_rows);
  void read_hidden(int64_t group, int64_t k, float* rows, int64_t n_rows);
  std::span<const float> logits_of(int64_t k) const;
  void lane_busy(EngineStats& s) const;
  void clear_lanes();
  nlohmann::json trace() const;
};

}  // namespace strata
