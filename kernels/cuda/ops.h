// Host-callable launchers of the CUDA kernels, all async on the stream they are given. Matrices
// are row-major as in kernels/cpu/ops.h; a weight is [out, in]. Tensors are fp16 (Fp16 holds the
// bits) and math accumulates in fp32; logits are fp32. No CUDA header leaks from here.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "kernels/cuda/attention_sizes.h"
#include "kernels/cuda/runtime.h"

namespace strata::cuda {

using Fp16 = uint16_t;  // IEEE half bits in device memory

inline constexpr float kLayerNormEps = 1e-5f;
inline constexpr int kPositionOffset = 2;  // OPT's learned positions start at row 2

// A cuBLAS handle bound to one stream at a time.
class Blas {
 public:
  Blas();
  ~Blas();
  Blas(const Blas&) = delete;
  Blas& operator=(const Blas&) = delete;
  void* handle() const { return handle_; }
  // GEMMs use `bytes` at `workspace` (device memory the caller keeps) instead of a workspace
  // cuBLAS would cudaMalloc behind the engine's pool at the first GEMM.
  void set_workspace(void* workspace, size_t bytes);
  // Device memory the caller keeps where linear() writes its fp32 GEMM output, a block of rows
  // at a time, before bias and activation round it to fp16 once (an fp16 GEMM output would be
  // rounded twice, and a sum past 65504 would be inf before the bias). Needed by a linear with a
  // bias or an activation; output_scratch_bytes sizes it for rows of up to `widest` columns.
  void set_output_scratch(void* scratch, size_t bytes);
  // Inline: the memory plan needs it in every build. At most 32 MiB, in blocks of 64 rows (GEMM
  // tiles stay whole), at least 64 rows.
  static size_t output_scratch_bytes(int64_t max_rows, int64_t widest) {
    const int64_t row_bytes = std::max<int64_t>(widest, 1) * 4;
    const int64_t fit = std::max<int64_t>(64, (int64_t{32} << 20) / row_bytes / 64 * 64);
    return static_cast<size_t>(std::min(std::max<int64_t>(max_rows, 1), fit) * row_bytes);
  }
  float* output_scratch() const { return scratch_; }
  size_t output_scratch_size() const { return scratch_bytes_; }

 private:
  void* handle_ = nullptr;
  float* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
};

enum class Activation { kNone, kRelu, kGelu };  // GELU is the exact (erf) one, as HF's "gelu"

// y[m, n] = act(x[m, k] * w[n, k]^T + bias[n]); bias may be null. cuBLAS, fp32 accumulation;
// with a bias or an activation, through the output scratch and rounded once.
void linear(Blas& blas, const Fp16* x, const Fp16* w, const Fp16* bias, Fp16* y, int64_t m,
            int64_t n, int64_t k, Activation act, const Stream& stream);
// Rows of y per block of linear()'s output scratch: whole multiples of 64 where more fit;
// checks that the scratch was set and holds one row of n.
int64_t linear_block_rows(const Blas& blas, int64_t m, int64_t n);
// The same with fp32 output (the LM head's logits), no activation.
void linear(Blas& blas, const Fp16* x, const Fp16* w, const Fp16* bias, float* y, int64_t m,
            int64_t n, int64_t k, const Stream& stream);
// y[m, n] = act(y + bias[n]) in place; bias may be null.
void bias_activation(Fp16* y, const Fp16* bias, int64_t m, int64_t n, Activation act,
                     const Stream& stream);

void layer_norm(const Fp16* x, const Fp16* gamma, const Fp16* beta, Fp16* y, int64_t rows,
                int64_t dim, float eps, const Stream& stream);
// Hugging Face's RMSNorm, in fp32 (kernels/cpu/ops.h's rms_norm).
void rms_norm(const Fp16* x, const Fp16* weight, Fp16* y, int64_t rows, int64_t dim, float eps,
              const Stream& stream);
// Rotary positions in place, as kernels/cpu/ops.h's rotary: row r (stride ld) of n_heads heads is
// rotated by positions[r] * inv_freq (device arrays: rows int32, head_dim / 2 floats).
void rotary(Fp16* x, int64_t ld, int64_t rows, const int32_t* positions, int64_t n_heads,
            int64_t head_dim, const float* inv_freq, const Stream& stream);
// SwiGLU's product in place: gate[i] = silu(gate[i]) * up[i].
void silu_mul(Fp16* gate, const Fp16* up, int64_t n, const Stream& stream);
void add_inplace(Fp16* y, const Fp16* x, int64_t n, const Stream& stream);
void convert(const float* src, Fp16* dst, int64_t n, const Stream& stream);
void convert(const Fp16* src, float* dst, int64_t n, const Stream& stream);

// OPT embedding of `rows` tokens in n_seqs sequences; all int32 arrays are in device memory.
// Sequence s owns rows [row_offsets[s], row_offsets[s + 1]); its first pad_left[s] rows are left
// padding (written as zeros); the others continue it after starts[s] cached tokens, so row i's
// position id is starts[s] + (i - pad_left[s]) + kPositionOffset. pad_left may be null.
// out[r] = (token_table ? token_table[tokens[r]] : out[r]) + position_table[position] - with
// token_table null this adds positions after OPT-350m's project_in.
void embed(const Fp16* token_table, const Fp16* position_table, const int32_t* tokens,
           const int32_t* row_offsets, const int32_t* starts, const int32_t* pad_left,
           int64_t n_seqs, int64_t rows, int64_t dim, Fp16* out, const Stream& stream);

// Causal prefill attention, flash style (online softmax over key tiles). n_seqs sequences, each
// with queries at positions [start, start + n_new) and keys / values at [0, start + n_new); q, k,
// v rows have strides ld_q / ld_kv, sequences seq_stride_q / seq_stride_kv elements apart; head h
// is columns [h * head_dim, (h + 1) * head_dim) of q and out, and reads key / value head
// h / (n_heads / n_kv_heads) (grouped-query attention; every attention launcher here does). q is
// already scaled by 1 / sqrt(head_dim). key_begin (device, may be null) masks keys below
// key_begin[s] (left padding); queries below it get zeros. head_dim <= 128.
void attention_prefill(const Fp16* q, int64_t ld_q, int64_t seq_stride_q, const Fp16* k,
                       const Fp16* v, int64_t ld_kv, int64_t seq_stride_kv, Fp16* out,
                       int64_t start, int64_t n_new, int64_t n_seqs, int64_t n_heads,
                       int64_t n_kv_heads, int64_t head_dim, const int32_t* key_begin,
                       const Stream& stream);

// Whether the prefill launchers take the tensor-core kernel (mma.sync, sm_80+) for these
// arguments: head_dim 64 or 128, row strides in multiples of 8 elements, 16-byte aligned
// pointers. Otherwise they run the fp32 CUDA-core kernel; both compute the same attention.
bool prefill_on_tensor_cores(int64_t head_dim, int64_t ld_q, int64_t ld_kv, int64_t seq_stride_q,
                             int64_t seq_stride_kv, const void* q, const void* k, const void* v,
                             const void* out);

// The engine's packed batch (runtime/stages.h): sequence s has n_s = row_offsets[s + 1] -
// row_offsets[s] queries, rows row_offsets[s].. of q / out (stride ld_q), at positions
// [starts[s], starts[s] + n_s); its keys / values (new ones already appended) are cache slot
// slots[s]: rows k + slots[s] * seq_stride_kv + j * ld_kv. max_new >= every n_s. All int32 arrays
// are device memory; slots and key_begin may be null (slot s; no padding).
void attention_prefill_packed(const Fp16* q, int64_t ld_q, const int32_t* row_offsets,
                              const int32_t* starts, const int32_t* slots, const Fp16* k,
                              const Fp16* v, int64_t ld_kv, int64_t seq_stride_kv, Fp16* out,
                              int64_t n_seqs, int64_t max_new, int64_t n_heads, int64_t n_kv_heads,
                              int64_t head_dim, const int32_t* key_begin, const Stream& stream);

// One query per sequence against its KV cache: sequence s attends to keys [key_begin[s],
// lengths[s]) of cache slot slots[s] (device arrays; slots and key_begin may be null: slot s, no
// padding), max_len >= every length. q / out row s at s * ld_q / s * ld_out; cache row j of slot
// c at c * seq_stride_kv + j * ld_kv (KvBlock: k = base, v = base + capacity * hidden, stride
// 2 * capacity * hidden). Long contexts split over blocks and are combined; the workspace
// (attention_decode_workspace_bytes, attention_sizes.h) holds the partial results.
void attention_decode(const Fp16* q, int64_t ld_q, const Fp16* k_cache, const Fp16* v_cache,
                      int64_t ld_kv, int64_t seq_stride_kv, const int32_t* slots,
                      const int32_t* lengths, const int32_t* key_begin, int64_t max_len, Fp16* out,
                      int64_t ld_out, int64_t n_seqs, int64_t n_heads, int64_t n_kv_heads,
                      int64_t head_dim, void* workspace, size_t workspace_bytes,
                      const Stream& stream);

// Row-wise log-softmax of fp32 logits [rows, n].
void log_softmax(const float* logits, float* out, int64_t rows, int64_t n, const Stream& stream);
// tokens[r] = first index of the maximum of row r (as torch.argmax).
void argmax(const float* logits, int64_t rows, int64_t n, int32_t* tokens, const Stream& stream);
// tokens[r] = the token whose interval of the cumulative softmax(logits / temperature) holds
// uniforms[r] in [0, 1) (device array, drawn on the host from the sequence's seeded stream).
void sample_temperature(const float* logits, int64_t rows, int64_t n, float temperature,
                        const float* uniforms, int32_t* tokens, const Stream& stream);

// Group-wise quantisation of n contiguous values in groups of group_len (the KV cache, grouped
// along head_dim), byte for byte as kernels/cpu/quant.cpp's quantize() (up to the sign of a
// zero min when a group holds both +0 and -0).
void quantize(int bits, const float* src, int64_t n, int64_t group_len, void* groups,
              const Stream& stream);
void quantize(int bits, const Fp16* src, int64_t n, int64_t group_len, void* groups,
              const Stream& stream);
// Group-wise dequantisation (kernels/quant_format.h), bit for bit as kernels/cpu/quant.cpp:
// n contiguous values in groups of group_len...
void dequantize(int bits, const void* groups, int64_t n, int64_t group_len, float* dst,
                const Stream& stream);
void dequantize(int bits, const void* groups, int64_t n, int64_t group_len, Fp16* dst,
                const Stream& stream);
// ...and a [rows, cols] matrix grouped along rows (quantize_matrix's layout).
void dequantize_matrix(int bits, const void* groups, int64_t rows, int64_t cols, float* dst,
                       const Stream& stream);
void dequantize_matrix(int bits, const void* groups, int64_t rows, int64_t cols, Fp16* dst,
                       const Stream& stream);

// For the stage runner (stage_runner.h), in stage_kernels.cu.
// out[i] = table[indices[i]] for n rows of dim (device indices): token rows, last rows.
void gather_rows(const Fp16* table, const int32_t* indices, int64_t n, int64_t dim, Fp16* out,
                 const Stream& stream);
// y *= factor: OPT scales q after its bias, so the scale cannot ride in the GEMM's alpha.
void scale_inplace(Fp16* y, int64_t n, float factor, const Stream& stream);
// Appends a packed batch's new keys / values (rows row_offsets[s].. of k and v, width hidden) to
// cache slot slots[s] (null: slot s) at positions starts[s].. in KvBlock's layout: slot c's keys
// at cache + c * 2 * capacity * hidden, its values capacity * hidden after. Device int32 arrays.
void kv_append(const Fp16* k, const Fp16* v, const int32_t* row_offsets, const int32_t* starts,
               const int32_t* slots, int64_t n_seqs, int64_t rows, int64_t hidden, Fp16* cache,
               int64_t capacity, const Stream& stream);

// y[m, n] = x[m, k] * w^T + bias with w a 4-bit [n, k] matrix in quantize_matrix's layout,
// decoded on the fly (decode-time batches: it streams the weight once for all m rows).
inline constexpr int64_t kQ4LinearMaxRows = 16;
void q4_linear(const Fp16* x, const void* w_groups, const Fp16* bias, Fp16* y, int64_t m, int64_t n,
               int64_t k, const Stream& stream);

}  // namespace strata::cuda
