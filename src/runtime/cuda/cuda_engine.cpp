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
#include "kernels/quant_format.h"
#include "runtime/cuda/cuda_engine_impl.h"
#include "runtime/cuda/cuda_layout.h"
#include "runtime/cuda/device_tiers.h"
#include "runtime/cuda/stage_runner.h"
#include "runtime/engine_layout.h"
#include "runtime/machine_fit.h"
#include "runtime/packed_stage.h"
#include "runtime/scheduled_engine.h"
#include "runtime/stream.h"

namespace strata {

using cuda_engine::Fp16;
using cuda_engine::HostRows;
using cuda_engine::kDiskAlign;
using cuda_engine::SpanLog;

CudaBackend::CudaBackend(const WeightSource& source, const EngineOptions& engine_options)
    : select(engine_options.gpu_index), config(source.config()), options(engine_options) {
  options.device = Device::kCuda;
  const Policy& p = options.policy;
  p.validate();
  const std::string why = cuda_unsupported(p);
  STRATA_INPUT_CHECK(why.empty(), why);
  STRATA_CHECK(options.max_prompt_len >= 1 && options.gen_len >= 1,
               "engine needs prompt and gen lengths");
  STRATA_CHECK(options.n_groups >= 1, "engine needs at least one group");
  const ModelConfig& c = config;
  layouts = slice_layouts(c, options);
  total_batches = p.num_gpu_batches * options.n_groups;
  shapes = shapes_of(c, options, layouts);
  const Shapes& sh = shapes;
  const CudaLayout l = cuda_layout(c, options, layouts, sh);
  cache_stored = l.cache_stored;
  plan = plan_cuda_memory(c, options);
  check_caps(plan, options.caps);
  check_fits_machine(c, options, plan, Device::kCuda);  // pinned host memory and the disk tier
  // The cuBLAS handle exists (a member), so its setup is already out of free memory; the
  // reserve covers what loads later.
  const uint64_t free_bytes = cuda::device_free_bytes();
  const uint64_t need = l.device_bytes + l.reserve_bytes;
  STRATA_INPUT_CHECK(need <= free_bytes, "the policy needs ",
                     format_bytes(static_cast<double>(need)), " of GPU memory (",
                     format_bytes(static_cast<double>(l.reserve_bytes)),
                     " of it outside the pool) but GPU ", options.gpu_index, " has ",
                     format_bytes(static_cast<double>(free_bytes)), " free");

  pool = std::make_unique<cuda::DevicePool>(l.device_bytes);
  pinned = std::make_unique<cuda::PinnedArena>(std::max<uint64_t>(l.pinned_bytes, kDiskAlign));
  disk = make_disk_tier(plan, options.offload_dir);

  place_weights(source, l);
  allocate_working(l);
  compute_stream.synchronize();
  marks = std::make_unique<MarkTable<cuda::Event>>(total_batches);
  schedule = std::make_unique<BlockSchedule>(*this, layouts, options.policy.overlap);
  counters.clear_traffic();
}

// Weights in their stored form (fp16, or packed groups), stage by stage.
void CudaBackend::place_weights(const WeightSource& source, const CudaLayout& l) {
  const Policy& p = policy();
  std::vector<uint8_t> stored;
  std::vector<float> stage_f32;
  for (size_t s = 0; s < layouts.size(); ++s) {
    const StageLayout& layout = layouts[s];
    stored.resize(l.stage_units[s] * l.weight_unit);
    if (p.compress_weight) {
      packed.push_back(PackedStage::of(layout, p.compress_bits));
      stage_f32.resize(static_cast<size_t>(layout.numel));
      read_stage(source, layout, DType::kF32, stage_f32.data());
      packed[s].pack(stage_f32.data(), stored.data());
    } else {
      read_stage(source, layout, DType::kF16, stored.data());
    }
    weights.push_back(std::make_unique<DeviceTieredArray>(
        static_cast<int64_t>(l.stage_units[s]), l.weight_unit, p.weights, *pool,
        p.pin_weight ? pinned.get() : nullptr, disk.get(), counters));
    weights.back()->fill(stored.data(), compute_stream);
    host_rows.emplace_back();
    if (l.hetegen) keep_host_rows(s, stored);
  }
}

// HeteGen: fp32 copies of each split linear's leading rows, the values the device computes with
// (the packed stage decoded, or the fp16 stage widened).
void CudaBackend::keep_host_rows(size_t s, const std::vector<uint8_t>& stored) {
  const Policy& p = policy();
  const StageLayout& layout = layouts[s];
  const HeteGenAlpha& a = p.hetegen_alpha;
  std::vector<float> values(static_cast<size_t>(layout.numel));
  if (p.compress_weight) {
    packed[s].unpack(stored.data(), values.data());
  } else {
    convert_to_f32(DType::kF16, stored.data(), values.data(), values.size());
  }
  for (const auto& t : layout.tensors) {
    std::string name;
    const int kind = linear_kind(t.name, name);
    if (kind < 0) continue;
    HostRows rows{t.shape[0], t.shape[1], kind, {}, {}};
    const int64_t split =
        split_rows_of(std::max(kind_alpha(a.prefill, kind), kind_alpha(a.decode, kind)), rows.n);
    if (split == 0) continue;
    rows.weight.assign(values.begin() + t.offset, values.begin() + t.offset + split * rows.k);
    const std::string bias_name = t.name.substr(0, t.name.size() - 7) + ".bias";
    for (const auto& b : layout.tensors) {
      if (b.name != bias_name) continue;
      rows.bias.assign(values.begin() + b.offset, values.begin() + b.offset + split);
    }
    counters.add_allocation(Tier::kCpu, (rows.weight.size() + rows.bias.size()) * 4);
    host_rows.back().emplace(name, std::move(rows));
  }
}

// Cache and hidden-row arrays, rings, staging and the stage runner, as cuda_layout sized them.
void CudaBackend::allocate_working(const CudaLayout& l) {
  const Policy& p = policy();
  const Shapes& sh = shapes;
  const ModelConfig& c = config;
  for (int64_t i = 0; i < l.n_cache; ++i) {
    cache.push_back(std::make_unique<DeviceTieredArray>(l.kv_units, l.kv_unit_bytes, p.cache, *pool,
                                                        pinned.get(), disk.get(), counters));
    cache.back()->set_error_slot(&host_error);
  }
  const auto device_block = [this](uint64_t bytes) {
    counters.add_allocation(Tier::kGpu, bytes);
    return pool->allocate(bytes);
  };
  for (int64_t k = 0; k < total_batches; ++k) {
    acts.push_back(std::make_unique<DeviceTieredArray>(sh.act_numel, 2, p.activations, *pool,
                                                       pinned.get(), disk.get(), counters));
    acts.back()->set_error_slot(&host_error);
  }
  const auto aligned = [](cuda::Block& block) {
    const auto at = reinterpret_cast<uintptr_t>(block.data());
    return reinterpret_cast<uint8_t*>((at + kDiskAlign - 1) / kDiskAlign * kDiskAlign);
  };
  if (l.io_bytes > 0) {
    for (int i = 0; i < 2; ++i) {
      io_blocks[i] = pinned->allocate(l.io_bytes + kDiskAlign);
      io_staging[i] = aligned(io_blocks[i]);
    }
    counters.add_allocation(Tier::kCpu, 2 * l.io_bytes);
  }
  if (p.activations.gpu_percent < 100) {
    for (auto& b : act_buffers) b = device_block(static_cast<uint64_t>(sh.act_numel) * 2);
  }
  if (p.compress_cache) {
    for (auto& b : cache_groups)
      b = device_block(static_cast<uint64_t>(l.kv_units) * l.kv_unit_bytes);
  }
  if (!weights_resident(p)) {
    for (auto& b : weight_buffers) b = device_block(static_cast<uint64_t>(sh.max_stage_numel) * 2);
  }
  if (p.compress_weight && p.weights.gpu_percent < 100) {
    packed_buffer = device_block(l.max_stage_units);
  }
  if (!cache_resident(p)) {
    for (auto& b : cache_buffers) b = device_block(static_cast<uint64_t>(sh.kv_numel) * 2);
  }
  blas_workspace = device_block(l.blas_workspace_bytes);
  blas.set_workspace(blas_workspace.data(), l.blas_workspace_bytes);
  linear_scratch = device_block(l.linear_scratch_bytes);
  blas.set_output_scratch(linear_scratch.data(), l.linear_scratch_bytes);
  counters.add_allocation(Tier::kGpu, cuda::StageRunner::workspace_bytes(c, l.limits));
  runner = std::make_unique<cuda::StageRunner>(c, l.limits, *pool, *pinned, blas);
  counters.add_allocation(Tier::kCpu, cuda::StageRunner::host_meta_bytes(c, l.limits));
  if (l.hetegen) {
    runner->set_host_linears([this](const StageLayout& layout,
                                    const std::string& name) { return host_linear(layout, name); },
                             *pool, *pinned);
  }
  logits_device = device_block(l.logits_bytes);
  logits_host = pinned->allocate(static_cast<uint64_t>(p.num_gpu_batches) * l.logits_bytes);
  counters.add_allocation(Tier::kCpu, logits_host.size_bytes());
  if (l.slice) {
    hidden_device = device_block(l.hidden_f32_bytes);
    hidden_host = pinned->allocate(l.hidden_f32_bytes);
  }
  if (p.cpu_cache_compute) {
    attention_host = pinned->allocate(l.attention_bytes);
    counters.add_allocation(Tier::kCpu, l.attention_bytes);
  }
  staging_bytes = l.weight_disk_bytes;  // the largest stage disk part, as the layout sized it
  if (staging_bytes > 0) {
    for (int i = 0; i < kWeightSlots; ++i) {
      weight_staging[i] = pinned->allocate(staging_bytes + kDiskAlign);
      staging[i] = aligned(weight_staging[i]);
    }
    counters.add_allocation(Tier::kCpu, kWeightSlots * staging_bytes);
  }
}

void CudaBackend::write_hidden(int64_t group, int64_t k, const float* rows, int64_t n_rows) {
  const int64_t n = n_rows * config.hidden_size;
  DeviceTieredArray& act = hidden_array(group, k, n);
  auto* target = static_cast<Fp16*>(act.resident());
  if (!target) target = act_buffers[0].as<Fp16>();  // the engine is idle between steps
  std::memcpy(hidden_host.data(), rows, static_cast<size_t>(n) * 4);
  cuda::copy_h2d(hidden_device.data(), hidden_host.data(), static_cast<size_t>(n) * 4,
                 compute_stream);
  cuda::convert(hidden_device.as<float>(), target, n, compute_stream);
  if (!act.resident()) act.store(target, 0, n, io_staging[1], compute_stream);
  compute_stream.synchronize();
}

void CudaBackend::read_hidden(int64_t group, int64_t k, float* rows, int64_t n_rows) {
  const int64_t n = n_rows * config.hidden_size;
  DeviceTieredArray& act = hidden_array(group, k, n);
  auto* source = static_cast<Fp16*>(act.resident());
  if (!source) {
    source = act_buffers[0].as<Fp16>();
    act.load_through(source, 0, n, io_staging[0], compute_stream);
  }
  cuda::convert(source, hidden_device.as<float>(), n, compute_stream);
  cuda::copy_d2h(hidden_host.data(), hidden_device.data(), static_cast<size_t>(n) * 4,
                 compute_stream);
  compute_stream.synchronize();
  std::memcpy(rows, hidden_host.data(), static_cast<size_t>(n) * 4);
}

std::span<const float> CudaBackend::logits_of(int64_t k) const {
  const size_t per_batch = static_cast<size_t>(policy().gpu_batch_size * config.vocab_size);
  return {logits_host.as<float>() + static_cast<size_t>(k) * per_batch, per_batch};
}

void CudaBackend::lane_busy(EngineStats& s) const {
  s.compute_busy_s = compute_log.busy_s();
  s.load_busy_s = load_log.busy_s();
  s.store_busy_s = store_log.busy_s();
}

void CudaBackend::clear_lanes() {
  for (SpanLog* log : {&load_log, &compute_log, &store_log}) log->clear();
}

nlohmann::json CudaBackend::trace() const {
  return chrome_trace({{compute_log.name(), compute_log.spans()},
                       {load_log.name(), load_log.spans()},
                       {store_log.name(), store_log.spans()}});
}

std::unique_ptr<Engine> make_cuda_engine(const WeightSource& source, const EngineOptions& options) {
  return std::make_unique<ScheduledEngine<CudaBackend>>(source, options);
}

}  // namespace strata
