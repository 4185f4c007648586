#include "runtime/memory_plan.h"

#include <algorithm>

#include "core/error.h"
#include "core/units.h"
#include "runtime/disk_store.h"
#include "runtime/engine_layout.h"

namespace strata {
namespace {

// Bytes of one array on each tier, as the tiered arrays allocate them.
void add_split(uint64_t (&out)[kNumTiers], int64_t numel, const StoredFormat& format,
               const TierSplit& split) {
  for (int t = 0; t < kNumTiers; ++t)
    out[t] += format.tier_bytes(numel, split, static_cast<Tier>(t));
}

// The largest sets, estimated in floating point before the element counts are formed in
// int64, so a batch no machine could hold is an input error rather than an overflow.
void check_plan_magnitude(const ModelConfig& c, const EngineOptions& o) {
  const Policy& p = o.policy;
  const double batch = static_cast<double>(p.gpu_batch_size);
  const double sequences = batch * static_cast<double>(p.num_gpu_batches * o.n_groups);
  const double tokens = static_cast<double>(o.max_prompt_len + o.gen_len);
  const double cache = sequences * tokens * 2.0 * static_cast<double>(c.kv_dim() * c.n_layers);
  const double rows = batch * static_cast<double>(o.max_prompt_len);
  const double workspace =
      rows * static_cast<double>(c.hidden_size + 2 * c.q_dim() + 2 * c.kv_dim() + c.mlp_width() +
                                 c.word_embed_proj_dim);
  const double logits = sequences * static_cast<double>(c.vocab_size);
  const double bytes = 4.0 * (cache + workspace + logits +
                              sequences * static_cast<double>(o.max_prompt_len * c.hidden_size));
  STRATA_INPUT_CHECK(bytes < 1e18, "the policy (gpu batch ", p.gpu_batch_size, " x ",
                     p.num_gpu_batches, " batches, ", o.max_prompt_len + o.gen_len,
                     " tokens) needs about ", format_bytes(bytes),
                     ", past any machine: give a smaller --gpu-batch-size or --num-gpu-batches");
}

}  // namespace

uint64_t MemoryPlan::total(Tier tier) const {
  const auto t = static_cast<size_t>(tier);
  return weights[t] + cache[t] + activations[t] + working[t];
}

MemoryPlan plan_data(const ModelConfig& c, const EngineOptions& o, Device device) {
  check_plan_magnitude(c, o);
  const auto layouts = slice_layouts(c, o);
  const Shapes s = shapes_of(c, o, layouts);
  const Policy& p = o.policy;
  MemoryPlan plan;
  for (const auto& l : layouts) {
    add_split(plan.weights, stage_numel(l, p), weight_format(c, p, device), p.weights);
  }
  const int64_t batches = p.num_gpu_batches * o.n_groups;
  for (int64_t i = 0; i < slice_layer_count(c, o) * batches; ++i) {
    add_split(plan.cache, s.kv_numel, cache_format(c, p, device), p.cache);
  }
  for (int64_t k = 0; k < batches; ++k) {
    add_split(plan.activations, s.act_numel, activation_format(device), p.activations);
  }
  return plan;
}

// What CpuEngine allocates besides the data: fp32 rings and workspaces on the GPU tier (host
// memory here), host staging for disk reads and writes.
MemoryPlan plan_cpu_memory(const ModelConfig& c, const EngineOptions& o) {
  const auto layouts = slice_layouts(c, o);
  const Shapes s = shapes_of(c, o, layouts);
  const Policy& p = o.policy;
  MemoryPlan plan = plan_data(c, o, Device::kCpu);
  uint64_t max_disk = 0, max_packed = 0;
  for (const auto& l : layouts) {
    const int64_t n = stage_numel(l, p);
    max_packed = std::max(max_packed, static_cast<uint64_t>(n));
    max_disk = std::max(max_disk, weight_format(c, p).tier_bytes(n, p.weights, Tier::kDisk));
  }
  max_disk = std::max(max_disk, cache_format(c, p).tier_bytes(s.kv_numel, p.cache, Tier::kDisk));
  max_disk =
      std::max(max_disk,
               activation_format(Device::kCpu).tier_bytes(s.act_numel, p.activations, Tier::kDisk));
  uint64_t& gpu_work = plan.working[0];
  if (!weights_resident(p)) gpu_work += 2 * static_cast<uint64_t>(s.max_stage_numel) * 4;
  if (p.compress_weight) gpu_work += max_packed;  // a split stage gathered before expanding
  if (!cache_resident(p)) gpu_work += kRing * static_cast<uint64_t>(s.kv_numel) * 4;
  if (p.activations.gpu_percent < 100) gpu_work += kRing * static_cast<uint64_t>(s.act_numel) * 4;
  gpu_work += static_cast<uint64_t>(s.workspace_numel) * 4;
  gpu_work += static_cast<uint64_t>(p.num_gpu_batches * p.gpu_batch_size * c.vocab_size) * 4;
  plan.working[1] += (kWeightSlots + 2) * max_disk;  // staging: weights, load and store streams
  return plan;
}

std::unique_ptr<DiskStore> make_disk_tier(const MemoryPlan& plan, const std::string& offload_dir) {
  const uint64_t need = plan.total(Tier::kDisk);
  if (need == 0) return nullptr;
  STRATA_INPUT_CHECK(!offload_dir.empty(), "the policy puts ",
                     format_bytes(static_cast<double>(need)), " on disk: give --offload-dir");
  // STRATA_DISK_FAULT reaches the engine's store only: the probes measure a healthy disk.
  return std::make_unique<DiskStore>(offload_dir, need, DiskFault::from_env());
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
