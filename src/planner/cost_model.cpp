#include "planner/cost_model.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "core/dtype.h"
#include "core/error.h"
#include "runtime/opt_stages.h"

namespace strata {
namespace {

constexpr double kGB = 1e9;

// Seconds per byte; a rate a profile lacks (no disk measured) costs nothing, and the planner
// then keeps that tier empty.
double per_byte(double gbps) {
  return gbps > 0 ? 1 / (gbps * kGB) : 0.0;
}

// Sizes of one stage kind, in elements, and its GEMM work per row.
struct StageKindInfo {
  std::string name;
  StageKind kind;
  int64_t count = 0;
  int64_t numel = 0;
  double gemm_flops_per_row = 0;  // projections applied to every new row
  double gemm_flops_per_seq = 0;  // the head: lm_head on each sequence's last row
  // Floats read and written per row outside GEMMs (norms, biases, activations, residuals,
  // cache appends): a count of passes over the row, not measured.
  double elementwise_floats_per_row = 0;
};

std::vector<StageKindInfo> stage_kinds(const OptConfig& c, bool sep_layer) {
  const double h = static_cast<double>(c.hidden_size);
  const double f = static_cast<double>(c.ffn_dim);
  const double e = static_cast<double>(c.word_embed_proj_dim);
  std::map<StageKind, StageKindInfo> by_kind;
  for (const auto& layout : opt_stage_layouts(c, sep_layer)) {
    StageKindInfo& info = by_kind[layout.kind];
    info.kind = layout.kind;
    info.count += 1;
    info.numel = std::max(info.numel, layout.numel);
  }
  std::vector<StageKindInfo> out;
  for (auto& [kind, info] : by_kind) {
    switch (kind) {
      case StageKind::kEmbed:
        info.name = "embed";
        info.elementwise_floats_per_row = 5 * h;
        if (c.has_projection()) info.gemm_flops_per_row = 2 * h * e;
        break;
      case StageKind::kDecoder:
        info.name = "decoder";
        info.elementwise_floats_per_row = 20 * h + 3 * f;
        info.gemm_flops_per_row = 2 * (4 * h * h + 2 * h * f);
        break;
      case StageKind::kAttention:
        info.name = "attention";
        info.elementwise_floats_per_row = 14 * h;
        info.gemm_flops_per_row = 2 * 4 * h * h;
        break;
      case StageKind::kMlp:
        info.name = "mlp";
        info.elementwise_floats_per_row = 6 * h + 3 * f;
        info.gemm_flops_per_row = 2 * 2 * h * f;
        break;
      case StageKind::kHead:
        info.name = "head";
        info.gemm_flops_per_seq =
            2 * e * static_cast<double>(c.vocab_size) + (c.has_projection() ? 2 * h * e : 0.0);
        break;
    }
    out.push_back(info);
  }
  return out;
}

struct Sizes {
  bool gpu;         // a real GPU (else the CPU backend)
  double w_stored;  // bytes per weight element on the CPU and disk tiers
  double w_gpu;     // on the GPU tier
  double kv;        // bytes per cache element (every tier)
  double act;       // bytes per activation element
};

Sizes sizes_of(const HardwareProfile& hw, const OptConfig& c, const CostShape& s) {
  Sizes z;
  z.gpu = hw.has_gpu;
  z.w_stored =
      s.compress_weight ? kCompressedBytesPerElement : static_cast<double>(dtype_size(c.dtype));
  // The CPU backend computes in fp32 and keeps its GPU-tier weights, cache and activations so.
  z.w_gpu = hw.has_gpu ? z.w_stored : 4.0;
  z.kv = hw.has_gpu ? (s.compress_cache ? kCompressedBytesPerElement : 2.0) : 4.0;
  z.act = hw.has_gpu ? 2.0 : 4.0;
  return z;
}

// Adds bytes of a kind moved between the GPU tier and the (CPU, disk) fractions given.
struct Link {
  double cpu_s_per_byte;   // the CPU share
  double disk_s_per_byte;  // the disk share (includes its CPU hop)
};

Affine moved(double bytes, int cpu_var, int disk_var, const Link& link) {
  Affine a;
  a.add(cpu_var, bytes * link.cpu_s_per_byte);
  a.add(disk_var, bytes * link.disk_s_per_byte);
  return a;
}

// The linear layers of a stage kind that HeteGen splits, with their alphas.
struct LinearPart {
  double elements;
  double alpha;
};
std::vector<LinearPart> split_linears(const OptConfig& c, StageKind kind, const LinearAlphas& a) {
  const double h = static_cast<double>(c.hidden_size);
  const double f = static_cast<double>(c.ffn_dim);
  std::vector<LinearPart> out;
  if (kind == StageKind::kDecoder || kind == StageKind::kAttention) {
    for (int i = 0; i < 4; ++i) out.push_back({h * h, a.attention});  // q, k, v, out_proj
  }
  if (kind == StageKind::kDecoder || kind == StageKind::kMlp) {
    out.push_back({f * h, a.fc1});
    out.push_back({h * f, a.fc2});
  }
  return out;
}

}  // namespace

Placement Placement::of(const Policy& p) {
  Placement x;
  const TierSplit* splits[3] = {&p.weights, &p.cache, &p.activations};
  for (int i = 0; i < 3; ++i) {
    x.f[static_cast<size_t>(3 * i)] = splits[i]->gpu_percent / 100;
    x.f[static_cast<size_t>(3 * i + 1)] = splits[i]->cpu_percent / 100;
    x.f[static_cast<size_t>(3 * i + 2)] = splits[i]->disk_percent() / 100;
  }
  return x;
}

void Placement::apply_to(Policy& p) const {
  TierSplit* splits[3] = {&p.weights, &p.cache, &p.activations};
  for (int i = 0; i < 3; ++i) {
    // Whole millionths of a percent: LP round-off must not push gpu + cpu past 100.
    auto percent = [](double fraction) {
      return std::clamp(std::round(fraction * 1e8) / 1e6, 0.0, 100.0);
    };
    const double g = percent(f[static_cast<size_t>(3 * i)]);
    const double c = std::min(percent(f[static_cast<size_t>(3 * i + 1)]), 100.0 - g);
    *splits[i] = {g, c};
  }
}

double Affine::at(const Placement& p) const {
  double v = constant;
  for (size_t i = 0; i < coef.size(); ++i) v += coef[i] * p.f[i];
  return v;
}

Affine& Affine::operator+=(const Affine& o) {
  constant += o.constant;
  for (size_t i = 0; i < coef.size(); ++i) coef[i] += o.coef[i];
  return *this;
}

Affine CostTerm::seconds() const {
  Affine total;
  for (const auto& [name, part] : parts) total += part;
  return total;
}

const char* phase_name(Phase phase) {
  return phase == Phase::kPrefill ? "prefill" : "decode";
}

CostShape CostShape::of(const Policy& p, int64_t prompt_len, int64_t gen_len) {
  CostShape s;
  s.prompt_len = prompt_len;
  s.gen_len = gen_len;
  s.gpu_batch_size = p.gpu_batch_size;
  s.num_gpu_batches = p.num_gpu_batches;
  s.sep_layer = p.sep_layer;
  s.cpu_cache_compute = p.cpu_cache_compute;
  s.compress_weight = p.compress_weight;
  s.compress_cache = p.compress_cache;
  s.hetegen = p.hetegen_alpha;
  return s;
}

SplitTimes split_times(const HardwareProfile& hw, Phase phase, double rows, double n_batches,
                       double weight_elements, double weight_bytes_per_element,
                       bool weights_on_cpu) {
  SplitTimes t;
  const double flops = 2 * rows * weight_elements * n_batches;
  const double bytes = weight_elements * weight_bytes_per_element;
  const double cpu_rate = hw.cpu_gemm_rate_gflops(rows) * kGB;
  // Few rows: the CPU streams the weights from memory once per batch, whatever its FLOP rate.
  t.cpu_s = cpu_rate > 0
                ? std::max(flops / cpu_rate, n_batches * bytes * per_byte(hw.host_copy_gbps))
                : std::numeric_limits<double>::infinity();
  t.pcie_s = weights_on_cpu ? bytes * per_byte(hw.h2d_gbps) : 0;
  const double gpu_rate =
      (phase == Phase::kPrefill ? hw.gpu_gemm_gflops : hw.gemm_decode_gflops()) * kGB;
  t.gpu_s = gpu_rate > 0 ? flops / gpu_rate : 0;
  return t;
}

double balanced_alpha(const SplitTimes& t) {
  if (t.pcie_s <= 0 || !std::isfinite(t.cpu_s)) return 0;
  return (t.pcie_s + t.gpu_s) / (t.cpu_s + t.pcie_s + t.gpu_s);
}

double split_seconds(const SplitTimes& t, double alpha) {
  const double gpu_side = (1 - alpha) * (t.pcie_s + t.gpu_s);
  return alpha > 0 ? std::max(alpha * t.cpu_s, gpu_side) : gpu_side;
}

HeteGenAlpha balanced_alphas(const HardwareProfile& hw, const OptConfig& c, const CostShape& s) {
  HeteGenAlpha out;
  if (!hw.has_gpu) return out;
  const double bytes =
      s.compress_weight ? kCompressedBytesPerElement : static_cast<double>(dtype_size(c.dtype));
  const double h = static_cast<double>(c.hidden_size);
  const double f = static_cast<double>(c.ffn_dim);
  const double g = static_cast<double>(s.gpu_batch_size);
  const double nb = static_cast<double>(s.num_gpu_batches);
  for (const Phase phase : {Phase::kPrefill, Phase::kDecode}) {
    const double rows = phase == Phase::kPrefill ? g * static_cast<double>(s.prompt_len) : g;
    auto alpha = [&](double elements) {
      return balanced_alpha(split_times(hw, phase, rows, nb, elements, bytes, true));
    };
    LinearAlphas& a = phase == Phase::kPrefill ? out.prefill : out.decode;
    a = {alpha(h * h), alpha(f * h), alpha(h * f)};
  }
  return out;
}

std::vector<StageCost> stage_costs(const HardwareProfile& hw, const OptConfig& c,
                                   const CostShape& s) {
  STRATA_CHECK(
      s.prompt_len >= 1 && s.gen_len >= 1 && s.gpu_batch_size >= 1 && s.num_gpu_batches >= 1,
      "cost model: bad shape");
  STRATA_INPUT_CHECK(!hw.has_gpu || !s.hetegen.any() || hw.cpu_gemm_rate_gflops(1) > 0,
                     "a HeteGen alpha > 0 needs cpu_gemm_gflops (the CPU's GEMM rate) in the "
                     "hardware profile '",
                     hw.name, "'");
  const Sizes z = sizes_of(hw, c, s);
  const double h = static_cast<double>(c.hidden_size);
  const double g = static_cast<double>(s.gpu_batch_size);
  const double nb = static_cast<double>(s.num_gpu_batches);
  const double prompt = static_cast<double>(s.prompt_len);
  // Decode steps t = 1 .. gen_len - 1 attend over prompt_len + t - 1 cached tokens.
  const double cached = prompt + (static_cast<double>(s.gen_len) - 2) / 2;

  const double disk_r = per_byte(hw.disk_read_gbps);
  const double disk_w = per_byte(hw.disk_write_gbps);
  const double disk_w_cache = per_byte(hw.cache_disk_write_gbps());
  Link load_w, load_kv, load_act, store_kv, store_act;
  double expand_s_per_byte = 0;
  if (z.gpu) {
    const double h2d = per_byte(hw.h2d_gbps);
    // Disk bytes hop through host memory and then over PCIe, one after the other.
    load_w = {h2d, h2d + disk_r};
    load_kv = s.cpu_cache_compute ? Link{0, disk_r} : Link{h2d, h2d + disk_r};
    load_act = {h2d, h2d + disk_r};
    const double d2h_kv = per_byte(hw.cache_d2h_gbps());
    store_kv = {d2h_kv, d2h_kv + disk_w_cache};
    store_act = {per_byte(hw.d2h_gbps), per_byte(hw.d2h_gbps) + disk_w};
  } else {
    // CPU-tier weights are read in place by the expansion; only disk bytes are loaded. The
    // streams' memory copies take cores the GEMMs use (a stream is a thread here), so they are
    // charged to the compute term (below); the load and store terms keep the disk time.
    load_w = {0, disk_r};
    load_kv = {0, disk_r};
    load_act = load_kv;
    store_kv = {0, disk_w};
    store_act = store_kv;
    expand_s_per_byte = per_byte(hw.expand_gbps);
  }

  std::vector<StageCost> out;
  for (const Phase phase : {Phase::kPrefill, Phase::kDecode}) {
    const bool prefill = phase == Phase::kPrefill;
    const double steps = prefill ? 1.0 : static_cast<double>(s.gen_len - 1);
    if (steps <= 0) continue;
    const double rows = g * (prefill ? prompt : 1.0);  // new rows per GPU batch
    const double new_tokens = prefill ? prompt : 1.0;  // per sequence
    // Attention FLOPs per sequence: scores and weighted sum over the causal keys.
    const double attn_flops = prefill ? 4 * h * prompt * (prompt + 1) / 2 : 4 * h * (cached + 1);
    const double gemm_rate =
        (z.gpu ? (prefill ? hw.gpu_gemm_gflops : hw.gemm_decode_gflops()) : hw.cpu_gemm_gflops) *
        kGB;
    for (const StageKindInfo& k : stage_kinds(c, s.sep_layer)) {
      StageCost sc;
      sc.stage = k.name;
      sc.phase = phase;
      sc.repeats = static_cast<double>(k.count) * steps;
      const bool has_cache = stage_has_cache(k.kind);
      const bool loads_act = k.kind != StageKind::kEmbed;
      const bool stores_act = k.kind != StageKind::kHead;
      const double w_bytes = static_cast<double>(k.numel) * z.w_stored;
      const double act_bytes = nb * rows * h * z.act;

      CostTerm load{"load", {}}, compute{"compute", {}}, store{"store", {}};
      load.parts.push_back({"weights", moved(w_bytes, kWc, kWd, load_w)});
      Affine disk;  // the one device serves the load and the store stream
      disk.add(kWd, w_bytes * disk_r);
      // Keys and values go one sequence at a time: two requests per sequence each way.
      const double kv_requests = nb * g * 2;
      if (has_cache && !prefill) {
        const double kv_bytes = nb * g * 2 * cached * h * z.kv;
        Affine a = moved(kv_bytes, kCc, kCd, load_kv);
        a.add(kCd, kv_requests * hw.disk_read_request_s);
        load.parts.push_back({"cache", a});
        disk.add(kCd, kv_bytes * disk_r + kv_requests * hw.disk_read_request_s);
      }
      if (loads_act) {
        load.parts.push_back({"activations", moved(act_bytes, kHc, kHd, load_act)});
        disk.add(kHd, act_bytes * disk_r);
      }

      if (!z.gpu) {
        const double fp32_bytes = static_cast<double>(k.numel) * 4;
        Affine expand;
        expand.add(kWc, fp32_bytes * expand_s_per_byte).add(kWd, fp32_bytes * expand_s_per_byte);
        compute.parts.push_back({"expand weights", expand});
      }
      Affine gemm;
      // Per-row GEMMs run with `rows` rows, the head's with one per sequence; on the CPU the
      // rate falls with few rows (the weights stream from memory).
      const double row_rate = z.gpu ? gemm_rate : hw.cpu_gemm_rate_gflops(rows) * kGB;
      const double seq_rate = z.gpu ? gemm_rate : hw.cpu_gemm_rate_gflops(g) * kGB;
      gemm.constant = rows * k.gemm_flops_per_row / row_rate + g * k.gemm_flops_per_seq / seq_rate;
      gemm.constant *= nb;
      if (z.gpu && hw.gpu_mem_gbps > 0) {  // each GPU batch reads the stage's fp16 weights
        gemm.constant = std::max(gemm.constant,
                                 nb * static_cast<double>(k.numel) * 2 / (hw.gpu_mem_gbps * kGB));
      }
      // HeteGen on a GPU node: of the CPU-tier weights, only the GPU's columns cross PCIe and
      // run on the GPU; the CPU's run alongside. The split layer takes at least
      // max(alpha * cpu, (1 - alpha) * (pcie + gpu)), the GPU's transfer and GEMM in sequence.
      CostTerm split_cpu{"hetegen cpu", {}}, split_gpu{"hetegen gpu", {}};
      if (z.gpu) {
        Affine cpu_cols, gpu_cols;
        for (const LinearPart& l :
             split_linears(c, k.kind, prefill ? s.hetegen.prefill : s.hetegen.decode)) {
          if (l.alpha <= 0) continue;
          const SplitTimes t = split_times(hw, phase, rows, nb, l.elements, z.w_stored, true);
          cpu_cols.add(kWc, l.alpha * t.cpu_s);
          gpu_cols.add(kWc, (1 - l.alpha) * (t.pcie_s + t.gpu_s));
          load.parts.front().second.add(kWc, -l.alpha * t.pcie_s);
          gemm.add(kWc, -l.alpha * t.gpu_s);
        }
        if (cpu_cols.coef[kWc] > 0) {
          split_cpu.parts.push_back({"cpu columns", cpu_cols});
          split_gpu.parts.push_back({"gpu columns: transfer then gemm", gpu_cols});
        }
      }
      compute.parts.push_back({"gemm", gemm});
      if (!z.gpu) {
        // Layer norms, biases, activation, residual adds and cache appends pass over each row
        // a few times at memory speed, on the compute stream.
        const double copy = per_byte(hw.host_copy_gbps);
        Affine passes;
        passes.constant = nb * rows * k.elementwise_floats_per_row * 4 * copy;
        compute.parts.push_back({"elementwise", passes});
        // What the load and store streams copy between the tiers and the working buffers.
        Affine moves;
        const double kv_in = has_cache && !prefill ? nb * g * 2 * cached * h * z.kv : 0;
        const double kv_out = has_cache ? nb * g * new_tokens * 2 * h * z.kv : 0;
        const double act_moved = act_bytes * ((loads_act ? 1 : 0) + (stores_act ? 1 : 0));
        moves.add(kCc, (kv_in + kv_out) * copy).add(kCd, (kv_in + kv_out) * copy);
        moves.add(kHc, act_moved * copy).add(kHd, act_moved * copy);
        compute.parts.push_back({"tier copies", moves});
        // The kernel's CPU time for the disk traffic comes out of the same cores.
        Affine io_cpu;
        const double s_per_byte = hw.disk_cpu_s_per_gb / kGB;
        io_cpu.add(kWd, w_bytes * s_per_byte);
        io_cpu.add(kCd, (kv_in + std::max(kv_out, kv_requests * 4096.0)) * s_per_byte);
        io_cpu.add(kHd, act_moved * s_per_byte);
        compute.parts.push_back({"disk i/o cpu", io_cpu});
      }
      if (has_cache) {
        const double flops = nb * g * attn_flops;
        Affine attn;
        if (prefill) {
          // Prefill attention runs as GEMMs (cuBLAS or OpenBLAS), on the GPU tier's device.
          attn.constant =
              flops / ((z.gpu ? hw.gpu_attention_gflops : hw.cpu_gemm_rate_gflops(prompt)) * kGB);
        } else if (!z.gpu) {
          attn.constant = flops / (hw.cpu_attention_gflops * kGB);
        } else if (s.cpu_cache_compute) {
          attn.add(kCg, flops / (hw.attention_decode_gflops() * kGB));
          const double cpu = flops / (hw.cpu_attention_gflops * kGB);
          attn.add(kCc, cpu).add(kCd, cpu);
        } else {
          attn.constant = flops / (hw.attention_decode_gflops() * kGB);
          if (hw.gpu_mem_gbps > 0) {  // the cache is read once per step
            attn.constant = std::max(
                attn.constant, nb * g * 2 * (cached + 1) * h * z.kv / (hw.gpu_mem_gbps * kGB));
          }
        }
        compute.parts.push_back({"attention", attn});
        // Disk writes cover whole 4 KiB blocks.
        const double new_kv = nb * g * new_tokens * 2 * h * z.kv;
        const double new_kv_disk = kv_requests * std::max(new_tokens * h * z.kv, 4096.0);
        Affine a = moved(new_kv, kCc, kCd, store_kv);
        a.add(kCd, kv_requests * hw.disk_write_request_s + (new_kv_disk - new_kv) * disk_w_cache);
        store.parts.push_back({"cache", a});
        disk.add(kCd, new_kv_disk * disk_w_cache + kv_requests * hw.disk_write_request_s);
      }
      if (stores_act) {
        store.parts.push_back({"activations", moved(act_bytes, kHc, kHd, store_act)});
        disk.add(kHd, act_bytes * disk_w);
      }
      sc.terms = {load, compute, store, CostTerm{"disk", {{"reads and writes", disk}}}};
      if (!split_cpu.parts.empty()) {
        sc.terms.push_back(std::move(split_cpu));
        sc.terms.push_back(std::move(split_gpu));
      }
      if (!z.gpu) {
        // Measured on the CPU backend (2 cores): disk transfers barely overlap the compute
        // (their DMA, completions and staging share the cores and the memory bus, and cache
        // requests queue behind prefetched weights), so disk time adds to compute time.
        CostTerm serial{"compute + disk", compute.parts};
        serial.parts.push_back({"disk", disk});
        sc.terms.push_back(std::move(serial));
      }
      out.push_back(std::move(sc));
    }
  }
  return out;
}

MemoryModel memory_model(const HardwareProfile& hw, const OptConfig& c, const CostShape& s,
                         const Residency& r) {
  const Sizes z = sizes_of(hw, c, s);
  const double h = static_cast<double>(c.hidden_size);
  const double g = static_cast<double>(s.gpu_batch_size);
  const double nb = static_cast<double>(s.num_gpu_batches);
  const double prompt = static_cast<double>(s.prompt_len);
  const double capacity = prompt + static_cast<double>(s.gen_len);
  double weights = 0, max_stage = 0;
  for (const auto& l : opt_stage_layouts(c, s.sep_layer)) {
    weights += static_cast<double>(l.numel);
    max_stage = std::max(max_stage, static_cast<double>(l.numel));
  }
  const double kv_block = g * 2 * capacity * h;  // one (layer, GPU batch) cache block, elements
  const double cache = static_cast<double>(c.n_layers) * nb * kv_block;
  const double act_block = g * prompt * h;
  const double acts = nb * act_block;
  const double block = static_cast<double>(s.block());
  const double ffn = static_cast<double>(c.ffn_dim);
  const double e = static_cast<double>(c.word_embed_proj_dim);

  MemoryModel m;
  Affine& gpu = m.tier[0];
  Affine& cpu = m.tier[1];
  Affine& disk = m.tier[2];
  gpu.add(kWg, weights * z.w_gpu).add(kCg, cache * z.kv).add(kHg, acts * z.act);
  cpu.add(kWc, weights * z.w_stored).add(kCc, cache * z.kv).add(kHc, acts * z.act);
  disk.add(kWd, weights * z.w_stored).add(kCd, cache * z.kv).add(kHd, acts * z.act);
  if (!hw.has_gpu) {
    // As plan_memory: two stage buffers, rings of three cache and activation blocks, the
    // forward workspace and the logits; host staging for disk I/O (an upper bound of the
    // engine's five times the largest disk part: three weight reads in flight, a load and a
    // store).
    if (!r.weights) gpu.constant += 2 * max_stage * 4;
    if (!r.cache) gpu.constant += 3 * kv_block * 4;
    if (!r.activations) gpu.constant += 3 * act_block * 4;
    gpu.constant += (act_block / h * (5 * h + ffn + e) + g * (h + e) + block * c.vocab_size) * 4;
    constexpr double kStagingCopies = 5;
    cpu.add(kWd, kStagingCopies * max_stage * z.w_stored)
        .add(kCd, kStagingCopies * kv_block * z.kv)
        .add(kHd, kStagingCopies * act_block * z.act);
  } else {
    // Double-buffered stage weights (and their fp16 form when compressed), the prefill
    // intermediates of one GPU batch (projections, MLP and the attention scores), cache blocks
    // in flight, and pinned staging for disk weights on the host.
    if (!r.weights) {
      gpu.constant += 2 * max_stage * z.w_stored + (s.compress_weight ? 2 * max_stage * 2 : 0);
    }
    const double nh = static_cast<double>(c.n_heads);
    gpu.constant += (g * prompt * (6 * h + ffn) + g * nh * prompt * prompt) * z.act;
    if (!r.cache) gpu.constant += 2 * kv_block * z.kv;
    if (!r.activations) gpu.constant += 2 * act_block * z.act;
    gpu.constant += g * static_cast<double>(c.vocab_size) * 4;
    cpu.add(kWd, 2 * max_stage * z.w_stored);
    if (s.cpu_cache_compute) cpu.constant += g * (nh * capacity * 4 + 4 * h * 4);
  }
  return m;
}

Prediction predict(const std::vector<StageCost>& costs, const Placement& x, const CostShape& s) {
  Prediction p;
  std::map<std::string, double> share[2];  // seconds by "stream: part" of the longest term
  for (const StageCost& sc : costs) {
    const CostTerm* longest = nullptr;
    double t = -1;
    for (const CostTerm& term : sc.terms) {
      const double v = term.seconds().at(x);
      if (v > t) t = v, longest = &term;
    }
    const int i = sc.phase == Phase::kPrefill ? 0 : 1;
    (i == 0 ? p.prefill_s : p.decode_s) += sc.repeats * t;
    if (!longest) continue;
    std::pair<std::string, double> top{"", -1};
    for (const auto& [name, part] : longest->parts) {
      const double v = part.at(x);
      if (v > top.second) top = {name, v};
    }
    share[i][longest->stream + ": " + top.first] += sc.repeats * t;
  }
  auto bound = [](const std::map<std::string, double>& m) {
    std::string best;
    double v = -1;
    for (const auto& [name, seconds] : m) {
      if (seconds > v) best = name, v = seconds;
    }
    return best;
  };
  p.prefill_bound = bound(share[0]);
  p.decode_bound = bound(share[1]);
  const double block = static_cast<double>(s.block());
  if (p.prefill_s > 0)
    p.prefill_tokens_per_s = block * static_cast<double>(s.prompt_len) / p.prefill_s;
  if (p.decode_s > 0)
    p.decode_tokens_per_s = block * static_cast<double>(s.gen_len - 1) / p.decode_s;
  const double total = p.prefill_s + p.decode_s;
  if (total > 0) p.generation_tokens_per_s = block * static_cast<double>(s.gen_len) / total;
  return p;
}

}  // namespace strata
