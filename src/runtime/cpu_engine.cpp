#include "runtime/cpu_engine.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <exception>
#include <functional>
#include <nlohmann/json.hpp>
#include <utility>

#include "core/error.h"
#include "core/units.h"
#include "runtime/engine_layout.h"
#include "runtime/machine_fit.h"
#include "runtime/packed_stage.h"
#include "runtime/schedule.h"
#include "runtime/scheduled_engine.h"
#include "runtime/stream.h"
#include "runtime/tiered_array.h"

namespace strata {

// A lane of the CPU backend: a host thread, and the marks its next work waits for.
struct HostLane {
  explicit HostLane(const char* name) : stream(name) {}
  Stream stream;
  std::vector<EventPtr> waits;
  EventPtr last;  // the lane's latest work
};

struct CpuBackend final : ScheduleBackend {
  CpuBackend(const WeightSource& source, const EngineOptions& engine_options);
  ModelConfig config;
  EngineOptions options;
  std::vector<StageLayout> layouts;
  Shapes shapes;
  MemoryPlan plan;
  TierCounters counters;
  std::unique_ptr<DiskStore> disk;
  std::vector<std::unique_ptr<TieredArray>> weights;  // per stage
  std::vector<bool> blocked;  // per stage: its resident linear weights are in the GEMM's layout
  // [(layer - first_layer) * total_batches + group * num_gpu_batches + k]
  std::vector<std::unique_ptr<TieredArray>> cache;
  std::vector<std::unique_ptr<TieredArray>> acts;  // per GPU batch of every group
  int64_t total_batches = 0;                       // over all groups
  HostBuffer weight_buffers[2];
  HostBuffer weight_staging[kWeightSlots];  // disk bytes of stage s in slot s % kWeightSlots
  HostBuffer cache_buffers[kRing];
  HostBuffer act_buffers[kRing];
  HostBuffer load_staging, store_staging;
  std::vector<PackedStage> packed;  // per stage, when weights are compressed
  HostBuffer packed_scratch;
  Workspace ws;
  std::vector<std::vector<float>> logits;  // per GPU batch: [gpu_batch_size, vocab]
  HostLane lanes[3] = {HostLane("load"), HostLane("compute"), HostLane("store")};
  std::unique_ptr<MarkTable<EventPtr>> marks;
  std::unique_ptr<BlockSchedule> schedule;
  // The step in flight: its sequences and their packed row offsets.
  const std::vector<std::vector<SequenceStep>>* steps = nullptr;
  const std::vector<std::vector<int64_t>>* lengths = nullptr;
  std::vector<std::vector<int64_t>> offsets;
  std::vector<int64_t> rows;

  ~CpuBackend() override {
    if (schedule) schedule->drain();
    // After an error the lanes skip the waits of reads already submitted, which still write
    // into the staging buffers freed before the store.
    if (disk) disk->drain();
  }

  const Policy& policy() const { return options.policy; }
  Stream& stream(Lane l) { return lane(l).stream; }
  HostLane& lane(Lane l) { return lanes[static_cast<int>(policy().overlap ? l : Lane::kCompute)]; }
  void run(Lane l, std::string name, std::function<void()> task) {
    HostLane& ln = lane(l);
    ln.last = ln.stream.enqueue(std::move(name), std::move(task), std::exchange(ln.waits, {}));
  }

  HostBuffer working_buffer(uint64_t bytes) {
    counters.add_allocation(Tier::kGpu, bytes);
    return HostBuffer(bytes);
  }
  TieredArray& cache_array(const BatchWork& w) const {
    return *cache[static_cast<size_t>((w.layout->layer - options.first_layer) * total_batches +
                                      w.batch)];
  }
  float* hidden_of(const BatchWork& w) {
    float* h = acts[static_cast<size_t>(w.batch)]->resident();
    return h ? h : act_buffers[w.act_slot].as<float>();
  }
  KvBlock kv_of(const BatchWork& w) {
    if (!stage_has_cache(w.layout->kind)) return {};
    float* base = cache_array(w).resident();
    if (!base) base = cache_buffers[w.cache_slot].as<float>();
    return {base, shapes.capacity, config.kv_dim(), *w.lengths};
  }
  static std::string tag(const BatchWork& w) {
    return " stage " + std::to_string(w.stage) + " batch " + std::to_string(w.k);
  }

  // A stage's fp32 form from its tiers, once per step (compute lane).
  void expand_stage(int64_t s, TieredArray& array, float* dst, const HostBuffer& staging) {
    if (packed.empty()) {
      array.assemble(dst, 0, array.numel(), staging);
      return;
    }
    const uint8_t* bytes = array.contiguous_bytes();
    if (!bytes) {
      array.gather(packed_scratch.as<uint8_t>(), 0, array.numel(), staging);
      bytes = packed_scratch.as<uint8_t>();
    }
    packed[static_cast<size_t>(s)].unpack(bytes, dst);
  }

  // ScheduleBackend: marks are the events of each lane's latest work.
  void record(Lane l, Mark m) override {
    HostLane& ln = lane(l);
    if (!ln.waits.empty())
      ln.last = ln.stream.enqueue(
          "", [] {}, std::exchange(ln.waits, {}));
    (*marks)[m] = ln.last;
  }
  void wait(Lane l, Mark m) override {
    if (const EventPtr& e = (*marks)[m]) lane(l).waits.push_back(e);
  }
  void begin_step(const std::vector<std::vector<SequenceStep>>& st,
                  const std::vector<std::vector<int64_t>>& lens) override {
    steps = &st;
    lengths = &lens;
    offsets.assign(st.size(), {});
    rows.assign(st.size(), 0);
    for (size_t k = 0; k < st.size(); ++k) {
      if (!st[k].empty()) rows[k] = pack_rows(config, st[k], lens[k], shapes.capacity, offsets[k]);
    }
  }
  void end_step() override {
    for (auto& ln : lanes) ln.waits.clear();
    // Errors surface here, the first lane's first, once every lane is idle: the others' work
    // still reads the step's sequences and buffers.
    std::exception_ptr error;
    for (auto& ln : lanes) {
      try {
        ln.stream.synchronize();
      } catch (...) {
        if (!error) error = std::current_exception();
      }
    }
    if (error) std::rethrow_exception(error);
  }
  bool weights_loaded(int64_t s) const override {
    return !weights[static_cast<size_t>(s)]->resident();
  }
  // Conversion to fp32 runs on the compute lane, so it never competes with compute for cores.
  Lane expand_lane() const override { return Lane::kCompute; }
  void submit_weight_read(int64_t s, int slot, Mark slot_free, uint64_t* ticket) override {
    TieredArray* array = weights[static_cast<size_t>(s)].get();
    HostBuffer* staging = &weight_staging[slot];
    wait(Lane::kLoad, slot_free);
    run(Lane::kLoad, "read weights stage " + std::to_string(s),
        [array, staging, ticket] { *ticket = array->submit_fetch(0, array->numel(), *staging); });
  }
  void finish_weight_read(int64_t s, uint64_t* ticket) override {
    TieredArray* array = weights[static_cast<size_t>(s)].get();
    run(Lane::kLoad, "load weights stage " + std::to_string(s),
        [array, ticket] { array->finish_fetch(*ticket); });
  }
  void expand_weights(int64_t s, int buffer, int slot) override {
    TieredArray* array = weights[static_cast<size_t>(s)].get();
    float* dst = weight_buffers[buffer].as<float>();
    const HostBuffer* staging = &weight_staging[slot];
    run(Lane::kCompute, "compute weights stage " + std::to_string(s),
        [this, s, array, dst, staging] { expand_stage(s, *array, dst, *staging); });
  }
  bool hidden_in_place(int64_t batch) const override {
    return acts[static_cast<size_t>(batch)]->resident() != nullptr;
  }
  bool cache_crosses(const BatchWork& w) const override {
    return stage_has_cache(w.layout->kind) && !cache_array(w).resident();
  }
  void load_hidden(const BatchWork& w) override {
    TieredArray* act = acts[static_cast<size_t>(w.batch)].get();
    float* h = hidden_of(w);
    const int64_t n = rows[static_cast<size_t>(w.k)] * config.hidden_size;
    run(Lane::kLoad, "load activations" + tag(w),
        [this, act, h, n] { act->load(h, 0, n, load_staging); });
  }
  // Each sequence's valid keys and values.
  void load_cache(const BatchWork& w) override {
    const auto& batch = *w.steps;
    const auto& lens = *w.lengths;
    if (std::none_of(batch.begin(), batch.end(),
                     [&](const auto& st) { return lens[static_cast<size_t>(st.slot)] > 0; })) {
      return;
    }
    TieredArray* array = &cache_array(w);
    float* base = kv_of(w).base;
    const int64_t capacity = shapes.capacity, h = config.kv_dim();
    run(Lane::kLoad, "load cache" + tag(w), [this, array, base, w, capacity, h] {
      for_each_kv_range(w, capacity, h, false,
                        [&](int64_t b, int64_t e) { array->load(base, b, e, load_staging); });
    });
  }
  void compute(const BatchWork& w) override {
    const StageLayout* layout = w.layout;
    TieredArray& w_array = *weights[static_cast<size_t>(w.stage)];
    const float* wt = w_array.resident();
    const bool blocked_wt = wt != nullptr && blocked[static_cast<size_t>(w.stage)];
    if (!wt) wt = weight_buffers[w.stage % 2].as<float>();
    float* h = hidden_of(w);
    const KvBlock kv = kv_of(w);
    const auto* batch = w.steps;
    const auto* lens = w.lengths;
    const auto* offs = &offsets[static_cast<size_t>(w.k)];
    float* logits_k = logits[static_cast<size_t>(w.k)].data();
    run(Lane::kCompute, "compute" + tag(w),
        [this, layout, wt, blocked_wt, h, kv, batch, lens, offs, logits_k] {
          switch (layout->kind) {
            case StageKind::kEmbed:
              embed_forward(config, wt, *batch, *lens, *offs, h, ws);
              break;
            case StageKind::kDecoder:
            case StageKind::kAttention:
            case StageKind::kMlp:
              decoder_forward(config, *layout, wt, *batch, *offs, kv, h, ws, policy().hetegen_alpha,
                              blocked_wt);
              break;
            case StageKind::kHead:
              head_forward(config, *layout, wt, *offs, h, logits_k, ws, blocked_wt);
              break;
          }
        });
  }
  // Only the new rows go back: positions [len, len + n) of each sequence's keys and values.
  void store_cache(const BatchWork& w) override {
    TieredArray* array = &cache_array(w);
    const float* base = kv_of(w).base;
    const int64_t capacity = shapes.capacity, h = config.kv_dim();
    run(Lane::kStore, "store cache" + tag(w), [this, array, base, w, capacity, h] {
      for_each_kv_range(w, capacity, h, true,
                        [&](int64_t b, int64_t e) { array->store(base, b, e, store_staging); });
    });
  }
  void store_hidden(const BatchWork& w) override {
    TieredArray* act = acts[static_cast<size_t>(w.batch)].get();
    const float* h = hidden_of(w);
    const int64_t n = rows[static_cast<size_t>(w.k)] * config.hidden_size;
    run(Lane::kStore, "store activations" + tag(w),
        [this, act, h, n] { act->store(h, 0, n, store_staging); });
  }

  // What the engine asks of its backend (runtime/scheduled_engine.h).
  EngineParts parts() { return {&config, &options, &layouts, &plan, &counters, disk.get()}; }
  TieredArray& hidden_array(int64_t group, int64_t k, int64_t n_rows) {
    TieredArray& act = *acts[static_cast<size_t>(group * policy().num_gpu_batches + k)];
    STRATA_CHECK(n_rows * config.hidden_size <= act.numel(),
                 "hidden rows past the engine's activation buffer");
    return act;
  }
  void write_hidden(int64_t group, int64_t k, const float* src, int64_t n_rows) {
    TieredArray& act = hidden_array(group, k, n_rows);
    const int64_t n = n_rows * config.hidden_size;
    if (float* h = act.resident()) {
      std::memcpy(h, src, static_cast<size_t>(n) * 4);
    } else {
      // store() takes whole disk blocks from its source, so the source spans the whole array
      // (src holds only n values); the engine is idle between steps, so a ring buffer is free.
      float* full = act_buffers[0].as<float>();
      std::memcpy(full, src, static_cast<size_t>(n) * 4);
      act.store(full, 0, n, store_staging);
    }
  }
  void read_hidden(int64_t group, int64_t k, float* dst, int64_t n_rows) {
    TieredArray& act = hidden_array(group, k, n_rows);
    const int64_t n = n_rows * config.hidden_size;
    if (const float* h = act.resident()) {
      std::memcpy(dst, h, static_cast<size_t>(n) * 4);
    } else {
      act.load(dst, 0, n, load_staging);
    }
  }
  std::span<const float> logits_of(int64_t k) const { return logits[static_cast<size_t>(k)]; }
  // With --no-overlap every span is on the compute lane: spans are split by kind.
  void lane_busy(EngineStats& s) const {
    const auto busy = [](const Stream& stream, const std::string& prefix) {
      double total = 0;
      for (const auto& span : stream.spans()) {
        if (span.name.rfind(prefix, 0) == 0) total += span.end_s - span.begin_s;
      }
      return total;
    };
    for (const auto& ln : lanes) {
      s.compute_busy_s += busy(ln.stream, "compute");
      s.load_busy_s += busy(ln.stream, "load");
      s.store_busy_s += busy(ln.stream, "store");
    }
  }
  void clear_lanes() {
    for (auto& ln : lanes) ln.stream.clear_stats();
  }
  nlohmann::json trace() const {
    const auto track = [this](Lane l) {
      const Stream& stream = lanes[static_cast<int>(l)].stream;
      return TraceTrack{stream.name(), stream.spans()};
    };
    return chrome_trace({track(Lane::kCompute), track(Lane::kLoad), track(Lane::kStore)});
  }
};

CpuBackend::CpuBackend(const WeightSource& source, const EngineOptions& engine_options)
    : config(source.config()), options(engine_options) {
  const Policy& p = options.policy;
  p.validate();
  STRATA_INPUT_CHECK(p.attn_sparsity == 1.0, "policy: attn_sparsity < 1 is not supported yet");
  STRATA_CHECK(options.max_prompt_len >= 1 && options.gen_len >= 1,
               "engine needs prompt and gen lengths");
  STRATA_CHECK(options.n_groups >= 1, "engine needs at least one group");
  layouts = slice_layouts(config, options);
  total_batches = p.num_gpu_batches * options.n_groups;
  shapes = shapes_of(config, options, layouts);
  plan = plan_cpu_memory(config, options);
  check_caps(plan, options.caps);  // before anything is allocated
  check_fits_machine(config, options, plan, Device::kCpu);

  disk = make_disk_tier(plan, options.offload_dir);
  // Weights are packed once, stage by stage, in their stored form; compressed ones stay
  // compressed on every tier.
  std::vector<uint8_t> stored;
  std::vector<float> stage_f32;
  uint64_t max_packed = 0;
  for (const auto& layout : layouts) {
    const int64_t n = stage_numel(layout, p);
    if (p.compress_weight) {
      packed.push_back(PackedStage::of(layout, p.compress_bits));
      stage_f32.resize(static_cast<size_t>(layout.numel));
      read_stage(source, layout, DType::kF32, stage_f32.data());
      stored.resize(static_cast<size_t>(n));
      packed.back().pack(stage_f32.data(), stored.data());
      max_packed = std::max(max_packed, static_cast<uint64_t>(n));
    } else {
      stored.resize(static_cast<size_t>(layout.numel) * dtype_size(config.dtype));
      read_stage(source, layout, config.dtype, stored.data());
    }
    weights.push_back(std::make_unique<TieredArray>(n, weight_format(config, p), p.weights,
                                                    disk.get(), counters));
    weights.back()->fill_stored(stored.data());
    // Weights that stay on the compute tier all run skip the GEMM's repacking on every call; a
    // HeteGen split needs the plain rows.
    float* resident = weights.back()->resident();
    blocked.push_back(resident != nullptr && !p.hetegen_alpha.any() &&
                      block_linear_weights(layout, resident));
  }
  stored = {};
  stage_f32 = {};
  if (max_packed > 0) packed_scratch = working_buffer(max_packed);
  for (int64_t i = 0; i < slice_layer_count(config, options) * total_batches; ++i) {
    cache.push_back(std::make_unique<TieredArray>(shapes.kv_numel, cache_format(config, p), p.cache,
                                                  disk.get(), counters));
  }
  for (int64_t k = 0; k < total_batches; ++k) {
    acts.push_back(std::make_unique<TieredArray>(shapes.act_numel, StoredFormat::plain(DType::kF32),
                                                 p.activations, disk.get(), counters));
  }
  if (!weights_resident(p)) {
    for (auto& b : weight_buffers)
      b = working_buffer(static_cast<uint64_t>(shapes.max_stage_numel) * 4);
  }
  if (!cache_resident(p)) {
    for (auto& b : cache_buffers) b = working_buffer(static_cast<uint64_t>(shapes.kv_numel) * 4);
  }
  if (p.activations.gpu_percent < 100) {
    for (auto& b : act_buffers) b = working_buffer(static_cast<uint64_t>(shapes.act_numel) * 4);
  }
  uint64_t io_bytes = 0, weight_bytes = 0;
  for (const auto& a : weights) weight_bytes = std::max(weight_bytes, a->staging_bytes());
  if (weight_bytes > 0) {
    for (auto& b : weight_staging) b = HostBuffer(weight_bytes);
    counters.add_allocation(Tier::kCpu, kWeightSlots * weight_bytes);
  }
  for (const auto* group : {&cache, &acts}) {
    for (const auto& a : *group) io_bytes = std::max(io_bytes, a->staging_bytes());
  }
  if (io_bytes > 0) {
    load_staging = HostBuffer(io_bytes);
    store_staging = HostBuffer(io_bytes);
    counters.add_allocation(Tier::kCpu, 2 * io_bytes);
  }
  logits.assign(static_cast<size_t>(p.num_gpu_batches),
                std::vector<float>(static_cast<size_t>(p.gpu_batch_size * config.vocab_size)));
  // Workspace and logits grow on first use; count them now so peaks include them.
  counters.add_allocation(
      Tier::kGpu,
      static_cast<uint64_t>(shapes.workspace_numel + p.effective_batch() * config.vocab_size) * 4);
  marks = std::make_unique<MarkTable<EventPtr>>(total_batches);
  schedule = std::make_unique<BlockSchedule>(*this, layouts, options.policy.overlap);
  counters.clear_traffic();
  for (auto& ln : lanes) ln.stream.clear_stats();
}

std::unique_ptr<Engine> make_cpu_engine(const WeightSource& source, const EngineOptions& options) {
  return std::make_unique<ScheduledEngine<CpuBackend>>(source, options);
}

}  // namespace strata
