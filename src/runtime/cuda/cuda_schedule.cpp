// The CUDA backend's block schedule: weight and cache loads on the load stream, the stage runner on
// the compute stream, stores on the store stream, and the work done on the host in stream order
// (CPU attention, HeteGen's CPU columns).
#include <cblas.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "core/dtype.h"
#include "kernels/cpu/quant.h"
#include "kernels/quant_format.h"
#include "runtime/cuda/cuda_engine_impl.h"

namespace strata {

namespace {

using cuda_engine::Fp16;
using cuda_engine::HostRows;
using cuda_engine::SpanLog;

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
// [0, length] in fp32. rows holds q [n, q_dim], k and v [n, kv_dim] fp16 one after another; out
// gets [n, q_dim]. Sequences are shared out over as many threads as OpenBLAS uses: reading the
// cache is the cost.
void attend_on_host(const ModelConfig& c, int64_t capacity, const std::vector<int64_t>& slots,
                    const std::vector<int64_t>& lengths, const Fp16* rows, Fp16* cache, Fp16* out) {
  const int64_t qd = c.q_dim(), kvd = c.kv_dim(), n = static_cast<int64_t>(slots.size());
  const Fp16* new_keys = rows + n * qd;
  const Fp16* new_values = new_keys + n * kvd;
  const auto sequences = [&](int64_t first, int64_t last) {
    std::vector<float> q(static_cast<size_t>(qd)), o(q.size()), keys, values;
    for (int64_t i = first; i < last; ++i) {
      const int64_t len = lengths[static_cast<size_t>(i)];
      Fp16* slot_keys = cache + slots[static_cast<size_t>(i)] * 2 * capacity * kvd;
      Fp16* slot_values = slot_keys + capacity * kvd;
      std::memcpy(slot_keys + len * kvd, new_keys + i * kvd, static_cast<size_t>(kvd) * 2);
      std::memcpy(slot_values + len * kvd, new_values + i * kvd, static_cast<size_t>(kvd) * 2);
      keys.resize(static_cast<size_t>((len + 1) * kvd));
      values.resize(keys.size());
      convert_to_f32(DType::kF16, slot_keys, keys.data(), keys.size());
      convert_to_f32(DType::kF16, slot_values, values.data(), values.size());
      convert_to_f32(DType::kF16, rows + i * qd, q.data(), q.size());
      cpu::attention(q.data(), qd, keys.data(), values.data(), kvd, o.data(), len, 1, c.n_heads,
                     c.kv_heads(), c.head_dim());
      convert_from_f32(DType::kF16, o.data(), out + i * qd, o.size());
    }
  };
  cpu::for_ranges(n, openblas_get_num_threads(), sequences);
}

int64_t batch_rows(const std::vector<SequenceStep>& batch) {
  int64_t rows = 0;
  for (const auto& st : batch) rows += static_cast<int64_t>(st.tokens.size());
  return rows;
}

}  // namespace

void CudaBackend::begin_step(const std::vector<std::vector<SequenceStep>>& st,
                             const std::vector<std::vector<int64_t>>& lens) {
  steps = &st;
  lengths = &lens;
  origin.record(compute_stream);
  origin_s = trace_clock_s();
  step_decode = std::all_of(st.begin(), st.end(), [](const auto& batch) {
    return std::all_of(batch.begin(), batch.end(),
                       [](const SequenceStep& x) { return x.tokens.size() == 1; });
  });
  // Each GPU batch's metadata crosses once per step, from pinned memory; the stages select it.
  for (size_t k = 0; k < st.size(); ++k) {
    if (!st[k].empty()) runner->begin_step(static_cast<int64_t>(k), st[k], lens[k], compute_stream);
  }
}

void CudaBackend::end_step() {
  loader.synchronize();
  compute_stream.synchronize();
  storer.synchronize();
  for (SpanLog* log : {&load_log, &compute_log, &store_log}) log->collect(origin, origin_s);
  if (host_error) std::rethrow_exception(std::exchange(host_error, nullptr));
}

// The host waits for the copy out of the slot, then reads the disk part into it.
void CudaBackend::submit_weight_read(int64_t s, int slot, Mark slot_free, uint64_t* ticket) {
  DeviceTieredArray& a = *weights[static_cast<size_t>(s)];
  *ticket = 0;
  if (!a.has_disk() || a.resident()) return;
  (*marks)[slot_free].synchronize();
  *ticket = a.submit_fetch(0, a.n_units(), staging[slot], staging_bytes);
}

// The host waits for the disk part only; the copies are queued.
void CudaBackend::finish_weight_read(int64_t s, uint64_t* ticket) {
  weights[static_cast<size_t>(s)]->finish_fetch(*ticket);
  *ticket = 0;
}

// Stage s's fp16 weights into weight buffer `buffer` on the load stream: copied, and decoded
// when packed.
void CudaBackend::expand_weights(int64_t s, int buffer, int slot) {
  DeviceTieredArray& a = *weights[static_cast<size_t>(s)];
  Fp16* dst = weight_buffers[buffer].as<Fp16>();
  const cuda::Stream& stream = lane(Lane::kLoad);
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
    src = static_cast<const uint8_t*>(target);
  }
  if (policy().compress_weight) unpack_on_device(packed[static_cast<size_t>(s)], src, dst, stream);
  load_log.end(stream);
}

bool CudaBackend::host_attention(const BatchWork& w) const {
  const auto& batch = *w.steps;
  return stage_has_cache(w.layout->kind) && policy().cpu_cache_compute &&
         std::all_of(batch.begin(), batch.end(),
                     [](const auto& st) { return st.tokens.size() == 1; });
}

bool CudaBackend::cache_crosses(const BatchWork& w) const {
  if (!stage_has_cache(w.layout->kind) || host_attention(w)) return false;
  return policy().compress_cache || !cache_array(w).resident();
}

Fp16* CudaBackend::hidden_of(const BatchWork& w) const {
  auto* hidden = static_cast<Fp16*>(acts[static_cast<size_t>(w.batch)]->resident());
  return hidden ? hidden : act_buffers[w.act_slot].as<Fp16>();
}

void CudaBackend::load_hidden(const BatchWork& w) {
  const cuda::Stream& stream = lane(Lane::kLoad);
  load_log.begin("load activations" + tag(w), stream);
  acts[static_cast<size_t>(w.batch)]->load_through(
      hidden_of(w), 0, batch_rows(*w.steps) * config.hidden_size, io_staging[0], stream);
  load_log.end(stream);
}

// The valid rows of each sequence's keys and values.
void CudaBackend::load_cache(const BatchWork& w) {
  const cuda::Stream& stream = lane(Lane::kLoad);
  load_log.begin("load cache" + tag(w), stream);
  for_each_kv_range(w, shapes.capacity, config.kv_dim(), false, [&](int64_t b, int64_t e) {
    load_cache_rows(cache_array(w), w.cache_slot, b, e, stream);
  });
  load_log.end(stream);
}

void CudaBackend::compute_stage(const BatchWork& w) {
  const StageLayout& layout = *w.layout;
  const auto& batch = *w.steps;
  const int64_t s = w.stage;
  const Fp16* wt = in_place(s)
                       ? static_cast<const Fp16*>(weights[static_cast<size_t>(s)]->resident())
                       : weight_buffers[s % 2].as<Fp16>();
  Fp16* hidden = hidden_of(w);
  compute_log.begin("compute" + tag(w), compute_stream);
  runner->use_batch(w.k);
  switch (layout.kind) {
    case StageKind::kEmbed:
      runner->embed(layout, wt, hidden, compute_stream);
      break;
    case StageKind::kDecoder:
    case StageKind::kAttention:
    case StageKind::kMlp:
      if (host_attention(w)) {
        attention_on_host(layout, wt, hidden, batch, *w.lengths, cache_array(w));
      } else {
        Fp16* kv = nullptr;
        if (stage_has_cache(layout.kind)) {
          kv = w.cache_slot >= 0 ? cache_buffers[w.cache_slot].as<Fp16>()
                                 : static_cast<Fp16*>(cache_array(w).resident());
        }
        runner->decoder(layout, wt, {kv, shapes.capacity, config.kv_dim()}, hidden, compute_stream);
      }
      break;
    case StageKind::kHead: {
      const size_t vocab = static_cast<size_t>(config.vocab_size);
      runner->head(layout, wt, hidden, logits_device.as<float>(), compute_stream);
      cuda::copy_d2h(
          logits_host.as<float>() + static_cast<size_t>(w.k * policy().gpu_batch_size) * vocab,
          logits_device.data(), batch.size() * vocab * sizeof(float), compute_stream);
      break;
    }
  }
  compute_log.end(compute_stream);
}

// Only the new rows go back.
void CudaBackend::store_cache(const BatchWork& w) {
  const cuda::Stream& stream = lane(Lane::kStore);
  store_log.begin("store cache" + tag(w), stream);
  for_each_kv_range(w, shapes.capacity, config.kv_dim(), true, [&](int64_t b, int64_t e) {
    store_cache_rows(cache_array(w), w.cache_slot, b, e, stream);
  });
  store_log.end(stream);
}

void CudaBackend::store_hidden(const BatchWork& w) {
  const cuda::Stream& stream = lane(Lane::kStore);
  store_log.begin("store activations" + tag(w), stream);
  acts[static_cast<size_t>(w.batch)]->store(
      hidden_of(w), 0, batch_rows(*w.steps) * config.hidden_size, io_staging[1], stream);
  store_log.end(stream);
}

// Cache elements [begin, end) (whole rows) of a (layer, batch) block into cache ring buffer
// `slot`: copied, or copied packed and decoded when the cache is compressed.
void CudaBackend::load_cache_rows(DeviceTieredArray& a, int slot, int64_t begin, int64_t end,
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

void CudaBackend::store_cache_rows(DeviceTieredArray& a, int slot, int64_t begin, int64_t end,
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

cuda::HostLinear CudaBackend::host_linear(const StageLayout& layout, const std::string& name) {
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
void CudaBackend::attention_on_host(const StageLayout& layout, const Fp16* w, Fp16* hidden,
                                    const std::vector<SequenceStep>& batch,
                                    const std::vector<int64_t>& lens, DeviceTieredArray& kv_array) {
  const int64_t qd = config.q_dim(), kvd = config.kv_dim(), n = static_cast<int64_t>(batch.size());
  const size_t q_bytes = static_cast<size_t>(n * qd) * sizeof(Fp16);
  const size_t kv_bytes = static_cast<size_t>(n * kvd) * sizeof(Fp16);
  auto* qkv = attention_host.as<Fp16>();
  Fp16* out = qkv + policy().gpu_batch_size * (qd + 2 * kvd);
  runner->project_qkv(layout, w, hidden, compute_stream);
  cuda::copy_d2h(qkv, runner->q(), q_bytes, compute_stream);
  cuda::copy_d2h(qkv + n * qd, runner->k(), kv_bytes, compute_stream);
  cuda::copy_d2h(qkv + n * (qd + kvd), runner->v(), kv_bytes, compute_stream);
  std::vector<int64_t> slots, lengths;
  for (const auto& st : batch) {
    slots.push_back(st.slot);
    lengths.push_back(lens[static_cast<size_t>(st.slot)]);
  }
  auto* cache = reinterpret_cast<Fp16*>(kv_array.host_data());
  cuda::launch_host(compute_stream, [this, slots = std::move(slots), lengths = std::move(lengths),
                                     qkv, cache, out] {
    try {
      attend_on_host(config, shapes.capacity, slots, lengths, qkv, cache, out);
    } catch (...) {
      if (!host_error) host_error = std::current_exception();
    }
  });
  counters.bytes_written[static_cast<size_t>(Tier::kCpu)] += 2 * kv_bytes;
  cuda::copy_h2d(runner->attention_out(), out, q_bytes, compute_stream);
  runner->finish_decoder(layout, w, hidden, compute_stream);
}

}  // namespace strata
