#include "planner/cost_model.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "core/dtype.h"
#include "core/error.h"
#include "runtime/stages.h"

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

std::vector<StageKindInfo> stage_kinds(const ModelConfig& c, bool sep_layer) {
  const double h = static_cast<double>(c.hidden_size);
  const double f = static_cast<double>(c.ffn_dim);
  const double e = static_cast<double>(c.word_embed_proj_dim);
  // q and out are [q_dim, h]; k and v [kv_dim, h] (narrower under GQA); SwiGLU has 3 linears.
  const double attn_gemm =
      2 * h * (2 * static_cast<double>(c.q_dim()) + 2 * static_cast<double>(c.kv_dim()));
  const double mlp_gemm = 2 * h * f * (c.gated_mlp ? 3 : 2);
  std::map<StageKind, StageKindInfo> by_kind;
  for (const auto& layout : stage_layouts(c, sep_layer)) {
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
        info.gemm_flops_per_row = attn_gemm + mlp_gemm;
        break;
      case StageKind::kAttention:
        info.name = "attention";
        info.elementwise_floats_per_row = 14 * h;
        info.gemm_flops_per_row = attn_gemm;
        break;
      case StageKind::kMlp:
        info.name = "mlp";
        info.elementwise_floats_per_row = 6 * h + 3 * f;
        info.gemm_flops_per_row = mlp_gemm;
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

Sizes sizes_of(const HardwareProfile& hw, const ModelConfig& c, const CostShape& s) {
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
std::vector<LinearPart> split_linears(const ModelConfig& c, StageKind kind, const LinearAlphas& a) {
  const double h = static_cast<double>(c.hidden_size);
  const double f = static_cast<double>(c.ffn_dim);
  const double qd = static_cast<double>(c.q_dim()), kvd = static_cast<double>(c.kv_dim());
  std::vector<LinearPart> out;
  if (kind == StageKind::kDecoder || kind == StageKind::kAttention) {
    for (double rows : {qd, kvd, kvd, qd}) out.push_back({rows * h, a.attention});  // q k v o
  }
  if (kind == StageKind::kDecoder || kind == StageKind::kMlp) {
    out.push_back({f * h, a.fc1});  // fc1, or SwiGLU's up and gate
    if (c.gated_mlp) out.push_back({f * h, a.fc1});
    out.push_back({h * f, a.fc2});  // fc2, or down
  }
  return out;
}

// Seconds per byte of each transfer a stage step makes.
struct Links {
  Link load_w, load_kv, load_act, store_kv, store_act;
  double disk_r = 0, disk_w = 0, disk_w_cache = 0;
  double expand_s_per_byte = 0;  // the CPU backend's fp16 -> fp32 weight expansion
};

Links links_of(const HardwareProfile& hw, const CostShape& s, bool gpu) {
  Links l;
  l.disk_r = per_byte(hw.disk_read_gbps);
  l.disk_w = per_byte(hw.disk_write_gbps);
  l.disk_w_cache = per_byte(hw.cache_disk_write_gbps());
  if (gpu) {
    const double h2d = per_byte(hw.h2d_gbps);
    // Disk bytes hop through host memory and then over PCIe, one after the other.
    l.load_w = {h2d, h2d + l.disk_r};
    l.load_kv = s.cpu_cache_compute ? Link{0, l.disk_r} : Link{h2d, h2d + l.disk_r};
    l.load_act = {h2d, h2d + l.disk_r};
    const double d2h_kv = per_byte(hw.cache_d2h_gbps());
    l.store_kv = {d2h_kv, d2h_kv + l.disk_w_cache};
    l.store_act = {per_byte(hw.d2h_gbps), per_byte(hw.d2h_gbps) + l.disk_w};
  } else {
    // CPU-tier weights are read in place by the expansion; only disk bytes are loaded. The
    // streams' memory copies take cores the GEMMs use (a stream is a thread here), so they are
    // charged to the compute term; the load and store terms keep the disk time.
    l.load_w = {0, l.disk_r};
    l.load_kv = {0, l.disk_r};
    l.load_act = l.load_kv;
    l.store_kv = {0, l.disk_w};
    l.store_act = l.store_kv;
    l.expand_s_per_byte = per_byte(hw.expand_gbps);
  }
  return l;
}

// What every stage's cost reads: the inputs and the figures derived from them once.
struct CostContext {
  const HardwareProfile& hw;
  const ModelConfig& c;
  const CostShape& s;
  Sizes z;
  Links links;
  double h, g, nb, prompt;
  double cached;         // mean cached tokens a decode step attends over
  double q_dim, kv_dim;  // attention widths: the cache holds kv_dim per token and layer
};

CostContext context_of(const HardwareProfile& hw, const ModelConfig& c, const CostShape& s) {
  const Sizes z = sizes_of(hw, c, s);
  const double prompt = static_cast<double>(s.prompt_len);
  // Decode steps t = 1 .. gen_len - 1 attend over prompt_len + t - 1 cached tokens.
  const double cached = prompt + (static_cast<double>(s.gen_len) - 2) / 2;
  return {hw,
          c,
          s,
          z,
          links_of(hw, s, z.gpu),
          static_cast<double>(c.hidden_size),
          static_cast<double>(s.gpu_batch_size),
          static_cast<double>(s.num_gpu_batches),
          prompt,
          cached,
          static_cast<double>(c.q_dim()),
          static_cast<double>(c.kv_dim())};
}

// One phase's work per stage step.
struct PhaseWork {
  Phase phase;
  bool prefill;
  double steps;       // token steps of the phase
  double rows;        // new rows per GPU batch
  double new_tokens;  // per sequence
  double attn_flops;  // per sequence: scores and weighted sum over the causal keys
  double gemm_rate;   // FLOP/s of the GPU tier's device
};

PhaseWork phase_work(const CostContext& x, Phase phase) {
  const HardwareProfile& hw = x.hw;
  PhaseWork w;
  w.phase = phase;
  w.prefill = phase == Phase::kPrefill;
  w.steps = w.prefill ? 1.0 : static_cast<double>(x.s.gen_len - 1);
  w.rows = x.g * (w.prefill ? x.prompt : 1.0);
  w.new_tokens = w.prefill ? x.prompt : 1.0;
  w.attn_flops =
      w.prefill ? 4 * x.q_dim * x.prompt * (x.prompt + 1) / 2 : 4 * x.q_dim * (x.cached + 1);
  w.gemm_rate =
      (x.z.gpu ? (w.prefill ? hw.gpu_gemm_gflops : hw.gemm_decode_gflops()) : hw.cpu_gemm_gflops) *
      kGB;
  return w;
}

// Bytes one stage step moves, over all GPU batches.
struct StepBytes {
  bool has_cache, loads_act, stores_act;
  double weights;      // the stage's weights as stored
  double activations;  // one hidden-state block
  double kv_in;        // cache read (decode steps)
  double kv_out;       // cache appended
  double kv_out_disk;  // the same in whole 4 KiB disk blocks
  double kv_requests;  // keys and values go one sequence at a time: two requests per sequence
};

StepBytes step_bytes(const CostContext& x, const PhaseWork& w, const StageKindInfo& k) {
  StepBytes b;
  b.has_cache = stage_has_cache(k.kind);
  b.loads_act = k.kind != StageKind::kEmbed;
  b.stores_act = k.kind != StageKind::kHead;
  b.weights = static_cast<double>(k.numel) * x.z.w_stored;
  b.activations = x.nb * w.rows * x.h * x.z.act;
  b.kv_requests = x.nb * x.g * 2;
  b.kv_in = b.has_cache && !w.prefill ? x.nb * x.g * 2 * x.cached * x.kv_dim * x.z.kv : 0;
  b.kv_out = b.has_cache ? x.nb * x.g * w.new_tokens * 2 * x.kv_dim * x.z.kv : 0;
  b.kv_out_disk = b.kv_requests * std::max(w.new_tokens * x.kv_dim * x.z.kv, 4096.0);
  return b;
}

CostTerm load_term(const CostContext& x, const PhaseWork& w, const StepBytes& b) {
  const Links& l = x.links;
  CostTerm load{"load", {}};
  load.parts.push_back({"weights", moved(b.weights, kWc, kWd, l.load_w)});
  if (b.has_cache && !w.prefill) {
    Affine a = moved(b.kv_in, kCc, kCd, l.load_kv);
    a.add(kCd, b.kv_requests * x.hw.disk_read_request_s);
    load.parts.push_back({"cache", a});
  }
  if (b.loads_act) {
    load.parts.push_back({"activations", moved(b.activations, kHc, kHd, l.load_act)});
  }
  return load;
}

CostTerm store_term(const CostContext& x, const StepBytes& b) {
  const Links& l = x.links;
  CostTerm store{"store", {}};
  if (b.has_cache) {
    Affine a = moved(b.kv_out, kCc, kCd, l.store_kv);
    a.add(kCd,
          b.kv_requests * x.hw.disk_write_request_s + (b.kv_out_disk - b.kv_out) * l.disk_w_cache);
    store.parts.push_back({"cache", a});
  }
  if (b.stores_act) {
    store.parts.push_back({"activations", moved(b.activations, kHc, kHd, l.store_act)});
  }
  return store;
}

// The one device serves the load and the store stream.
Affine disk_seconds(const CostContext& x, const PhaseWork& w, const StepBytes& b) {
  const Links& l = x.links;
  Affine disk;
  disk.add(kWd, b.weights * l.disk_r);
  if (b.has_cache && !w.prefill) {
    disk.add(kCd, b.kv_in * l.disk_r + b.kv_requests * x.hw.disk_read_request_s);
  }
  if (b.loads_act) disk.add(kHd, b.activations * l.disk_r);
  if (b.has_cache) {
    disk.add(kCd, b.kv_out_disk * l.disk_w_cache + b.kv_requests * x.hw.disk_write_request_s);
  }
  if (b.stores_act) disk.add(kHd, b.activations * l.disk_w);
  return disk;
}

Affine gemm_seconds(const CostContext& x, const PhaseWork& w, const StageKindInfo& k) {
  const HardwareProfile& hw = x.hw;
  Affine gemm;
  // Per-row GEMMs run with `rows` rows, the head's with one per sequence; on the CPU the rate
  // falls with few rows (the weights stream from memory).
  const double row_rate = x.z.gpu ? w.gemm_rate : hw.cpu_gemm_rate_gflops(w.rows) * kGB;
  const double seq_rate = x.z.gpu ? w.gemm_rate : hw.cpu_gemm_rate_gflops(x.g) * kGB;
  gemm.constant = w.rows * k.gemm_flops_per_row / row_rate + x.g * k.gemm_flops_per_seq / seq_rate;
  gemm.constant *= x.nb;
  if (x.z.gpu && hw.gpu_mem_gbps > 0) {  // each GPU batch reads the stage's fp16 weights
    gemm.constant =
        std::max(gemm.constant, x.nb * static_cast<double>(k.numel) * 2 / (hw.gpu_mem_gbps * kGB));
  }
  return gemm;
}

// HeteGen's two sides of the split layers; no parts when no alpha is set.
struct SplitTerms {
  CostTerm cpu{"hetegen cpu", {}};
  CostTerm gpu{"hetegen gpu", {}};
};

// HeteGen on a GPU node: of the CPU-tier weights, only the GPU's columns cross PCIe and run on
// the GPU; the CPU's run alongside. The split layer takes at least
// max(alpha * cpu, (1 - alpha) * (pcie + gpu)), the GPU's transfer and GEMM in sequence. Takes
// the moved columns out of the weight load and the GEMM.
SplitTerms hetegen_split(const CostContext& x, const PhaseWork& w, const StageKindInfo& k,
                         Affine& weight_load, Affine& gemm) {
  SplitTerms out;
  Affine cpu_cols, gpu_cols;
  const LinearAlphas& alphas = w.prefill ? x.s.hetegen.prefill : x.s.hetegen.decode;
  for (const LinearPart& l : split_linears(x.c, k.kind, alphas)) {
    if (l.alpha <= 0) continue;
    const SplitTimes t = split_times(x.hw, w.phase, w.rows, x.nb, l.elements, x.z.w_stored, true);
    cpu_cols.add(kWc, l.alpha * t.cpu_s);
    gpu_cols.add(kWc, (1 - l.alpha) * (t.pcie_s + t.gpu_s));
    weight_load.add(kWc, -l.alpha * t.pcie_s);
    gemm.add(kWc, -l.alpha * t.gpu_s);
  }
  if (cpu_cols.coef[kWc] > 0) {
    out.cpu.parts.push_back({"cpu columns", cpu_cols});
    out.gpu.parts.push_back({"gpu columns: transfer then gemm", gpu_cols});
  }
  return out;
}

// The CPU backend's compute-stream work besides GEMMs and attention, all on the same cores.
void add_cpu_overheads(const CostContext& x, const PhaseWork& w, const StageKindInfo& k,
                       const StepBytes& b, CostTerm& compute) {
  const HardwareProfile& hw = x.hw;
  // Layer norms, biases, activation, residual adds and cache appends pass over each row a few
  // times at memory speed.
  const double copy = per_byte(hw.host_copy_gbps);
  Affine passes;
  passes.constant = x.nb * w.rows * k.elementwise_floats_per_row * 4 * copy;
  compute.parts.push_back({"elementwise", passes});
  // What the load and store streams copy between the tiers and the working buffers.
  Affine moves;
  const double act_moved = b.activations * ((b.loads_act ? 1 : 0) + (b.stores_act ? 1 : 0));
  moves.add(kCc, (b.kv_in + b.kv_out) * copy).add(kCd, (b.kv_in + b.kv_out) * copy);
  moves.add(kHc, act_moved * copy).add(kHd, act_moved * copy);
  compute.parts.push_back({"tier copies", moves});
  // The kernel's CPU time for the disk traffic.
  Affine io_cpu;
  const double s_per_byte = hw.disk_cpu_s_per_gb / kGB;
  io_cpu.add(kWd, b.weights * s_per_byte);
  io_cpu.add(kCd, (b.kv_in + std::max(b.kv_out, b.kv_requests * 4096.0)) * s_per_byte);
  io_cpu.add(kHd, act_moved * s_per_byte);
  compute.parts.push_back({"disk i/o cpu", io_cpu});
}

Affine attention_seconds(const CostContext& x, const PhaseWork& w) {
  const HardwareProfile& hw = x.hw;
  const double flops = x.nb * x.g * w.attn_flops;
  Affine attn;
  if (w.prefill) {
    // Prefill attention runs as GEMMs (cuBLAS or OpenBLAS), on the GPU tier's device.
    attn.constant =
        flops / ((x.z.gpu ? hw.gpu_attention_gflops : hw.cpu_gemm_rate_gflops(x.prompt)) * kGB);
  } else if (!x.z.gpu) {
    attn.constant = flops / (hw.cpu_attention_gflops * kGB);
  } else if (x.s.cpu_cache_compute) {
    attn.add(kCg, flops / (hw.attention_decode_gflops() * kGB));
    const double cpu = flops / (hw.cpu_attention_gflops * kGB);
    attn.add(kCc, cpu).add(kCd, cpu);
  } else {
    attn.constant = flops / (hw.attention_decode_gflops() * kGB);
    if (hw.gpu_mem_gbps > 0) {  // the cache is read once per step
      attn.constant = std::max(attn.constant, x.nb * x.g * 2 * (x.cached + 1) * x.kv_dim * x.z.kv /
                                                  (hw.gpu_mem_gbps * kGB));
    }
  }
  return attn;
}

StageCost stage_cost(const CostContext& x, const PhaseWork& w, const StageKindInfo& k) {
  const bool gpu = x.z.gpu;
  const StepBytes b = step_bytes(x, w, k);
  CostTerm load = load_term(x, w, b);
  const Affine disk = disk_seconds(x, w, b);
  CostTerm compute{"compute", {}};
  if (!gpu) {
    const double fp32_bytes = static_cast<double>(k.numel) * 4;
    Affine expand;
    expand.add(kWc, fp32_bytes * x.links.expand_s_per_byte)
        .add(kWd, fp32_bytes * x.links.expand_s_per_byte);
    compute.parts.push_back({"expand weights", expand});
  }
  Affine gemm = gemm_seconds(x, w, k);
  SplitTerms split;
  if (gpu) split = hetegen_split(x, w, k, load.parts.front().second, gemm);
  compute.parts.push_back({"gemm", gemm});
  if (!gpu) add_cpu_overheads(x, w, k, b, compute);
  if (b.has_cache) compute.parts.push_back({"attention", attention_seconds(x, w)});

  StageCost sc;
  sc.stage = k.name;
  sc.phase = w.phase;
  sc.repeats = static_cast<double>(k.count) * w.steps;
  sc.terms = {load, compute, store_term(x, b), CostTerm{"disk", {{"reads and writes", disk}}}};
  if (!split.cpu.parts.empty()) {
    sc.terms.push_back(std::move(split.cpu));
    sc.terms.push_back(std::move(split.gpu));
  }
  if (!gpu) {
    // Measured on the CPU backend (2 cores): disk transfers barely overlap the compute (their
    // DMA, completions and staging share the cores and the memory bus, and cache requests queue
    // behind prefetched weights), so disk time adds to compute time.
    CostTerm serial{"compute + disk", compute.parts};
    serial.parts.push_back({"disk", disk});
    sc.terms.push_back(std::move(serial));
  }
  return sc;
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

HeteGenAlpha balanced_alphas(const HardwareProfile& hw, const ModelConfig& c, const CostShape& s) {
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
    a = {alpha(h * static_cast<double>(c.q_dim())), alpha(f * h), alpha(h * f)};
  }
  return out;
}

std::vector<StageCost> stage_costs(const HardwareProfile& hw, const ModelConfig& c,
                                   const CostShape& s) {
  STRATA_CHECK(
      s.prompt_len >= 1 && s.gen_len >= 1 && s.gpu_batch_size >= 1 && s.num_gpu_batches >= 1,
      "cost model: bad shape");
  STRATA_INPUT_CHECK(!hw.has_gpu || !s.hetegen.any() || hw.cpu_gemm_rate_gflops(1) > 0,
                     "a HeteGen alpha > 0 needs cpu_gemm_gflops (the CPU's GEMM rate) in the "
                     "hardware profile '",
                     hw.name, "'");
  const CostContext x = context_of(hw, c, s);
  std::vector<StageCost> out;
  for (const Phase phase : {Phase::kPrefill, Phase::kDecode}) {
    const PhaseWork w = phase_work(x, phase);
    if (w.steps <= 0) continue;
    for (const StageKindInfo& k : stage_kinds(c, s.sep_layer)) out.push_back(stage_cost(x, w, k));
  }
  return out;
}

MemoryModel memory_model(const HardwareProfile& hw, const ModelConfig& c, const CostShape& s,
                         const Residency& r) {
  const Sizes z = sizes_of(hw, c, s);
  const double h = static_cast<double>(c.hidden_size);
  const double g = static_cast<double>(s.gpu_batch_size);
  const double nb = static_cast<double>(s.num_gpu_batches);
  const double prompt = static_cast<double>(s.prompt_len);
  const double capacity = prompt + static_cast<double>(s.gen_len);
  double weights = 0, max_stage = 0;
  for (const auto& l : stage_layouts(c, s.sep_layer)) {
    weights += static_cast<double>(l.numel);
    max_stage = std::max(max_stage, static_cast<double>(l.numel));
  }
  const double kv = static_cast<double>(c.kv_dim());
  const double kv_block = g * 2 * capacity * kv;  // one (layer, GPU batch) cache block, elements
  const double cache = static_cast<double>(c.n_layers) * nb * kv_block;
  const double act_block = g * prompt * h;
  const double acts = nb * act_block;
  const double block = static_cast<double>(s.block());
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
    const double qd = static_cast<double>(c.q_dim());
    const double per_row = h + 2 * qd + 2 * kv + static_cast<double>(c.mlp_width()) + e;
    gpu.constant += (act_block / h * per_row + g * (h + e) + block * c.vocab_size) * 4;
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
    gpu.constant +=
        (g * prompt * (6 * h + static_cast<double>(c.mlp_width())) + g * nh * prompt * prompt) *
        z.act;
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
