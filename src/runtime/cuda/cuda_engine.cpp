#include "runtime/cuda/cuda_engine.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "core/dtype.h"
#include "core/error.h"
#include "core/units.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/quant.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/ops.h"
#include "runtime/cuda/stage_runner.h"
#include "kernels/quant_format.h"
#include "runtime/cuda/cuda_engine_impl.h"
#include "runtime/cuda/device_tiers.h"
#include "runtime/engine_layout.h"
#include "runtime/packed_stage.h"
#include "runtime/stream.h"

namespace strata {

using cuda_engine::Fp16;
using cuda_engine::HostRows;
using cuda_engine::kDiskAlign;
using cuda_engine::kind_alpha;
using cuda_engine::linear_kind;
using cuda_engine::pool_bytes;
using cuda_engine::SpanLog;

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
    m.weights.back()->fill(stored.data(), m.compute_stream);
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
  m.compute_stream.synchronize();
  m.marks = std::make_unique<MarkTable<cuda::Event>>(m.total_batches);
  m.schedule = std::make_unique<BlockSchedule>(m, m.layouts);
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

void CudaEngine::run_step(const std::vector<std::vector<SequenceStep>>& steps,
                          const std::vector<std::vector<int64_t>>& lengths, int64_t first_batch) {
  impl_->schedule->run(steps, lengths, first_batch);
}

void CudaEngine::write_hidden(int64_t group, int64_t k, const float* rows, int64_t n_rows) {
  Impl& m = *impl_;
  const int64_t n = n_rows * m.config.hidden_size;
  DeviceTieredArray& act = m.hidden_array(group, k, n);
  auto* target = static_cast<Fp16*>(act.resident());
  if (!target) target = m.act_buffers[0].as<Fp16>();  // the engine is idle between steps
  std::memcpy(m.hidden_host.data(), rows, static_cast<size_t>(n) * 4);
  cuda::copy_h2d(m.hidden_device.data(), m.hidden_host.data(), static_cast<size_t>(n) * 4,
                 m.compute_stream);
  cuda::convert(m.hidden_device.as<float>(), target, n, m.compute_stream);
  if (!act.resident()) act.store(target, 0, n, m.io_staging[1], m.compute_stream);
  m.compute_stream.synchronize();
}

void CudaEngine::read_hidden(int64_t group, int64_t k, float* rows, int64_t n_rows) {
  Impl& m = *impl_;
  const int64_t n = n_rows * m.config.hidden_size;
  DeviceTieredArray& act = m.hidden_array(group, k, n);
  auto* source = static_cast<Fp16*>(act.resident());
  if (!source) {
    source = m.act_buffers[0].as<Fp16>();
    act.load_through(source, 0, n, m.io_staging[0], m.compute_stream);
  }
  cuda::convert(source, m.hidden_device.as<float>(), n, m.compute_stream);
  cuda::copy_d2h(m.hidden_host.data(), m.hidden_device.data(), static_cast<size_t>(n) * 4,
                 m.compute_stream);
  m.compute_stream.synchronize();
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
