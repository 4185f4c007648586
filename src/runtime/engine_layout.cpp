#include "runtime/engine_layout.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"
#include "core/units.h"
#include "kernels/quant_format.h"
#include "runtime/packed_stage.h"

namespace strata {
namespace {

// Bytes of one array on each tier, as TieredArray will allocate them.
void add_split(uint64_t (&out)[kNumTiers], int64_t numel, const StoredFormat& format,
               const TierSplit& split, uint64_t* max_disk = nullptr) {
  for (int t = 0; t < kNumTiers; ++t)
    out[t] += format.tier_bytes(numel, split, static_cast<Tier>(t));
  if (max_disk) *max_disk = std::max(*max_disk, format.tier_bytes(numel, split, Tier::kDisk));
}

}  // namespace

StoredFormat weight_format(const OptConfig& c, const Policy& p, Device device) {
  if (p.compress_weight) return StoredFormat::bytes();
  return device == Device::kCuda ? StoredFormat::plain(DType::kF16, DType::kF16)
                                 : StoredFormat::plain(c.dtype);
}
StoredFormat cache_format(const OptConfig& c, const Policy& p, Device device) {
  if (p.compress_cache) {
    return StoredFormat::quantized(p.compress_bits, std::gcd<int64_t>(c.hidden_size, kQuantGroup));
  }
  return device == Device::kCuda ? StoredFormat::plain(DType::kF16, DType::kF16)
                                 : StoredFormat::plain(DType::kF32);
}
StoredFormat activation_format(Device device) {
  return device == Device::kCuda ? StoredFormat::plain(DType::kF16, DType::kF16)
                                 : StoredFormat::plain(DType::kF32);
}
int64_t stage_numel(const StageLayout& l, const Policy& p) {
  return p.compress_weight ? static_cast<int64_t>(PackedStage::of(l, p.compress_bits).bytes)
                           : l.numel;
}
bool weights_resident(const Policy& p) {
  return p.weights.gpu_percent >= 100 && !p.compress_weight;
}
bool cache_resident(const Policy& p) {
  return p.cache.gpu_percent >= 100 && !p.compress_cache;
}

Shapes shapes_of(const OptConfig& c, const EngineOptions& o,
                 const std::vector<StageLayout>& layouts) {
  Shapes s;
  const int64_t gbs = o.policy.gpu_batch_size;
  s.capacity = o.max_prompt_len + o.gen_len;
  s.act_rows = gbs * o.max_prompt_len;
  s.kv_numel = KvBlock::numel(gbs, s.capacity, c.hidden_size);
  s.act_numel = s.act_rows * c.hidden_size;
  s.max_stage_numel = 0;
  for (const auto& l : layouts) s.max_stage_numel = std::max(s.max_stage_numel, l.numel);
  s.workspace_numel = s.act_rows * (5 * c.hidden_size + c.ffn_dim + c.word_embed_proj_dim) +
                      gbs * (c.hidden_size + c.word_embed_proj_dim);
  return s;
}

void fill_tier_stats(const TierCounters& counters, const MemoryPlan& plan, EngineStats& stats) {
  for (int t = 0; t < kNumTiers; ++t) {
    TierStats& ts = stats.tiers[t];
    ts.peak_bytes = counters.peak[t].load();
    ts.weight_bytes = plan.weights[t];
    ts.cache_bytes = plan.cache[t];
    ts.activation_bytes = plan.activations[t];
    ts.bytes_read = counters.bytes_read[t].load();
    ts.bytes_written = counters.bytes_written[t].load();
  }
}

uint64_t MemoryPlan::total(Tier tier) const {
  const auto t = static_cast<size_t>(tier);
  return weights[t] + cache[t] + activations[t] + working[t];
}

std::vector<StageLayout> slice_layouts(const OptConfig& c, const EngineOptions& o) {
  const int64_t first = o.first_layer;
  const int64_t n = o.n_layers < 0 ? c.n_layers - first : o.n_layers;
  STRATA_CHECK(first >= 0 && n >= 1 && first + n <= c.n_layers, "layer slice [", first, ", ",
               first + n, ") outside the model's ", c.n_layers, " layers");
  std::vector<StageLayout> out;
  for (auto& l : opt_stage_layouts(c, o.policy.sep_layer)) {
    const bool keep = l.kind == StageKind::kEmbed  ? first == 0
                      : l.kind == StageKind::kHead ? first + n == c.n_layers
                                                   : l.layer >= first && l.layer < first + n;
    if (keep) out.push_back(std::move(l));
  }
  return out;
}

int64_t slice_layer_count(const OptConfig& c, const EngineOptions& o) {
  return o.n_layers < 0 ? c.n_layers - o.first_layer : o.n_layers;
}

MemoryPlan plan_memory(const OptConfig& c, const EngineOptions& o) {
  const auto layouts = slice_layouts(c, o);
  const Shapes s = shapes_of(c, o, layouts);
  const Policy& p = o.policy;
  const Device device = resolved_device(o);
  const bool cuda = device == Device::kCuda;
  const uint64_t compute_bytes = cuda ? 2 : 4;  // fp16 on the device, fp32 on the CPU backend
  MemoryPlan plan;
  uint64_t max_disk = 0;
  uint64_t max_packed = 0;
  for (const auto& l : layouts) {
    const int64_t n = stage_numel(l, p);
    max_packed = std::max(max_packed, static_cast<uint64_t>(n));
    add_split(plan.weights, n, weight_format(c, p, device), p.weights, &max_disk);
  }
  const int64_t batches = p.num_gpu_batches * o.n_groups;
  for (int64_t i = 0; i < slice_layer_count(c, o) * batches; ++i) {
    add_split(plan.cache, s.kv_numel, cache_format(c, p, device), p.cache, &max_disk);
  }
  for (int64_t k = 0; k < batches; ++k) {
    add_split(plan.activations, s.act_numel, activation_format(device), p.activations, &max_disk);
  }
  uint64_t& gpu_work = plan.working[0];
  const uint64_t stage_bytes = static_cast<uint64_t>(s.max_stage_numel) * compute_bytes;
  if (!weights_resident(p)) gpu_work += 2 * stage_bytes;
  // A split stage gathered before expanding (the device expands a resident one in place).
  if (p.compress_weight && (!cuda || p.weights.gpu_percent < 100)) gpu_work += max_packed;
  const uint64_t kv_bytes = static_cast<uint64_t>(s.kv_numel) * compute_bytes;
  if (!cache_resident(p)) gpu_work += kRing * kv_bytes;
  const uint64_t act_bytes = static_cast<uint64_t>(s.act_numel) * compute_bytes;
  if (p.activations.gpu_percent < 100) gpu_work += kRing * act_bytes;
  gpu_work += static_cast<uint64_t>(s.workspace_numel) * compute_bytes;
  const uint64_t logits_bytes = static_cast<uint64_t>(p.gpu_batch_size * c.vocab_size) * 4;
  if (cuda) {
    // One batch's logits on the device, every batch's in pinned host memory.
    gpu_work += logits_bytes;
    plan.working[1] += static_cast<uint64_t>(p.num_gpu_batches) * logits_bytes;
    plan.working[1] += (kWeightSlots + 2) * max_disk;  // staging: weights, load and store streams
    if (p.cpu_cache_compute) {  // q, k, v and the attention output of one batch
      plan.working[1] += 4 * static_cast<uint64_t>(p.gpu_batch_size * c.hidden_size) * 2;
    }
  } else {
    gpu_work += static_cast<uint64_t>(p.num_gpu_batches) * logits_bytes;
    plan.working[1] += (kWeightSlots + 2) * max_disk;  // staging: weights, load and store streams
  }
  return plan;
}

void check_caps(const MemoryPlan& plan, const TierCaps& caps) {
  const uint64_t cap[kNumTiers] = {caps.gpu_bytes, caps.cpu_bytes, caps.disk_bytes};
  const char* flag[kNumTiers] = {"--gpu-mem", "--cpu-mem", "--disk-mem"};
  for (int t = 0; t < kNumTiers; ++t) {
    const uint64_t need = plan.total(static_cast<Tier>(t));
    STRATA_INPUT_CHECK(cap[t] == 0 || need <= cap[t], "the policy needs ", need, " bytes (",
                       format_bytes(static_cast<double>(need)), ") on the ",
                       tier_name(static_cast<Tier>(t)), " tier but ", flag[t], " allows ", cap[t],
                       " (", format_bytes(static_cast<double>(cap[t])), ")");
  }
}

}  // namespace strata
