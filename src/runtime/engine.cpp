#include "runtime/engine.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "runtime/disk_store.h"
#include "runtime/memory_plan.h"
#include "runtime/step_builder.h"
#include "runtime/tiered_array.h"

namespace strata {

double EngineStats::overlap_efficiency() const {
  if (wall_s <= 0) return 0;
  return std::max({compute_busy_s, load_busy_s, store_busy_s}) / wall_s;
}

const char* device_name(Device device) {
  switch (device) {
    case Device::kAuto:
      return "auto";
    case Device::kCpu:
      return "cpu";
    case Device::kCuda:
      return "cuda";
  }
  return "?";
}

Device parse_device(const std::string& text, const std::string& flag) {
  if (text == "cpu") return Device::kCpu;
  if (text == "auto") return Device::kAuto;
  STRATA_INPUT_CHECK(text == "cuda", flag, " ", text, ": expected cpu, cuda or auto");
  STRATA_INPUT_CHECK(STRATA_HAVE_CUDA, flag,
                     " cuda: this build has no CUDA backend (build where the CUDA toolkit is "
                     "installed, or use --device cpu)");
  STRATA_INPUT_CHECK(cuda_device_count() > 0, flag,
                     " cuda: no CUDA device found (use --device cpu or auto)");
  return Device::kCuda;
}

Device resolved_device(const EngineOptions& options) {
  if (options.device != Device::kAuto) return options.device;
  return cuda_device_count() > 0 && cuda_unsupported(options.policy).empty() ? Device::kCuda
                                                                             : Device::kCpu;
}

std::string cuda_unsupported(const Policy& p) {
  if (p.compress_cache && p.cpu_cache_compute) {
    return "policy: compress_cache with cpu_cache_compute is not supported on --device cuda "
           "(the CPU attends over an fp16 cache)";
  }
  if (p.hetegen_alpha.any() && p.weights.cpu_percent < 100) {
    return "policy: HeteGen's alpha on --device cuda splits weights on the CPU tier (weight "
           "percent 0 100)";
  }
  if (p.cpu_cache_compute && p.cache.cpu_percent < 100) {
    return "policy: cpu_cache_compute (--cpu-cache-compute) on --device cuda needs the whole "
           "cache on the CPU tier (cache percent 0 100)";
  }
  return "";
}

void Engine::bind(const EngineParts& parts) {
  parts_ = parts;
  disk_busy_base_ = parts_.disk ? parts_.disk->busy_seconds() : 0;
}

bool Engine::has_embed() const {
  return parts_.layouts->front().kind == StageKind::kEmbed;
}

bool Engine::has_head() const {
  return parts_.layouts->back().kind == StageKind::kHead;
}

EngineStats Engine::stats() const {
  EngineStats s;
  for (int t = 0; t < kNumTiers; ++t) {
    TierStats& ts = s.tiers[t];
    ts.peak_bytes = parts_.counters->peak[t].load();
    ts.weight_bytes = parts_.plan->weights[t];
    ts.cache_bytes = parts_.plan->cache[t];
    ts.activation_bytes = parts_.plan->activations[t];
    ts.bytes_read = parts_.counters->bytes_read[t].load();
    ts.bytes_written = parts_.counters->bytes_written[t].load();
  }
  lane_busy(s);
  s.wall_s = wall_s_;
  s.disk_busy_s = parts_.disk ? parts_.disk->busy_seconds() - disk_busy_base_ : 0;
  return s;
}

void Engine::clear_stats() {
  parts_.counters->clear_traffic();
  clear_lanes();
  wall_s_ = 0;
  disk_busy_base_ = parts_.disk ? parts_.disk->busy_seconds() : 0;
}

void Engine::forward(int64_t group, const std::vector<std::vector<SequenceStep>>& steps,
                     const std::vector<std::vector<int64_t>>& lengths) {
  const int64_t ngb = policy().num_gpu_batches;
  STRATA_CHECK(group >= 0 && group < options().n_groups, "group ", group, " outside the engine's");
  STRATA_CHECK(static_cast<int64_t>(steps.size()) <= ngb && steps.size() == lengths.size(),
               "a forward takes one step list per GPU batch");
  const auto begin = std::chrono::steady_clock::now();
  run_step(steps, lengths, group * ngb);
  wall_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
}

std::vector<Generation> Engine::generate(std::span<const Prompt> prompts,
                                         const GenerateOptions& options, GenerationStats* stats,
                                         std::vector<std::vector<float>>* prefill_logits) {
  STRATA_CHECK(has_embed() && has_head(),
               "generate needs the whole model (a pipeline slice is "
               "driven by forward)");
  const Policy& p = policy();
  const EngineOptions& sized = this->options();
  const size_t gbs = static_cast<size_t>(p.gpu_batch_size);
  const size_t n = prompts.size();
  STRATA_CHECK(n <= gbs * static_cast<size_t>(p.num_gpu_batches), "block larger than the policy's");
  for (const auto& pr : prompts) {
    const auto prefill = static_cast<int64_t>(pr.prefill_ids().size());
    STRATA_CHECK(prefill >= 1 && prefill <= sized.max_prompt_len,
                 "prompt length outside what the engine was sized for");
    STRATA_CHECK(pr.steps(options) >= 1 && pr.steps(options) <= options.gen_len,
                 "a prompt needs from 1 to gen_len steps");
    // The cache holds the prefill and each step's token but the last.
    STRATA_CHECK(prefill + pr.steps(options) - 1 <= sized.max_prompt_len + sized.gen_len,
                 "a sequence longer than the engine's KV cache");
  }
  std::vector<Generation> results(n);
  StepBuilder builder(prompts, static_cast<int64_t>(n), static_cast<int64_t>(gbs));
  std::vector<RandomStream> streams;
  for (const auto& pr : prompts) streams.emplace_back(pr.sampling_of(options).seed, pr.index);
  const size_t vocab = static_cast<size_t>(config().vocab_size);
  std::vector<float> scratch(vocab);
  if (prefill_logits) prefill_logits->assign(n, {});
  GenerationStats local;

  for (int64_t t = 0; t < options.gen_len && builder.next_step(); ++t) {
    const auto begin = std::chrono::steady_clock::now();
    forward(0, builder.steps(), builder.lengths());
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
    local.add_step(config(), builder, seconds);
    if (options.on_step) options.on_step(static_cast<int64_t>(builder.n_new().size()));
    const auto& steps = builder.steps();
    for (size_t k = 0; k < steps.size(); ++k) {
      const std::span<const float> batch_logits = logits(static_cast<int64_t>(k));
      for (size_t j = 0; j < steps[k].size(); ++j) {
        const auto i = static_cast<size_t>(builder.position(k, j));
        std::span<const float> row = batch_logits.subspan(j * vocab, vocab);
        if (t == 0 && prefill_logits) (*prefill_logits)[i].assign(row.begin(), row.end());
        Generation& g = results[i];
        const bool goes_on = accept_next_token(row, prompts[i], options, config().eos_token_ids, i,
                                               streams[i], scratch, g);
        builder.accept(static_cast<int64_t>(i), g.output_ids.back(), goes_on);
      }
    }
    builder.advance();
  }
  if (stats) stats->add(local);
  return results;
}

}  // namespace strata
