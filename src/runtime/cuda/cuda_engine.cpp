#include "runtime/cuda/cuda_engine.h"

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <exception>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <utility>

#include "core/dtype.h"
#include "core/error.h"
#include "core/units.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/quant.h"
#include "kernels/cuda/launchers.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/stage_runner.h"
#include "kernels/quant_format.h"
#include "runtime/cuda/device_tiers.h"
#include "runtime/engine_layout.h"
#include "runtime/packed_stage.h"
#include "runtime/stream.h"

namespace strata {
namespace {

using cuda::Fp16;

constexpr uint64_t kDiskAlign = DiskStore::kAlignment;  // O_DIRECT wants aligned host buffers

uint64_t pool_bytes(uint64_t bytes) {
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

// A packed stage's bytes (device) to its fp16 layout (device): quantised matrices decoded, fp16
// vectors copied.
void unpack_on_device(const PackedStage& packed, const uint8_t* src, Fp16* dst,
                      const cuda::Stream& stream) {
  for (const auto& t : packed.tensors) {
    if (t.quantized) {
      cuda::dequantize_matrix(packed.bits, src + t.byte_offset, t.rows, t.cols, dst + t.offset,
                              stream);
    } else {
      cuda::copy_d2d(dst + t.offset, src + t.byte_offset, t.bytes, stream);
    }
  }
}

// Decode attention where the cache lives (cpu_cache_compute): each sequence's new key and value
// are appended to its slot of the host cache, then its one query attends over positions
// [0, length] in fp32. qkv holds q, k, v rows [n, h] fp16 one after another; out gets [n, h].
// Sequences are shared out over as many threads as OpenBLAS uses: reading the cache is the cost.
void attend_on_host(const OptConfig& c, int64_t capacity, const std::vector<int64_t>& slots,
                    const std::vector<int64_t>& lengths, const Fp16* qkv, Fp16* cache, Fp16* out) {
  const int64_t h = c.hidden_size, n = static_cast<int64_t>(slots.size());
  const auto sequences = [&](int64_t first, int64_t last) {
    std::vector<float> q(static_cast<size_t>(h)), o(q.size()), keys, values;
    for (int64_t i = first; i < last; ++i) {
      const int64_t len = lengths[static_cast<size_t>(i)];
      Fp16* slot_keys = cache + slots[static_cast<size_t>(i)] * 2 * capacity * h;
      Fp16* slot_values = slot_keys + capacity * h;
      std::memcpy(slot_keys + len * h, qkv + (n + i) * h, static_cast<size_t>(h) * 2);
      std::memcpy(slot_values + len * h, qkv + (2 * n + i) * h, static_cast<size_t>(h) * 2);
      keys.resize(static_cast<size_t>((len + 1) * h));
      values.resize(keys.size());
      convert_to_f32(DType::kF16, slot_keys, keys.data(), keys.size());
      convert_to_f32(DType::kF16, slot_values, values.data(), values.size());
      convert_to_f32(DType::kF16, qkv + i * h, q.data(), q.size());
      cpu::attention(q.data(), h, keys.data(), values.data(), h, o.data(), len, 1, c.n_heads,
                     c.head_dim());
      convert_from_f32(DType::kF16, o.data(), out + i * h, o.size());
    }
  };
  const int64_t threads = std::clamp<int64_t>(openblas_get_num_threads(), 1, n);
  std::vector<std::thread> workers;
  for (int64_t t = 1; t < threads; ++t) {
    workers.emplace_back(sequences, n * t / threads, n * (t + 1) / threads);
  }
  sequences(0, n / threads);
  for (auto& w : workers) w.join();
}

// HeteGen: the leading rows of one linear's weight, fp32 on the host (the fp16 values the device
// holds, widened once), enough for the larger of the prefill and decode splits.
struct HostRows {
  int64_t n = 0, k = 0;
  int kind = 0;  // 0 attention projections, 1 fc1, 2 fc2
  std::vector<float> weight, bias;
};

// The runner's name for a decoder linear ("layers.3.fc1") and its kind, or -1 for none.
int linear_kind(const std::string& tensor, std::string& short_name) {
  const size_t at = tensor.find("layers.");
  const std::string suffix = ".weight";
  if (at == std::string::npos || tensor.size() < suffix.size() ||
      tensor.compare(tensor.size() - suffix.size(), suffix.size(), suffix) != 0) {
    return -1;
  }
  short_name = tensor.substr(at, tensor.size() - suffix.size() - at);
  for (const char* proj : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
    if (short_name.ends_with(std::string("self_attn.") + proj)) return 0;
  }
  if (short_name.ends_with(".fc1")) return 1;
  if (short_name.ends_with(".fc2")) return 2;
  return -1;
}

int64_t batch_rows(const std::vector<SequenceStep>& batch) {
  int64_t rows = 0;
  for (const auto& st : batch) rows += static_cast<int64_t>(st.tokens.size());
  return rows;
}

double kind_alpha(const LinearAlphas& a, int kind) {
  return kind == 0 ? a.attention : kind == 1 ? a.fc1 : a.fc2;
}

}  // namespace

struct CudaEngine::Impl {
  // Declaration order is destruction order reversed: buffers go back to the pool and arena
  // before those are freed, and the disk store (which waits for reads into pinned staging) goes
  // before the arena.
  DeviceSelect select;
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
  std::vector<std::map<std::string, HostRows>> host_rows;  // per stage: HeteGen's CPU rows
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
  SpanLog load_log{"load"}, compute_log{"compute"}, store_log{"store"};
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
  int64_t split_of(const HostRows& rows) const {
    const HeteGenAlpha& a = policy().hetegen_alpha;
    return split_rows_of(kind_alpha(step_decode ? a.decode : a.prefill, rows.kind), rows.n);
  }
  // Packed weights split at whole groups of rows, so the device's rows cross as whole groups.
  int64_t split_rows_of(double alpha, int64_t n) const {
    const int64_t split = cpu::split_column(alpha, n);
    return policy().compress_weight ? split / kQuantGroup * kQuantGroup : split;
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

CudaEngine::CudaEngine(const WeightSource& source, const EngineOptions& options)
    : impl_(std::make_unique<Impl>(options)) {
  Impl& m = *impl_;
  m.config = source.config();
  m.options = options;
  m.options.device = Device::kCuda;
  const Policy& p = m.options.policy;
  p.validate();
  const std::string why = cuda_unsupported(p);
  STRATA_INPUT_CHECK(why.empty(), why);
  STRATA_CHECK(options.max_prompt_len >= 1 && options.gen_len >= 1,
               "engine needs prompt and gen lengths");
  STRATA_CHECK(options.n_groups >= 1, "engine needs at least one group");
  const OptConfig& c = m.config;
  m.layouts = slice_layouts(c, m.options);
  m.total_batches = p.num_gpu_batches * options.n_groups;
  m.shapes = shapes_of(c, m.options, m.layouts);
  const Shapes& sh = m.shapes;
  const bool slice =
      !(m.layouts.front().kind == StageKind::kEmbed && m.layouts.back().kind == StageKind::kHead);

  // Exact bytes of every block, in the order they are taken from the pool and the arena.
  std::vector<uint64_t> stage_units;
  uint64_t max_stage_units = 0;
  for (const auto& layout : m.layouts) {
    if (p.compress_weight) m.packed.push_back(PackedStage::of(layout, p.compress_bits));
    stage_units.push_back(p.compress_weight ? m.packed.back().bytes
                                            : static_cast<uint64_t>(layout.numel));
    max_stage_units = std::max(max_stage_units, stage_units.back());
  }
  const uint64_t weight_unit = p.compress_weight ? 1 : 2;
  uint64_t device_need = 0, pinned_need = 0, max_disk = 0;
  for (uint64_t n : stage_units) {
    const ElementSplit e = ElementSplit::of(static_cast<int64_t>(n), p.weights);
    device_need += pool_bytes(static_cast<uint64_t>(e.gpu) * weight_unit);
    if (p.pin_weight) pinned_need += pool_bytes(static_cast<uint64_t>(e.cpu) * weight_unit);
    const uint64_t disk = static_cast<uint64_t>(e.disk) * weight_unit;
    max_disk = std::max(max_disk, (disk + kDiskAlign - 1) / kDiskAlign * kDiskAlign);
  }
  const int64_t n_cache = slice_layer_count(c, m.options) * m.total_batches;
  m.cache_stored = cache_format(c, p, Device::kCuda);
  const int64_t kv_units = quant_groups(sh.kv_numel, m.cache_stored.unit_elems());
  const uint64_t kv_unit_bytes = m.cache_stored.unit_bytes(Tier::kCpu);
  const ElementSplit kv_split = ElementSplit::of(kv_units, p.cache);
  device_need += static_cast<uint64_t>(n_cache) *
                 pool_bytes(static_cast<uint64_t>(kv_split.gpu) * kv_unit_bytes);
  pinned_need += static_cast<uint64_t>(n_cache) *
                 pool_bytes(static_cast<uint64_t>(kv_split.cpu) * kv_unit_bytes);
  const ElementSplit act_split = ElementSplit::of(sh.act_numel, p.activations);
  device_need +=
      static_cast<uint64_t>(m.total_batches) * pool_bytes(static_cast<uint64_t>(act_split.gpu) * 2);
  pinned_need +=
      static_cast<uint64_t>(m.total_batches) * pool_bytes(static_cast<uint64_t>(act_split.cpu) * 2);
  if (p.activations.gpu_percent < 100) {
    device_need += kRing * pool_bytes(static_cast<uint64_t>(sh.act_numel) * 2);
  }
  if (p.compress_cache) {
    device_need += kRing * pool_bytes(static_cast<uint64_t>(kv_units) * kv_unit_bytes);
  }
  uint64_t io_bytes = 0;
  if (kv_split.disk > 0) {
    io_bytes = DeviceTieredArray::range_staging_bytes(kv_units, kv_unit_bytes);
  }
  if (act_split.disk > 0) {
    io_bytes = std::max(io_bytes, DeviceTieredArray::range_staging_bytes(sh.act_numel, 2));
  }
  if (io_bytes > 0) pinned_need += 2 * pool_bytes(io_bytes + kDiskAlign);
  if (!weights_resident(p)) {
    device_need += 2 * pool_bytes(static_cast<uint64_t>(sh.max_stage_numel) * 2);
  }
  if (p.compress_weight && p.weights.gpu_percent < 100) device_need += pool_bytes(max_stage_units);
  if (!cache_resident(p)) device_need += kRing * pool_bytes(static_cast<uint64_t>(sh.kv_numel) * 2);
  const cuda::StageRunnerLimits limits{sh.act_rows, p.gpu_batch_size, sh.capacity};
  device_need += pool_bytes(cuda::StageRunner::workspace_bytes(c, limits));
  const uint64_t logits_bytes = static_cast<uint64_t>(p.gpu_batch_size * c.vocab_size) * 4;
  device_need += pool_bytes(logits_bytes);
  pinned_need += pool_bytes(static_cast<uint64_t>(p.num_gpu_batches) * logits_bytes);
  const uint64_t hidden_f32 = static_cast<uint64_t>(sh.act_numel) * 4;
  if (slice) {
    device_need += pool_bytes(hidden_f32);
    pinned_need += pool_bytes(hidden_f32);
  }
  if (max_disk > 0) pinned_need += kWeightSlots * pool_bytes(max_disk + kDiskAlign);
  const uint64_t attention_bytes = 4 * static_cast<uint64_t>(p.gpu_batch_size * c.hidden_size) * 2;
  if (p.cpu_cache_compute) pinned_need += pool_bytes(attention_bytes);
  const bool hetegen = p.hetegen_alpha.any();
  if (hetegen) {
    device_need += pool_bytes(cuda::StageRunner::host_linear_device_bytes(c, limits));
    pinned_need += pool_bytes(cuda::StageRunner::host_linear_pinned_bytes(c, limits));
  }

  // The plan with its working sets replaced by the exact figures, checked against the caps.
  m.plan = plan_memory(c, m.options);
  const auto set_working = [&m](Tier tier, uint64_t total) {
    const auto t = static_cast<size_t>(tier);
    const uint64_t data = m.plan.weights[t] + m.plan.cache[t] + m.plan.activations[t];
    m.plan.working[t] = total > data ? total - data : 0;
  };
  set_working(Tier::kGpu, device_need);
  if (p.pin_weight) set_working(Tier::kCpu, pinned_need);
  check_caps(m.plan, options.caps);
  const uint64_t free_bytes = cuda::device_free_bytes();
  STRATA_INPUT_CHECK(device_need <= free_bytes, "the policy needs ",
                     format_bytes(static_cast<double>(device_need)), " of GPU memory but GPU ",
                     options.gpu_index, " has ", format_bytes(static_cast<double>(free_bytes)),
                     " free");

  m.pool = std::make_unique<cuda::DevicePool>(device_need);
  m.pinned = std::make_unique<cuda::PinnedArena>(std::max<uint64_t>(pinned_need, kDiskAlign));
  const uint64_t disk_need = m.plan.total(Tier::kDisk);
  if (disk_need > 0) {
    STRATA_INPUT_CHECK(!options.offload_dir.empty(), "the policy puts ",
                       format_bytes(static_cast<double>(disk_need)),
                       " on disk: give --offload-dir");
    m.disk = std::make_unique<DiskStore>(options.offload_dir, disk_need);
  }

  // Weights in their stored form (fp16, or packed groups), stage by stage.
  std::vector<uint8_t> stored;
  std::vector<float> stage_f32;
  for (size_t s = 0; s < m.layouts.size(); ++s) {
    const StageLayout& layout = m.layouts[s];
    stored.resize(stage_units[s] * weight_unit);
    if (p.compress_weight) {
      stage_f32.resize(static_cast<size_t>(layout.numel));
      read_stage(source, layout, DType::kF32, stage_f32.data());
      m.packed[s].pack(stage_f32.data(), stored.data());
    } else {
      read_stage(source, layout, DType::kF16, stored.data());
    }
    m.weights.push_back(std::make_unique<DeviceTieredArray>(
        static_cast<int64_t>(stage_units[s]), weight_unit, p.weights, *m.pool,
        p.pin_weight ? m.pinned.get() : nullptr, m.disk.get(), m.counters));
    m.weights.back()->fill(stored.data(), m.compute);
    m.host_rows.emplace_back();
    if (!hetegen) continue;
    const HeteGenAlpha& a = p.hetegen_alpha;
    // The values the device computes with: the packed stage decoded, or the fp16 stage widened.
    std::vector<float> values(static_cast<size_t>(layout.numel));
    if (p.compress_weight) {
      m.packed[s].unpack(stored.data(), values.data());
    } else {
      convert_to_f32(DType::kF16, stored.data(), values.data(), values.size());
    }
    for (const auto& t : layout.tensors) {
      std::string name;
      const int kind = linear_kind(t.name, name);
      if (kind < 0) continue;
      HostRows rows{t.shape[0], t.shape[1], kind, {}, {}};
      const int64_t split = m.split_rows_of(
          std::max(kind_alpha(a.prefill, kind), kind_alpha(a.decode, kind)), rows.n);
      if (split == 0) continue;
      rows.weight.assign(values.begin() + t.offset, values.begin() + t.offset + split * rows.k);
      const std::string bias_name = t.name.substr(0, t.name.size() - 7) + ".bias";
      for (const auto& b : layout.tensors) {
        if (b.name != bias_name) continue;
        rows.bias.assign(values.begin() + b.offset, values.begin() + b.offset + split);
      }
      m.counters.add_allocation(Tier::kCpu, (rows.weight.size() + rows.bias.size()) * 4);
      m.host_rows.back().emplace(name, std::move(rows));
    }
  }
  stored = {};
  stage_f32 = {};
  for (int64_t i = 0; i < n_cache; ++i) {
    m.cache.push_back(std::make_unique<DeviceTieredArray>(
        kv_units, kv_unit_bytes, p.cache, *m.pool, m.pinned.get(), m.disk.get(), m.counters));
    m.cache.back()->set_error_slot(&m.host_error);
  }
  const auto device_block = [&m](uint64_t bytes) {
    m.counters.add_allocation(Tier::kGpu, bytes);
    return m.pool->allocate(bytes);
  };
  for (int64_t k = 0; k < m.total_batches; ++k) {
    m.acts.push_back(std::make_unique<DeviceTieredArray>(sh.act_numel, 2, p.activations, *m.pool,
                                                         m.pinned.get(), m.disk.get(), m.counters));
    m.acts.back()->set_error_slot(&m.host_error);
  }
  const auto aligned = [](cuda::Block& block) {
    const auto at = reinterpret_cast<uintptr_t>(block.data());
    return reinterpret_cast<uint8_t*>((at + kDiskAlign - 1) / kDiskAlign * kDiskAlign);
  };
  if (io_bytes > 0) {
    for (int i = 0; i < 2; ++i) {
      m.io_blocks[i] = m.pinned->allocate(io_bytes + kDiskAlign);
      m.io_staging[i] = aligned(m.io_blocks[i]);
    }
    m.counters.add_allocation(Tier::kCpu, 2 * io_bytes);
  }
  m.act_stored.resize(static_cast<size_t>(m.total_batches));
  if (p.activations.gpu_percent < 100) {
    for (auto& b : m.act_buffers) b = device_block(static_cast<uint64_t>(sh.act_numel) * 2);
  }
  if (p.compress_cache) {
    for (auto& b : m.cache_groups)
      b = device_block(static_cast<uint64_t>(kv_units) * kv_unit_bytes);
  }
  if (!weights_resident(p)) {
    for (auto& b : m.weight_buffers)
      b = device_block(static_cast<uint64_t>(sh.max_stage_numel) * 2);
  }
  if (p.compress_weight && p.weights.gpu_percent < 100) {
    m.packed_buffer = device_block(max_stage_units);
  }
  if (!cache_resident(p)) {
    for (auto& b : m.cache_buffers) b = device_block(static_cast<uint64_t>(sh.kv_numel) * 2);
  }
  m.counters.add_allocation(Tier::kGpu, cuda::StageRunner::workspace_bytes(c, limits));
  m.runner = std::make_unique<cuda::StageRunner>(c, limits, *m.pool, m.blas);
  if (hetegen) {
    m.runner->set_host_linears(
        [&m](const StageLayout& layout, const std::string& name) {
          return m.host_linear(layout, name);
        },
        *m.pool, *m.pinned);
  }
  m.logits_device = device_block(logits_bytes);
  m.logits_host = m.pinned->allocate(static_cast<uint64_t>(p.num_gpu_batches) * logits_bytes);
  m.counters.add_allocation(Tier::kCpu, m.logits_host.size_bytes());
  if (slice) {
    m.hidden_device = device_block(hidden_f32);
    m.hidden_host = m.pinned->allocate(hidden_f32);
  }
  if (p.cpu_cache_compute) {
    m.attention_host = m.pinned->allocate(attention_bytes);
    m.counters.add_allocation(Tier::kCpu, attention_bytes);
  }
  for (const auto& w : m.weights) m.staging_bytes = std::max(m.staging_bytes, w->staging_bytes());
  if (m.staging_bytes > 0) {
    for (int i = 0; i < kWeightSlots; ++i) {
      m.weight_staging[i] = m.pinned->allocate(m.staging_bytes + kDiskAlign);
      m.staging[i] = aligned(m.weight_staging[i]);
    }
    m.counters.add_allocation(Tier::kCpu, kWeightSlots * m.staging_bytes);
  }
  m.compute.synchronize();
  m.counters.clear_traffic();
  m.disk_busy_base = m.disk ? m.disk->busy_seconds() : 0;
}

CudaEngine::~CudaEngine() = default;

const OptConfig& CudaEngine::config() const {
  return impl_->config;
}
const EngineOptions& CudaEngine::options() const {
  return impl_->options;
}

// Stage s's fp16 weights on the device: in place when resident, else copied (and decoded when
// packed) into weight buffer s % 2 on the load stream, w_ready[s % 2] recorded after.
const Fp16* CudaEngine::Impl::load_weights(int64_t s, std::vector<uint64_t>& tickets) {
  DeviceTieredArray& a = *weights[static_cast<size_t>(s)];
  if (in_place(s)) return static_cast<const Fp16*>(a.resident());
  const int buf = static_cast<int>(s % 2);
  const int slot = static_cast<int>(s % kWeightSlots);
  Fp16* dst = weight_buffers[buf].as<Fp16>();
  const cuda::Stream& stream = load_stream();
  a.finish_fetch(tickets[static_cast<size_t>(s)]);  // the host waits for the disk part only
  tickets[static_cast<size_t>(s)] = 0;
  stage_done[buf].wait(stream);  // stage s - 2 has finished reading this buffer
  load_log.begin("load weights stage " + std::to_string(s), stream);
  const auto* src = static_cast<const uint8_t*>(a.resident());
  const auto& split_rows = host_rows[static_cast<size_t>(s)];
  if (!src && !split_rows.empty() && policy().compress_weight) {
    // HeteGen on packed weights: a split matrix's device rows are, per column, its trailing
    // groups, so they cross as one strided copy; every other tensor crosses whole.
    const PackedStage& ps = packed[static_cast<size_t>(s)];
    const auto& tensors = layouts[static_cast<size_t>(s)].tensors;
    auto* target = packed_buffer.as<uint8_t>();
    const uint64_t gb = quant_group_bytes(ps.bits);
    for (size_t i = 0; i < ps.tensors.size(); ++i) {
      const PackedTensor& pt = ps.tensors[i];
      std::string name;
      const int kind = linear_kind(tensors[i].name, name);
      const auto it = kind < 0 ? split_rows.end() : split_rows.find(name);
      const int64_t skip = it == split_rows.end() ? 0 : split_of(it->second) / kQuantGroup;
      if (skip == 0) {
        a.load(target, static_cast<int64_t>(pt.byte_offset),
               static_cast<int64_t>(pt.byte_offset + pt.bytes), nullptr, stream);
        continue;
      }
      const uint64_t per_column = static_cast<uint64_t>(quant_groups(pt.rows, kQuantGroup)) * gb;
      const uint64_t width = per_column - static_cast<uint64_t>(skip) * gb;
      cuda::copy_2d(target + pt.byte_offset + skip * gb, per_column,
                    a.host_data() + pt.byte_offset + skip * gb, per_column, width,
                    static_cast<size_t>(pt.cols), stream);
      counters.bytes_read[static_cast<size_t>(Tier::kCpu)] +=
          width * static_cast<uint64_t>(pt.cols);
    }
    src = target;
  } else if (!src && !split_rows.empty()) {
    // HeteGen: the rows the host computes from stay there; everything else crosses.
    int64_t begin = 0;
    for (const auto& t : layouts[static_cast<size_t>(s)].tensors) {
      std::string name;
      const int kind = linear_kind(t.name, name);
      const auto it = kind < 0 ? split_rows.end() : split_rows.find(name);
      const int64_t skip = it == split_rows.end() ? 0 : split_of(it->second) * it->second.k;
      if (skip == 0) continue;
      a.load(dst, begin, t.offset, nullptr, stream);
      begin = t.offset + skip;
    }
    a.load(dst, begin, a.n_units(), nullptr, stream);
    src = reinterpret_cast<const uint8_t*>(dst);
  } else if (!src) {
    void* target = policy().compress_weight ? packed_buffer.data() : static_cast<void*>(dst);
    a.load(target, 0, a.n_units(), staging[slot], stream);
    if (a.has_disk()) staging_free[slot].record(stream);
    src = static_cast<const uint8_t*>(target);
  }
  if (policy().compress_weight) unpack_on_device(packed[static_cast<size_t>(s)], src, dst, stream);
  load_log.end(stream);
  w_ready[buf].record(stream);
  return dst;
}

void CudaEngine::Impl::run_step(const std::vector<std::vector<SequenceStep>>& steps,
                                const std::vector<std::vector<int64_t>>& lengths, int64_t base) {
  const int64_t n_batches = static_cast<int64_t>(steps.size());
  const int64_t n_stages = static_cast<int64_t>(layouts.size());
  const int64_t h = config.hidden_size, gbs = policy().gpu_batch_size;
  const int64_t slot_stride = 2 * shapes.capacity * h;  // elements between cache slots
  const size_t vocab = static_cast<size_t>(config.vocab_size);
  origin.record(compute);
  const double origin_s = trace_clock_s();
  step_decode = std::all_of(steps.begin(), steps.end(), [](const auto& batch) {
    return std::all_of(batch.begin(), batch.end(),
                       [](const SequenceStep& st) { return st.tokens.size() == 1; });
  });
  std::vector<uint64_t> tickets(static_cast<size_t>(n_stages), 0);
  // The disk read of stage s into its staging slot, once the copy out of the slot is done.
  const auto submit = [&](int64_t s) {
    if (s >= n_stages) return;
    DeviceTieredArray& a = *weights[static_cast<size_t>(s)];
    if (!a.has_disk() || a.resident()) return;
    const int slot = static_cast<int>(s % kWeightSlots);
    staging_free[slot].synchronize();
    tickets[static_cast<size_t>(s)] = a.submit_fetch(0, a.n_units(), staging[slot], staging_bytes);
  };
  for (int64_t s = 0; s < kWeightSlots - 1 && s < n_stages; ++s) {
    if (carried) {
      tickets[static_cast<size_t>(s)] = carried_tickets[s];
    } else {
      submit(s);
    }
  }
  carried = false;
  const Fp16* w = load_weights(0, tickets);
  int64_t cache_item = 0, act_item = 0;

  for (int64_t s = 0; s < n_stages; ++s) {
    const StageLayout& layout = layouts[static_cast<size_t>(s)];
    const bool loaded = !in_place(s);
    for (int64_t k = 0; k < n_batches; ++k) {
      const auto& batch = steps[static_cast<size_t>(k)];
      if (batch.empty()) continue;
      const auto& lens = lengths[static_cast<size_t>(k)];
      const std::string tag = " stage " + std::to_string(s) + " batch " + std::to_string(k);
      // The batch's hidden rows: resident, or loaded into a ring buffer.
      DeviceTieredArray& act = *acts[static_cast<size_t>(base + k)];
      const int64_t act_elems = batch_rows(batch) * h;
      auto* hidden = static_cast<Fp16*>(act.resident());
      int act_slot = -1;
      if (!hidden) {
        act_slot = static_cast<int>(act_item++ % kRing);
        hidden = act_buffers[act_slot].as<Fp16>();
        const cuda::Stream& stream = load_stream();
        act_free[act_slot].wait(stream);
        if (layout.kind != StageKind::kEmbed) {
          act_stored[static_cast<size_t>(base + k)].wait(stream);
          load_log.begin("load activations" + tag, stream);
          act.load_through(hidden, 0, act_elems, io_staging[0], stream);
          load_log.end(stream);
        }
        act_ready[act_slot].record(stream);
      }
      // The layer's KV cache: resident, or its valid rows copied into a ring buffer.
      DeviceTieredArray* kv_array = nullptr;
      cuda::DeviceKvBlock kv{nullptr, shapes.capacity, h};
      int slot = -1;
      // Decode attention on the CPU: the cache never crosses the link.
      const bool host_attention = stage_has_cache(layout.kind) && policy().cpu_cache_compute &&
                                  std::all_of(batch.begin(), batch.end(),
                                              [](const auto& st) { return st.tokens.size() == 1; });
      if (host_attention) {
        kv_array = cache[static_cast<size_t>((layout.layer - options.first_layer) * total_batches +
                                             base + k)]
                       .get();
      } else if (stage_has_cache(layout.kind)) {
        kv_array = cache[static_cast<size_t>((layout.layer - options.first_layer) * total_batches +
                                             base + k)]
                       .get();
        kv.base = policy().compress_cache ? nullptr : static_cast<Fp16*>(kv_array->resident());
        if (!kv.base) {
          slot = static_cast<int>(cache_item++ % kRing);
          kv.base = cache_buffers[slot].as<Fp16>();
          const cuda::Stream& stream = load_stream();
          cache_free[slot].wait(stream);
          load_log.begin("load cache" + tag, stream);
          for (const auto& st : batch) {
            const int64_t len = lens[static_cast<size_t>(st.slot)];
            if (len == 0) continue;
            const int64_t keys = st.slot * slot_stride, values = keys + shapes.capacity * h;
            load_cache(*kv_array, slot, keys, keys + len * h, stream);
            load_cache(*kv_array, slot, values, values + len * h, stream);
          }
          load_log.end(stream);
          cache_ready[slot].record(stream);
        }
      }

      if (loaded) w_ready[s % 2].wait(compute);
      if (slot >= 0) cache_ready[slot].wait(compute);
      if (act_slot >= 0) act_ready[act_slot].wait(compute);
      compute_log.begin("compute" + tag, compute);
      runner->begin_step(batch, lens, compute);
      switch (layout.kind) {
        case StageKind::kEmbed:
          runner->embed(layout, w, hidden, compute);
          break;
        case StageKind::kDecoder:
        case StageKind::kAttention:
        case StageKind::kMlp:
          if (host_attention) {
            attention_on_host(layout, w, hidden, batch, lens, *kv_array);
          } else {
            runner->decoder(layout, w, kv, hidden, compute);
          }
          break;
        case StageKind::kHead:
          runner->head(layout, w, hidden, logits_device.as<float>(), compute);
          cuda::copy_d2h(logits_host.as<float>() + static_cast<size_t>(k * gbs) * vocab,
                         logits_device.data(), batch.size() * vocab * sizeof(float), compute);
          break;
      }
      compute_log.end(compute);

      if (slot >= 0) {
        // Only the new rows go back: positions [len, len + n) of each sequence's keys and values.
        const cuda::Stream& stream = store_stream();
        batch_done[slot].record(compute);
        batch_done[slot].wait(stream);
        store_log.begin("store cache" + tag, stream);
        for (const auto& st : batch) {
          const int64_t len = lens[static_cast<size_t>(st.slot)];
          const int64_t n = static_cast<int64_t>(st.tokens.size());
          const int64_t keys = st.slot * slot_stride, values = keys + shapes.capacity * h;
          for (int64_t part : {keys, values}) {
            store_cache(*kv_array, slot, part + len * h, part + (len + n) * h, stream);
          }
        }
        store_log.end(stream);
        cache_free[slot].record(stream);
      }
      if (act_slot >= 0) {
        const cuda::Stream& stream = store_stream();
        act_done[act_slot].record(compute);
        act_done[act_slot].wait(stream);
        if (layout.kind != StageKind::kHead) {
          store_log.begin("store activations" + tag, stream);
          act.store(hidden, 0, act_elems, io_staging[1], stream);
          store_log.end(stream);
          act_stored[static_cast<size_t>(base + k)].record(stream);
        }
        act_free[act_slot].record(stream);
      }
    }
    stage_done[s % 2].record(compute);
    // Stage s + 2's disk read and stage s + 1's copies are issued behind stage s's compute.
    submit(s + kWeightSlots - 1);
    if (s + 1 < n_stages) w = load_weights(s + 1, tickets);
  }
  // The next step's first stages are read while this one finishes, so no step starts with an
  // idle disk (submit waits for the copies out of their slots).
  if (n_stages >= kWeightSlots) {
    for (int64_t s = 0; s < kWeightSlots - 1; ++s) {
      tickets[static_cast<size_t>(s)] = 0;
      submit(s);
      carried_tickets[s] = tickets[static_cast<size_t>(s)];
    }
    carried = true;
  }
  // Every stream drains before the tokens are sampled; errors surface here.
  loader.synchronize();
  compute.synchronize();
  storer.synchronize();
  for (SpanLog* log : {&load_log, &compute_log, &store_log}) log->collect(origin, origin_s);
  if (host_error) std::rethrow_exception(std::exchange(host_error, nullptr));
}

// Cache elements [begin, end) (whole rows) of a (layer, batch) block into cache ring buffer
// `slot`: copied, or copied packed and decoded when the cache is compressed.
void CudaEngine::Impl::load_cache(DeviceTieredArray& a, int slot, int64_t begin, int64_t end,
                                  const cuda::Stream& stream) {
  Fp16* rows = cache_buffers[slot].as<Fp16>();
  if (!policy().compress_cache) {
    a.load_through(rows, begin, end, io_staging[0], stream);
    return;
  }
  const int64_t g = cache_stored.group_len;
  auto* groups = cache_groups[slot].as<uint8_t>();
  a.load_through(groups, begin / g, end / g, io_staging[0], stream);
  cuda::dequantize(cache_stored.bits, groups + (begin / g) * cache_stored.unit_bytes(Tier::kCpu),
                   end - begin, g, rows + begin, stream);
}

void CudaEngine::Impl::store_cache(DeviceTieredArray& a, int slot, int64_t begin, int64_t end,
                                   const cuda::Stream& stream) {
  const Fp16* rows = cache_buffers[slot].as<Fp16>();
  if (!policy().compress_cache) {
    a.store(rows, begin, end, io_staging[1], stream);
    return;
  }
  const int64_t g = cache_stored.group_len;
  auto* groups = cache_groups[slot].as<uint8_t>();
  cuda::quantize(cache_stored.bits, rows + begin, end - begin, g,
                 groups + (begin / g) * cache_stored.unit_bytes(Tier::kCpu), stream);
  a.store(groups, begin / g, end / g, io_staging[1], stream);
}

cuda::HostLinear CudaEngine::Impl::host_linear(const StageLayout& layout, const std::string& name) {
  const auto& stage_rows = host_rows[static_cast<size_t>(&layout - layouts.data())];
  const auto it = stage_rows.find(name);
  if (it == stage_rows.end()) return {};
  const HostRows* rows = &it->second;
  const int64_t split = split_of(*rows);
  if (split == 0) return {};
  const bool relu = rows->kind == 1 && config.activation == Activation::kRelu;
  const bool gelu = rows->kind == 1 && config.activation == Activation::kGelu;
  return {split, [this, rows, split, relu, gelu](const Fp16* x, Fp16* y, int64_t m) {
            try {
              std::vector<float> in(static_cast<size_t>(m * rows->k));
              std::vector<float> out(static_cast<size_t>(m * split));
              convert_to_f32(DType::kF16, x, in.data(), in.size());
              cpu::linear(in.data(), rows->weight.data(),
                          rows->bias.empty() ? nullptr : rows->bias.data(), out.data(), m, split,
                          rows->k);
              if (relu) cpu::relu(out.data(), static_cast<int64_t>(out.size()));
              if (gelu) cpu::gelu(out.data(), static_cast<int64_t>(out.size()));
              convert_from_f32(DType::kF16, out.data(), y, out.size());
            } catch (...) {
              if (!host_error) host_error = std::current_exception();
            }
          }};
}

// A decoder stage with its decode attention on the host, all on the compute stream: q, k, v
// cross to pinned memory, the host appends k and v to the cache and attends, the output crosses
// back, and the stage finishes on the device.
void CudaEngine::Impl::attention_on_host(const StageLayout& layout, const Fp16* w, Fp16* hidden,
                                         const std::vector<SequenceStep>& batch,
                                         const std::vector<int64_t>& lens,
                                         DeviceTieredArray& kv_array) {
  const int64_t h = config.hidden_size, n = static_cast<int64_t>(batch.size());
  const size_t rows_bytes = static_cast<size_t>(n * h) * sizeof(Fp16);
  auto* qkv = attention_host.as<Fp16>();
  Fp16* out = qkv + 3 * policy().gpu_batch_size * h;
  runner->project_qkv(layout, w, hidden, compute);
  cuda::copy_d2h(qkv, runner->q(), rows_bytes, compute);
  cuda::copy_d2h(qkv + n * h, runner->k(), rows_bytes, compute);
  cuda::copy_d2h(qkv + 2 * n * h, runner->v(), rows_bytes, compute);
  std::vector<int64_t> slots, lengths;
  for (const auto& st : batch) {
    slots.push_back(st.slot);
    lengths.push_back(lens[static_cast<size_t>(st.slot)]);
  }
  auto* cache = reinterpret_cast<Fp16*>(kv_array.host_data());
  cuda::launch_host(
      compute, [this, slots = std::move(slots), lengths = std::move(lengths), qkv, cache, out] {
        try {
          attend_on_host(config, shapes.capacity, slots, lengths, qkv, cache, out);
        } catch (...) {
          if (!host_error) host_error = std::current_exception();
        }
      });
  counters.bytes_written[static_cast<size_t>(Tier::kCpu)] += 2 * rows_bytes;
  cuda::copy_h2d(runner->attention_out(), out, rows_bytes, compute);
  runner->finish_decoder(layout, w, hidden, compute);
}

void CudaEngine::run_step(const std::vector<std::vector<SequenceStep>>& steps,
                          const std::vector<std::vector<int64_t>>& lengths, int64_t first_batch) {
  impl_->run_step(steps, lengths, first_batch);
}

void CudaEngine::write_hidden(int64_t group, int64_t k, const float* rows, int64_t n_rows) {
  Impl& m = *impl_;
  const int64_t n = n_rows * m.config.hidden_size;
  STRATA_CHECK(m.hidden_host.data() && n <= m.shapes.act_numel,
               "hidden rows past the engine's activation buffer");
  DeviceTieredArray& act = *m.acts[static_cast<size_t>(group * m.policy().num_gpu_batches + k)];
  auto* target = static_cast<Fp16*>(act.resident());
  if (!target) target = m.act_buffers[0].as<Fp16>();  // the engine is idle between steps
  std::memcpy(m.hidden_host.data(), rows, static_cast<size_t>(n) * 4);
  cuda::copy_h2d(m.hidden_device.data(), m.hidden_host.data(), static_cast<size_t>(n) * 4,
                 m.compute);
  cuda::convert(m.hidden_device.as<float>(), target, n, m.compute);
  if (!act.resident()) act.store(target, 0, n, m.io_staging[1], m.compute);
  m.compute.synchronize();
}

void CudaEngine::read_hidden(int64_t group, int64_t k, float* rows, int64_t n_rows) {
  Impl& m = *impl_;
  const int64_t n = n_rows * m.config.hidden_size;
  STRATA_CHECK(m.hidden_host.data() && n <= m.shapes.act_numel,
               "hidden rows past the engine's activation buffer");
  DeviceTieredArray& act = *m.acts[static_cast<size_t>(group * m.policy().num_gpu_batches + k)];
  auto* source = static_cast<Fp16*>(act.resident());
  if (!source) {
    source = m.act_buffers[0].as<Fp16>();
    act.load_through(source, 0, n, m.io_staging[0], m.compute);
  }
  cuda::convert(source, m.hidden_device.as<float>(), n, m.compute);
  cuda::copy_d2h(m.hidden_host.data(), m.hidden_device.data(), static_cast<size_t>(n) * 4,
                 m.compute);
  m.compute.synchronize();
  std::memcpy(rows, m.hidden_host.data(), static_cast<size_t>(n) * 4);
}

std::span<const float> CudaEngine::logits(int64_t k) const {
  const Impl& m = *impl_;
  const size_t per_batch = static_cast<size_t>(m.policy().gpu_batch_size * m.config.vocab_size);
  return {m.logits_host.as<float>() + static_cast<size_t>(k) * per_batch, per_batch};
}

bool CudaEngine::has_embed() const {
  return impl_->layouts.front().kind == StageKind::kEmbed;
}

bool CudaEngine::has_head() const {
  return impl_->layouts.back().kind == StageKind::kHead;
}

EngineStats CudaEngine::stats() const {
  const Impl& m = *impl_;
  EngineStats s;
  fill_tier_stats(m.counters, m.plan, s);
  s.compute_busy_s = m.compute_log.busy_s();
  s.load_busy_s = m.load_log.busy_s();
  s.store_busy_s = m.store_log.busy_s();
  s.wall_s = wall_s_;
  s.disk_busy_s = m.disk ? m.disk->busy_seconds() - m.disk_busy_base : 0;
  return s;
}

void CudaEngine::clear_stats() {
  Impl& m = *impl_;
  m.counters.clear_traffic();
  for (SpanLog* log : {&m.load_log, &m.compute_log, &m.store_log}) log->clear();
  wall_s_ = 0;
  m.disk_busy_base = m.disk ? m.disk->busy_seconds() : 0;
}

nlohmann::json CudaEngine::trace() const {
  const Impl& m = *impl_;
  return chrome_trace({{m.compute_log.name(), m.compute_log.spans()},
                       {m.load_log.name(), m.load_log.spans()},
                       {m.store_log.name(), m.store_log.spans()}});
}

}  // namespace strata
