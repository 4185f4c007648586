#include "runtime/offload_engine.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/units.h"
#include "runtime/engine_layout.h"
#include "runtime/packed_stage.h"
#include "runtime/stream.h"
#include "runtime/tiered_array.h"

namespace strata {

struct OffloadEngine::Impl {
  OptConfig config;
  EngineOptions options;
  std::vector<StageLayout> layouts;
  Shapes shapes;
  MemoryPlan plan;
  TierCounters counters;
  std::unique_ptr<DiskStore> disk;
  std::vector<std::unique_ptr<TieredArray>> weights;  // per stage
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
  Stream compute{"compute"};
  Stream loader{"load"};
  Stream storer{"store"};
  double disk_busy_base = 0;  // disk busy seconds before the stats were cleared
  // Reads of the first stages of the next step, submitted at the end of a step so no step
  // starts with an idle disk.
  bool carried = false;
  uint64_t carried_tickets[kWeightSlots - 1] = {};

  ~Impl() {
    // Reads still in flight write into the staging buffers: finish them first.
    try {
      compute.synchronize();
      loader.synchronize();
      storer.synchronize();
      if (carried) {
        for (int i = 0; i < kWeightSlots - 1; ++i) {
          weights[static_cast<size_t>(i)]->finish_fetch(carried_tickets[i]);
        }
      }
    } catch (...) {  // the error was reported where it happened
    }
  }

  Stream& load_stream() { return options.policy.overlap ? loader : compute; }
  Stream& store_stream() { return options.policy.overlap ? storer : compute; }
  const Policy& policy() const { return options.policy; }

  HostBuffer working_buffer(uint64_t bytes) {
    counters.add_allocation(Tier::kGpu, bytes);
    return HostBuffer(bytes);
  }

  // A stage's fp32 form from its tiers, once per step (compute stream).
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

  void run_step(const std::vector<std::vector<SequenceStep>>& steps,
                const std::vector<std::vector<int64_t>>& lengths, int64_t base);
};

OffloadEngine::OffloadEngine(const WeightSource& source, const EngineOptions& options)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.config = source.config();
  m.options = options;
  const Policy& p = options.policy;
  p.validate();
  STRATA_INPUT_CHECK(p.attn_sparsity == 1.0, "policy: attn_sparsity < 1 is not supported yet");
  STRATA_CHECK(options.max_prompt_len >= 1 && options.gen_len >= 1,
               "engine needs prompt and gen lengths");
  STRATA_CHECK(options.n_groups >= 1, "engine needs at least one group");
  m.layouts = slice_layouts(m.config, options);
  m.total_batches = p.num_gpu_batches * options.n_groups;
  m.shapes = shapes_of(m.config, options, m.layouts);
  m.plan = plan_memory(m.config, options);
  check_caps(m.plan, options.caps);  // before anything is allocated

  const uint64_t disk_need = m.plan.total(Tier::kDisk);
  if (disk_need > 0) {
    STRATA_INPUT_CHECK(!options.offload_dir.empty(), "the policy puts ",
                       format_bytes(static_cast<double>(disk_need)),
                       " on disk: give --offload-dir");
    m.disk = std::make_unique<DiskStore>(options.offload_dir, disk_need);
  }
  // Weights are packed once, stage by stage, in their stored form; compressed ones stay
  // compressed on every tier.
  std::vector<uint8_t> stored;
  std::vector<float> stage_f32;
  uint64_t max_packed = 0;
  for (const auto& layout : m.layouts) {
    const int64_t n = stage_numel(layout, p);
    if (p.compress_weight) {
      m.packed.push_back(PackedStage::of(layout, p.compress_bits));
      stage_f32.resize(static_cast<size_t>(layout.numel));
      read_stage(source, layout, DType::kF32, stage_f32.data());
      stored.resize(static_cast<size_t>(n));
      m.packed.back().pack(stage_f32.data(), stored.data());
      max_packed = std::max(max_packed, static_cast<uint64_t>(n));
    } else {
      stored.resize(static_cast<size_t>(layout.numel) * dtype_size(m.config.dtype));
      read_stage(source, layout, m.config.dtype, stored.data());
    }
    m.weights.push_back(std::make_unique<TieredArray>(n, weight_format(m.config, p), p.weights,
                                                      m.disk.get(), m.counters));
    m.weights.back()->fill_stored(stored.data());
  }
  stored = {};
  stage_f32 = {};
  if (max_packed > 0) m.packed_scratch = m.working_buffer(max_packed);
  for (int64_t i = 0; i < slice_layer_count(m.config, options) * m.total_batches; ++i) {
    m.cache.push_back(std::make_unique<TieredArray>(m.shapes.kv_numel, cache_format(m.config, p),
                                                    p.cache, m.disk.get(), m.counters));
  }
  for (int64_t k = 0; k < m.total_batches; ++k) {
    m.acts.push_back(std::make_unique<TieredArray>(m.shapes.act_numel,
                                                   StoredFormat::plain(DType::kF32), p.activations,
                                                   m.disk.get(), m.counters));
  }
  if (!weights_resident(p)) {
    for (auto& b : m.weight_buffers)
      b = m.working_buffer(static_cast<uint64_t>(m.shapes.max_stage_numel) * 4);
  }
  if (!cache_resident(p)) {
    for (auto& b : m.cache_buffers)
      b = m.working_buffer(static_cast<uint64_t>(m.shapes.kv_numel) * 4);
  }
  if (p.activations.gpu_percent < 100) {
    for (auto& b : m.act_buffers)
      b = m.working_buffer(static_cast<uint64_t>(m.shapes.act_numel) * 4);
  }
  uint64_t staging = 0, weight_staging = 0;
  for (const auto& a : m.weights) weight_staging = std::max(weight_staging, a->staging_bytes());
  if (weight_staging > 0) {
    for (auto& b : m.weight_staging) b = HostBuffer(weight_staging);
    m.counters.add_allocation(Tier::kCpu, kWeightSlots * weight_staging);
  }
  for (const auto* group : {&m.cache, &m.acts}) {
    for (const auto& a : *group) staging = std::max(staging, a->staging_bytes());
  }
  if (staging > 0) {
    m.load_staging = HostBuffer(staging);
    m.store_staging = HostBuffer(staging);
    m.counters.add_allocation(Tier::kCpu, 2 * staging);
  }
  m.logits.assign(static_cast<size_t>(p.num_gpu_batches),
                  std::vector<float>(static_cast<size_t>(p.gpu_batch_size * m.config.vocab_size)));
  // Workspace and logits grow on first use; count them now so peaks include them.
  m.counters.add_allocation(
      Tier::kGpu,
      static_cast<uint64_t>(m.shapes.workspace_numel + p.effective_batch() * m.config.vocab_size) *
          4);
  m.counters.clear_traffic();
  m.compute.clear_stats();
  m.loader.clear_stats();
  m.storer.clear_stats();
  m.disk_busy_base = m.disk ? m.disk->busy_seconds() : 0;
}

OffloadEngine::~OffloadEngine() = default;

const OptConfig& OffloadEngine::config() const {
  return impl_->config;
}
const EngineOptions& OffloadEngine::options() const {
  return impl_->options;
}

void OffloadEngine::Impl::run_step(const std::vector<std::vector<SequenceStep>>& steps,
                                   const std::vector<std::vector<int64_t>>& lengths, int64_t base) {
  const int64_t n_batches = static_cast<int64_t>(steps.size());
  const int64_t hidden = config.hidden_size;
  const int64_t n_stages = static_cast<int64_t>(layouts.size());
  std::vector<std::vector<int64_t>> offsets(steps.size());
  std::vector<int64_t> rows(steps.size(), 0);
  for (int64_t k = 0; k < n_batches; ++k) {
    if (!steps[k].empty()) {
      rows[k] = pack_rows(config, steps[k], lengths[k], shapes.capacity, offsets[k]);
    }
  }
  std::vector<EventPtr> first_compute(static_cast<size_t>(n_stages));
  EventPtr cache_free[kRing], act_free[kRing];
  int64_t cache_item = 0, act_item = 0;
  std::vector<EventPtr> act_stored(steps.size());  // batch k's hidden is back on its tiers
  std::vector<uint64_t> tickets(static_cast<size_t>(n_stages), 0);
  // Submits the disk read of stage s into its staging slot once the stage that used the slot
  // before has been expanded.
  auto submit = [&](int64_t s, uint64_t* ticket, EventPtr after) {
    if (s >= n_stages || weights[static_cast<size_t>(s)]->resident()) return;
    TieredArray* array = weights[static_cast<size_t>(s)].get();
    HostBuffer* staging = &weight_staging[s % kWeightSlots];
    load_stream().enqueue(
        "read weights stage " + std::to_string(s),
        [array, staging, ticket] { *ticket = array->submit_fetch(0, array->numel(), *staging); },
        {after});
  };
  for (int64_t s = 0; s < kWeightSlots - 1 && s < n_stages; ++s) {
    if (carried) {
      tickets[static_cast<size_t>(s)] = carried_tickets[s];
    } else {
      submit(s, &tickets[static_cast<size_t>(s)], nullptr);
    }
  }
  carried = false;

  for (int64_t s = 0; s < n_stages; ++s) {
    const StageLayout& layout = layouts[static_cast<size_t>(s)];
    TieredArray& w_array = *weights[static_cast<size_t>(s)];
    float* w = w_array.resident();
    EventPtr w_ready;
    HostBuffer* w_staging = nullptr;
    if (!w) {
      // The load stream only reads the disk part; the compute stream expands the stage to fp32
      // once, before its first batch, so conversion never competes with compute for cores.
      w = weight_buffers[s % 2].as<float>();
      w_staging = &weight_staging[s % kWeightSlots];
      const int64_t ahead = s + kWeightSlots - 1;
      if (ahead < n_stages) {
        submit(ahead, &tickets[static_cast<size_t>(ahead)],
               ahead >= kWeightSlots ? first_compute[static_cast<size_t>(ahead - kWeightSlots)]
                                     : nullptr);
      }
      const uint64_t* ticket = &tickets[static_cast<size_t>(s)];
      w_ready = load_stream().enqueue("load weights stage " + std::to_string(s),
                                      [&w_array, ticket] { w_array.finish_fetch(*ticket); });
    }
    bool first_batch = true;
    for (int64_t k = 0; k < n_batches; ++k) {
      if (steps[k].empty()) continue;
      const std::string tag = " stage " + std::to_string(s) + " batch " + std::to_string(k);
      std::vector<EventPtr> deps = {w_ready};
      // The batch's hidden state: resident, or loaded into a ring buffer.
      TieredArray& act = *acts[static_cast<size_t>(base + k)];
      float* h = act.resident();
      const int act_slot = static_cast<int>(act_item % kRing);
      if (!h) {
        h = act_buffers[act_slot].as<float>();
        ++act_item;
        if (layout.kind == StageKind::kEmbed) {
          deps.push_back(act_free[act_slot]);
        } else {
          const int64_t n = rows[k] * hidden;
          deps.push_back(load_stream().enqueue(
              "load activations" + tag, [&act, h, n, this] { act.load(h, 0, n, load_staging); },
              {act_free[act_slot], act_stored[k]}));
        }
      }
      // The layer's KV cache for the batch: resident, or its valid rows loaded.
      KvBlock kv;
      TieredArray* kv_array = nullptr;
      int cache_slot = 0;
      if (stage_has_cache(layout.kind)) {
        kv_array = cache[static_cast<size_t>((layout.layer - options.first_layer) * total_batches +
                                             base + k)]
                       .get();
        float* base = kv_array->resident();
        if (!base) {
          cache_slot = static_cast<int>(cache_item++ % kRing);
          base = cache_buffers[cache_slot].as<float>();
          const bool any_cached = std::any_of(
              steps[k].begin(), steps[k].end(),
              [&](const auto& st) { return lengths[k][static_cast<size_t>(st.slot)] > 0; });
          if (any_cached) {
            KvBlock target{base, shapes.capacity, hidden, lengths[k]};
            const auto& batch_steps = steps[k];
            deps.push_back(load_stream().enqueue(
                "load cache" + tag,
                [kv_array, target, &batch_steps, this] {
                  for (const auto& st : batch_steps) {
                    const int64_t len = target.lengths[static_cast<size_t>(st.slot)];
                    const int64_t kb = target.keys(st.slot) - target.base;
                    const int64_t vb = target.values(st.slot) - target.base;
                    kv_array->load(target.base, kb, kb + len * target.hidden, load_staging);
                    kv_array->load(target.base, vb, vb + len * target.hidden, load_staging);
                  }
                },
                {cache_free[cache_slot]}));
          } else {
            deps.push_back(cache_free[cache_slot]);
          }
        }
        kv = {base, shapes.capacity, hidden, lengths[k]};
      }

      const auto& batch_steps = steps[k];
      const auto& batch_offsets = offsets[k];
      const auto& batch_lengths = lengths[k];
      float* logits_k = logits[static_cast<size_t>(k)].data();
      const bool expand = w_staging && first_batch;
      EventPtr done = compute.enqueue(
          "compute" + tag,
          [this, s, &layout, &w_array, w_staging, expand, w, h, kv, &batch_steps, &batch_offsets,
           &batch_lengths, logits_k] {
            if (expand) expand_stage(s, w_array, w, *w_staging);
            switch (layout.kind) {
              case StageKind::kEmbed:
                embed_forward(config, w, batch_steps, batch_lengths, batch_offsets, h, ws);
                break;
              case StageKind::kDecoder:
              case StageKind::kAttention:
              case StageKind::kMlp:
                decoder_forward(config, layout, w, batch_steps, batch_offsets, kv, h, ws,
                                policy().hetegen_alpha);
                break;
              case StageKind::kHead:
                head_forward(config, layout, w, batch_offsets, h, logits_k, ws);
                break;
            }
          },
          deps);
      if (first_batch) first_compute[static_cast<size_t>(s)] = done;
      first_batch = false;

      if (kv_array && !kv_array->resident()) {
        const KvBlock source = kv;
        cache_free[cache_slot] = store_stream().enqueue(
            "store cache" + tag,
            [kv_array, source, &batch_steps, &batch_offsets, this] {
              for (size_t i = 0; i < batch_steps.size(); ++i) {
                const auto& st = batch_steps[i];
                const int64_t len = source.lengths[static_cast<size_t>(st.slot)];
                const int64_t n = batch_offsets[i + 1] - batch_offsets[i];
                for (float* part : {source.keys(st.slot), source.values(st.slot)}) {
                  const int64_t b = (part - source.base) + len * source.hidden;
                  kv_array->store(source.base, b, b + n * source.hidden, store_staging);
                }
              }
            },
            {done});
      }
      if (!act.resident()) {
        if (layout.kind == StageKind::kHead) {
          act_free[act_slot] = done;
        } else {
          const int64_t n = rows[k] * hidden;
          act_free[act_slot] = store_stream().enqueue(
              "store activations" + tag, [&act, h, n, this] { act.store(h, 0, n, store_staging); },
              {done});
          act_stored[k] = act_free[act_slot];
        }
      }
    }
  }
  // The next step's first stages are read while this one finishes; the slot each needs was
  // last used by the highest stage of this step with the same slot.
  if (weight_buffers[0].size_bytes() > 0 && n_stages >= kWeightSlots) {
    for (int64_t s = 0; s < kWeightSlots - 1; ++s) {
      carried_tickets[s] = 0;
      int64_t last_user = n_stages - 1;
      while (last_user % kWeightSlots != s) --last_user;
      submit(s, &carried_tickets[s], first_compute[static_cast<size_t>(last_user)]);
    }
    carried = true;
  }
  // Every stream drains before the tokens are sampled; errors surface here.
  loader.synchronize();
  compute.synchronize();
  storer.synchronize();
}

void OffloadEngine::run_step(const std::vector<std::vector<SequenceStep>>& steps,
                             const std::vector<std::vector<int64_t>>& lengths,
                             int64_t first_batch) {
  impl_->run_step(steps, lengths, first_batch);
}

void OffloadEngine::write_hidden(int64_t group, int64_t k, const float* rows, int64_t n_rows) {
  Impl& m = *impl_;
  TieredArray& act = *m.acts[static_cast<size_t>(group * m.policy().num_gpu_batches + k)];
  const int64_t n = n_rows * m.config.hidden_size;
  STRATA_CHECK(n <= act.numel(), "hidden rows past the engine's activation buffer");
  if (float* h = act.resident()) {
    std::memcpy(h, rows, static_cast<size_t>(n) * 4);
  } else {
    act.store(rows, 0, n, m.store_staging);
  }
}

void OffloadEngine::read_hidden(int64_t group, int64_t k, float* rows, int64_t n_rows) {
  Impl& m = *impl_;
  TieredArray& act = *m.acts[static_cast<size_t>(group * m.policy().num_gpu_batches + k)];
  const int64_t n = n_rows * m.config.hidden_size;
  STRATA_CHECK(n <= act.numel(), "hidden rows past the engine's activation buffer");
  if (const float* h = act.resident()) {
    std::memcpy(rows, h, static_cast<size_t>(n) * 4);
  } else {
    act.load(rows, 0, n, m.load_staging);
  }
}

std::span<const float> OffloadEngine::logits(int64_t k) const {
  return impl_->logits[static_cast<size_t>(k)];
}

bool OffloadEngine::has_embed() const {
  return impl_->layouts.front().kind == StageKind::kEmbed;
}

bool OffloadEngine::has_head() const {
  return impl_->layouts.back().kind == StageKind::kHead;
}

EngineStats OffloadEngine::stats() const {
  const Impl& m = *impl_;
  EngineStats s;
  fill_tier_stats(m.counters, m.plan, s);
  // With --no-overlap every span is on the compute stream: split them by kind.
  auto busy = [](const Stream& stream, const std::string& prefix) {
    double total = 0;
    for (const auto& span : stream.spans()) {
      if (span.name.rfind(prefix, 0) == 0) total += span.end_s - span.begin_s;
    }
    return total;
  };
  for (const Stream* stream : {&m.compute, &m.loader, &m.storer}) {
    s.compute_busy_s += busy(*stream, "compute");
    s.load_busy_s += busy(*stream, "load");
    s.store_busy_s += busy(*stream, "store");
  }
  s.wall_s = wall_s_;
  s.disk_busy_s = m.disk ? m.disk->busy_seconds() - m.disk_busy_base : 0;
  return s;
}

void OffloadEngine::clear_stats() {
  Impl& m = *impl_;
  m.counters.clear_traffic();
  m.compute.clear_stats();
  m.loader.clear_stats();
  m.storer.clear_stats();
  wall_s_ = 0;
  m.disk_busy_base = m.disk ? m.disk->busy_seconds() : 0;
}

nlohmann::json OffloadEngine::trace() const {
  const Impl& m = *impl_;
  return chrome_trace({{m.compute.name(), m.compute.spans()},
                       {m.loader.name(), m.loader.spans()},
                       {m.storer.name(), m.storer.spans()}});
}

}  // namespace strata
