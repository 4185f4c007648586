// Plain loops, written for clarity: the yardstick the fast kernels are tested against.
#pragma once

#include <cstdint>

namespace strata::cpu::ref {

void linear(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t n,
            int64_t k);
void layer_norm(const float* x, const float* gamma, const float* beta, float* y, int64_t rows,
                int64_t dim, float eps);
void rms_norm(const float* x, const float* weight, float* y, int64_t rows, int64_t dim, float eps);
void rotary(float* x, int64_t ld, int64_t rows, const int64_t* positions, int64_t n_heads,
            int64_t head_dim, const float* inv_freq);
void gelu(float* x, int64_t n);
void silu_mul(float* gate, const float* up, int64_t n);
void attention(const float* q, int64_t ld_q, const float* k, const float* v, int64_t ld_kv,
               float* out, int64_t start, int64_t n_new, int64_t n_heads, int64_t n_kv_heads,
               int64_t head_dim);
void log_softmax(const float* logits, float* out, int64_t n);

}  // namespace strata::cpu::ref
