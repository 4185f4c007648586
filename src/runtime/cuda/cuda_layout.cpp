#include "runtime/cuda/cuda_layout.h"

#include <algorithm>
#include <string>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/quant.h"
#include "kernels/quant_format.h"
#include "runtime/cuda/device_tiers.h"
#include "runtime/cuda/runner_layout.h"
#include "runtime/packed_stage.h"

namespace strata {
namespace {

constexpr uint64_t kDiskAlign = DiskStore::kAlignment;

uint64_t round_to_blocks(uint64_t bytes) {
  return (bytes + kDiskAlign - 1) / kDiskAlign * kDiskAlign;
}

// HeteGen's host rows of one stage: fp32 weight rows and their bias, at the larger split.
uint64_t host_rows_bytes(const StageLayout& layout, const Policy& p) {
  uint64_t bytes = 0;
  for (const auto& t : layout.tensors) {
    std::string name;
    const int kind = linear_kind(t.name, name);
    if (kind < 0) continue;
    const HeteGenAlpha& a = p.hetegen_alpha;
    const int64_t split = host_split_rows(
        p, std::max(kind_alpha(a.prefill, kind), kind_alpha(a.decode, kind)), t.shape[0]);
    const std::string bias = t.name.substr(0, t.name.size() - 7) + ".bias";
    const bool has_bias = std::any_of(layout.tensors.begin(), layout.tensors.end(),
                                      [&](const StageTensor& b) { return b.name == bias; });
    bytes += static_cast<uint64_t>(split * t.shape[1] + (has_bias ? split : 0)) * 4;
  }
  return bytes;
}

}  // namespace

uint64_t pool_bytes(uint64_t bytes) {
  constexpr uint64_t a = cuda::RangeAllocator::kAlign;
  return (bytes + a - 1) / a * a;
}

uint64_t blas_workspace_bytes(const ModelConfig& c, const cuda::StageRunnerLimits& limits) {
  constexpr uint64_t kMax = uint64_t{32} << 20, kMib = uint64_t{1} << 20;
  const uint64_t widest = std::max<uint64_t>(cuda::widest_linear(c), c.mlp_width());
  const uint64_t outputs =
      std::max(static_cast<uint64_t>(limits.max_rows) * widest,
               static_cast<uint64_t>(limits.max_seqs) * static_cast<uint64_t>(c.vocab_size));
  return std::min(kMax, (2 * outputs * 4 + kMib - 1) / kMib * kMib);
}

int64_t host_split_rows(const Policy& p, double alpha, int64_t n) {
  // Packed weights split at whole groups; fp16 ones at multiples of 8, so the device's part
  // (leading dimension n - split) stays eligible for cuBLAS's tensor-core kernels.
  const int64_t unit = p.compress_weight ? kQuantGroup : 8;
  return cpu::split_column(alpha, n) / unit * unit;
}

int linear_kind(const std::string& tensor, std::string& short_name) {
  const size_t at = tensor.find("layers.");
  const std::string suffix = ".weight";
  if (at == std::string::npos || tensor.size() < suffix.size() ||
      tensor.compare(tensor.size() - suffix.size(), suffix.size(), suffix) != 0) {
    return -1;
  }
  short_name = tensor.substr(at, tensor.size() - suffix.size() - at);
  for (const char* proj : {"q_proj", "k_proj", "v_proj", "out_proj", "o_proj"}) {
    if (short_name.ends_with(std::string("self_attn.") + proj)) return 0;
  }
  // SwiGLU's gate and up take fc1's alpha, down fc2's.
  for (const char* fc1 : {".fc1", "mlp.gate_proj", "mlp.up_proj"}) {
    if (short_name.ends_with(fc1)) return 1;
  }
  if (short_name.ends_with(".fc2") || short_name.ends_with("mlp.down_proj")) return 2;
  return -1;
}

double kind_alpha(const LinearAlphas& a, int kind) {
  return kind == 0 ? a.attention : kind == 1 ? a.fc1 : a.fc2;
}

CudaLayout cuda_layout(const ModelConfig& c, const EngineOptions& o,
                       const std::vector<StageLayout>& layouts, const Shapes& sh) {
  const Policy& p = o.policy;
  const int64_t total_batches = p.num_gpu_batches * o.n_groups;
  CudaLayout l;
  l.slice = !(layouts.front().kind == StageKind::kEmbed && layouts.back().kind == StageKind::kHead);
  l.hetegen = p.hetegen_alpha.any();
  l.weight_unit = p.compress_weight ? 1 : 2;
  uint64_t& device = l.device_bytes;
  uint64_t& pinned = l.pinned_bytes;
  // Weights in their stored form, split by units as every tiered array is.
  for (const auto& layout : layouts) {
    l.stage_units.push_back(p.compress_weight ? PackedStage::of(layout, p.compress_bits).bytes
                                              : static_cast<uint64_t>(layout.numel));
    l.max_stage_units = std::max(l.max_stage_units, l.stage_units.back());
    const ElementSplit e = ElementSplit::of(static_cast<int64_t>(l.stage_units.back()), p.weights);
    device += pool_bytes(static_cast<uint64_t>(e.gpu) * l.weight_unit);
    if (p.pin_weight) pinned += pool_bytes(static_cast<uint64_t>(e.cpu) * l.weight_unit);
    l.weight_disk_bytes = std::max(l.weight_disk_bytes,
                                   round_to_blocks(static_cast<uint64_t>(e.disk) * l.weight_unit));
    if (l.hetegen) l.host_rows_bytes += host_rows_bytes(layout, p);
  }
  // Cache blocks and hidden rows.
  l.n_cache = slice_layer_count(c, o) * total_batches;
  l.cache_stored = cache_format(c, p, Device::kCuda);
  l.kv_units = quant_groups(sh.kv_numel, l.cache_stored.unit_elems());
  l.kv_unit_bytes = l.cache_stored.unit_bytes(Tier::kCpu);
  const ElementSplit kv_split = ElementSplit::of(l.kv_units, p.cache);
  const auto n_cache = static_cast<uint64_t>(l.n_cache);
  device += n_cache * pool_bytes(static_cast<uint64_t>(kv_split.gpu) * l.kv_unit_bytes);
  pinned += n_cache * pool_bytes(static_cast<uint64_t>(kv_split.cpu) * l.kv_unit_bytes);
  const ElementSplit act_split = ElementSplit::of(sh.act_numel, p.activations);
  const auto batches = static_cast<uint64_t>(total_batches);
  device += batches * pool_bytes(static_cast<uint64_t>(act_split.gpu) * 2);
  pinned += batches * pool_bytes(static_cast<uint64_t>(act_split.cpu) * 2);
  // Rings and working buffers on the device.
  if (p.activations.gpu_percent < 100) {
    device += kRing * pool_bytes(static_cast<uint64_t>(sh.act_numel) * 2);
  }
  if (p.compress_cache) {
    device += kRing * pool_bytes(static_cast<uint64_t>(l.kv_units) * l.kv_unit_bytes);
  }
  if (!weights_resident(p)) {
    device += 2 * pool_bytes(static_cast<uint64_t>(sh.max_stage_numel) * 2);
  }
  if (p.compress_weight && p.weights.gpu_percent < 100) device += pool_bytes(l.max_stage_units);
  if (!cache_resident(p)) device += kRing * pool_bytes(static_cast<uint64_t>(sh.kv_numel) * 2);
  l.limits = {sh.act_rows, p.gpu_batch_size, sh.capacity, p.num_gpu_batches};
  device += pool_bytes(cuda::StageRunner::workspace_bytes(c, l.limits));
  pinned += pool_bytes(cuda::StageRunner::host_meta_bytes(c, l.limits));
  l.blas_workspace_bytes = blas_workspace_bytes(c, l.limits);
  device += pool_bytes(l.blas_workspace_bytes);
  const auto widest = static_cast<int64_t>(
      std::max<size_t>(cuda::widest_linear(c), static_cast<size_t>(c.mlp_width())));
  l.linear_scratch_bytes = cuda::Blas::output_scratch_bytes(l.limits.max_rows, widest);
  device += pool_bytes(l.linear_scratch_bytes);
  l.reserve_bytes = kDeviceReserveBytes;
  l.logits_bytes = static_cast<uint64_t>(p.gpu_batch_size * c.vocab_size) * 4;
  device += pool_bytes(l.logits_bytes);
  pinned += pool_bytes(static_cast<uint64_t>(p.num_gpu_batches) * l.logits_bytes);
  l.hidden_f32_bytes = static_cast<uint64_t>(sh.act_numel) * 4;
  if (l.slice) {
    device += pool_bytes(l.hidden_f32_bytes);
    pinned += pool_bytes(l.hidden_f32_bytes);
  }
  // Pinned staging of disk reads and writes, one block of slack each for alignment.
  if (kv_split.disk > 0) {
    l.io_bytes = DeviceTieredArray::range_staging_bytes(l.kv_units, l.kv_unit_bytes);
  }
  if (act_split.disk > 0) {
    l.io_bytes = std::max(l.io_bytes, DeviceTieredArray::range_staging_bytes(sh.act_numel, 2));
  }
  if (l.io_bytes > 0) pinned += 2 * pool_bytes(l.io_bytes + kDiskAlign);
  if (l.weight_disk_bytes > 0) {
    pinned += kWeightSlots * pool_bytes(l.weight_disk_bytes + kDiskAlign);
  }
  // cpu_cache_compute's pinned rows: q, k, v, then the output (attention_on_host).
  l.attention_bytes =
      static_cast<uint64_t>(p.gpu_batch_size * (2 * c.q_dim() + 2 * c.kv_dim())) * 2;
  if (p.cpu_cache_compute) pinned += pool_bytes(l.attention_bytes);
  if (l.hetegen) {
    device += pool_bytes(cuda::StageRunner::host_linear_device_bytes(c, l.limits));
    pinned += pool_bytes(cuda::StageRunner::host_linear_pinned_bytes(c, l.limits));
  }
  return l;
}

MemoryPlan plan_cuda_memory(const ModelConfig& c, const EngineOptions& o) {
  const auto layouts = slice_layouts(c, o);
  const CudaLayout l = cuda_layout(c, o, layouts, shapes_of(c, o, layouts));
  MemoryPlan plan = plan_data(c, o, Device::kCuda);
  // Working sets: whatever of the pool, and of the arena, the data does not take.
  const auto over = [](uint64_t total, uint64_t data) { return total > data ? total - data : 0; };
  plan.working[0] =
      over(l.device_bytes, plan.weights[0] + plan.cache[0] + plan.activations[0]) + l.reserve_bytes;
  const uint64_t pinned_data =
      (o.policy.pin_weight ? plan.weights[1] : 0) + plan.cache[1] + plan.activations[1];
  plan.working[1] = over(l.pinned_bytes, pinned_data) + l.host_rows_bytes;
  plan.pinned_bytes = l.pinned_bytes;
  return plan;
}

}  // namespace strata
