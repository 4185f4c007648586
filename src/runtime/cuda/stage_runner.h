// The CPU engine's stage math (runtime/stages.h: embed_forward, decoder_forward,
// head_forward) on device buffers. Weights are a stage's flat buffer in fp16, in its StageLayout's
// order (read_stage with DType::kF16); hidden rows and the KV cache are fp16 as well, so every
// GEMM is cuBLAS with fp16 inputs and fp32 accumulation; logits are fp32. Plain C++: no CUDA
// header, every launch async on the caller's stream, nothing synchronises the device.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "kernels/cuda/ops.h"
#include "model/model_config.h"
#include "runtime/stages.h"

namespace strata::cuda {

// One decoder layer's cache in KvBlock's layout, fp16: slot s holds keys then values, each
// [capacity, hidden]. The cached lengths are the host's (StageRunner::begin_step takes them).
struct DeviceKvBlock {
  Fp16* base = nullptr;
  int64_t capacity = 0;
  int64_t hidden = 0;
  Fp16* keys(int64_t slot) const { return base + slot * 2 * capacity * hidden; }
  Fp16* values(int64_t slot) const { return keys(slot) + capacity * hidden; }
  static int64_t numel(int64_t n_slots, int64_t capacity, int64_t hidden) {
    return n_slots * 2 * capacity * hidden;
  }
};

// What one runner's scratch is sized for.
struct StageRunnerLimits {
  int64_t max_rows = 0;  // packed rows (new tokens) in one step
  int64_t max_seqs = 0;  // sequences in one step
  int64_t capacity = 0;  // cache positions per slot
  int64_t batches = 1;   // GPU batches of one step, each with its step metadata on the device
};

// HeteGen's split of one linear layer: the host computes output columns [0, split) from its own
// copy of those weight rows while the device computes the rest, and the two are joined on the
// device. compute(x, y, m) fills y[m, split] (bias and activation applied) from x[m, k], both
// fp16 in pinned memory; it runs in stream order on the host and must not throw.
struct HostLinear {
  int64_t split = 0;  // 0: the device computes every column
  std::function<void(const Fp16* x, Fp16* y, int64_t m)> compute;
};
// Which linears of a stage are split, by the tensor name without ".weight".
using HostLinearPlan = std::function<HostLinear(const StageLayout&, const std::string& name)>;

// Runs one step's stages: begin_step per GPU batch (uploads its packed tokens, row offsets,
// starts and slots once), then per stage and batch use_batch, embed, every decoder / attention /
// MLP stage in order, head. A step whose sequences all
// add one token takes the split-KV decode attention, any other the packed prefill one.
class StageRunner {
 public:
  // Device bytes of scratch for these limits: activations, decode partials, step metadata.
  static size_t workspace_bytes(const ModelConfig& config, const StageRunnerLimits& limits);
  // Pinned bytes the runner allocates itself: each batch's metadata, the rotary frequencies.
  static size_t host_meta_bytes(const ModelConfig& config, const StageRunnerLimits& limits);

  // The scratch comes out of `pool` and the metadata's pinned slots out of `pinned` once, here;
  // blas must outlive the runner.
  StageRunner(const ModelConfig& config, const StageRunnerLimits& limits, DevicePool& pool,
              PinnedArena& pinned, Blas& blas);
  StageRunner(const StageRunner&) = delete;
  StageRunner& operator=(const StageRunner&) = delete;

  // Packs GPU batch k's `steps` as pack_rows does (same checks) against the cached lengths
  // before the step, indexed by slot, into k's pinned slot and uploads it to k's device
  // metadata on `stream`, once per step; k becomes the current batch. Returns the packed row
  // count. The pinned slot is rewritten only after its last upload is done.
  int64_t begin_step(int64_t k, std::span<const SequenceStep> steps,
                     std::span<const int64_t> lengths, const Stream& stream);
  // Makes batch k, begun this step, the one the stage calls below run on.
  void use_batch(int64_t k);
  int64_t rows() const { return step().rows; }
  int64_t n_seqs() const { return step().n_seqs; }
  bool decode_only() const { return step().decode_only; }  // every sequence adds one token

  // hidden: [rows, hidden_size] fp16, written by embed and updated in place by decoder.
  void embed(const StageLayout& layout, const Fp16* weights, Fp16* hidden, const Stream& stream);
  // A decoder, attention or MLP stage; kv is used by the first two and gets the new keys and
  // values at positions lengths[slot].. (the caller advances lengths after the step).
  void decoder(const StageLayout& layout, const Fp16* weights, const DeviceKvBlock& kv,
               Fp16* hidden, const Stream& stream);
  // decoder() in two halves around an attention computed elsewhere (on the CPU, where the cache
  // lives): project_qkv leaves q (scaled), k and v in q() / k() / v() ([rows, q_dim], [rows,
  // kv_dim] fp16); the
  // caller writes the attention output to attention_out(), then finish_decoder applies out_proj,
  // the residual, and the MLP when the stage has one.
  void project_qkv(const StageLayout& layout, const Fp16* weights, const Fp16* hidden,
                   const Stream& stream);
  const Fp16* q() const { return q_; }
  const Fp16* k() const { return k_; }
  const Fp16* v() const { return v_; }
  Fp16* attention_out() const { return attn_; }
  void finish_decoder(const StageLayout& layout, const Fp16* weights, Fp16* hidden,
                      const Stream& stream);

  // Device and pinned bytes split linears need (set_host_linears takes them).
  static size_t host_linear_device_bytes(const ModelConfig& config,
                                         const StageRunnerLimits& limits);
  static size_t host_linear_pinned_bytes(const ModelConfig& config,
                                         const StageRunnerLimits& limits);
  // From now on the linears `plan` splits run on both sides: the host part on a side stream (x
  // down, compute, y up) while the device computes its columns from weight rows [split, n).
  void set_host_linears(HostLinearPlan plan, DevicePool& pool, PinnedArena& pinned);

  // Logits [n_seqs, vocab_size] (fp32) after each sequence's last row.
  void head(const StageLayout& layout, const Fp16* weights, const Fp16* hidden, float* logits,
            const Stream& stream);

 private:
  const int32_t* meta(int64_t offset) const { return step().device + offset; }
  void check_decoder(const StageLayout& layout) const;
  void norm(const StageLayout& layout, const Fp16* weights, const std::string& name, const Fp16* in,
            Fp16* out, const Stream& stream);
  // LayerNorm or RMSNorm (the config says) over `rows` rows.
  void norm_rows(const StageLayout& layout, const Fp16* weights, const std::string& name,
                 const Fp16* in, Fp16* out, int64_t rows, const Stream& stream);
  void lin(const StageLayout& layout, const Fp16* weights, const std::string& name, const Fp16* in,
           Fp16* out, int64_t n, int64_t k, Activation act, const Stream& stream);
  void mlp(const StageLayout& layout, const Fp16* weights, Fp16* hidden, const Stream& stream);

  ModelConfig config_;
  StageRunnerLimits limits_;
  Blas* blas_;
  Block memory_;
  Block host_meta_;
  Fp16 *words_ = nullptr, *x_ = nullptr, *q_ = nullptr, *k_ = nullptr, *v_ = nullptr;
  Fp16 *attn_ = nullptr, *mid_ = nullptr, *last_ = nullptr, *projected_ = nullptr;
  void* decode_workspace_ = nullptr;
  size_t decode_workspace_bytes_ = 0;
  // One GPU batch's step: its metadata on the device (tokens, row offsets, starts, slots,
  // lengths, last rows, positions) and in pinned memory, and what the launches need of it.
  struct BatchStep {
    int32_t* device = nullptr;
    int32_t* host = nullptr;
    Event uploaded{false};
    int64_t rows = 0, n_seqs = 0, max_new = 0, max_len = 0;
    bool decode_only = false;
  };
  std::vector<BatchStep> batches_;
  const BatchStep* step_ = nullptr;  // the current batch (use_batch)
  const BatchStep& step() const;
  float* inv_freq_ = nullptr;  // device: rotary frequencies (rotary models)
  std::vector<float> host_inv_freq_;
  bool inv_freq_uploaded_ = false;
  // Split linears (set_host_linears).
  HostLinearPlan host_plan_;
  Stream side_;
  Event x_ready_{false}, host_done_{false};
  Block host_device_, host_pinned_;
  Fp16 *x_host_ = nullptr, *y_host_ = nullptr, *y_host_part_ = nullptr, *y_device_part_ = nullptr;
};

}  // namespace strata::cuda
