#include "planner/cpu_probe.h"

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "kernels/cpu/ops.h"

namespace strata {
namespace {

// Best of `repetitions` timed runs after one untimed warm-up (caches, page faults, threads).
template <typename F>
double best_seconds(int repetitions, F&& run) {
  double best = 1e30;
  for (int r = 0; r < repetitions + 1; ++r) {
    const auto begin = std::chrono::steady_clock::now();
    run();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
    if (r > 0) best = std::min(best, s);
  }
  return best;
}

}  // namespace

double measure_sgemm_gflops(int n, int repetitions) {
  const size_t size = static_cast<size_t>(n) * n;
  std::vector<float> a(size, 0.5f), b(size, 0.25f), c(size);
  const double best = best_seconds(repetitions, [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a.data(), n, b.data(), n,
                0.0f, c.data(), n);
  });
  return 2.0 * n * static_cast<double>(n) * n / best / 1e9;
}

double measure_sgemm_rows_gflops(int64_t rows, int n) {
  constexpr size_t kWeightBytes = 96ull << 20;  // past the last-level cache
  const size_t nn = static_cast<size_t>(n) * static_cast<size_t>(n);
  const size_t count = std::max<size_t>(1, kWeightBytes / (nn * 4));
  std::vector<float> weights(count * nn, 0.25f);
  std::vector<float> x(static_cast<size_t>(rows) * static_cast<size_t>(n), 0.5f);
  std::vector<float> y(x.size());
  const double best = best_seconds(2, [&] {
    for (size_t i = 0; i < count; ++i) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), n, n, 1.0f,
                  x.data(), n, weights.data() + i * nn, n, 0.0f, y.data(), n);
    }
  });
  return 2.0 * static_cast<double>(rows) * static_cast<double>(nn) * static_cast<double>(count) / best / 1e9;
}

double measure_copy_gbps(uint64_t size_bytes) {
  std::vector<uint8_t> src(size_bytes, 1), dst(size_bytes);
  const double best = best_seconds(3, [&] { std::memcpy(dst.data(), src.data(), size_bytes); });
  return static_cast<double>(size_bytes) / best / 1e9;
}

double measure_expand_gbps(uint64_t numel) {
  std::vector<uint16_t> src(numel, 0x3c00);  // 1.0 in fp16
  std::vector<float> dst(numel);
  const double best =
      best_seconds(3, [&] { convert_to_f32(DType::kF16, src.data(), dst.data(), numel); });
  return static_cast<double>(numel) * 4 / best / 1e9;
}

double measure_decode_attention_gflops(int64_t hidden, int64_t n_heads, int64_t context,
                                       int64_t sequences) {
  const int64_t keys = context + 1;
  std::vector<float> q(static_cast<size_t>(sequences * hidden), 0.01f);
  std::vector<float> kv(static_cast<size_t>(sequences * 2 * keys * hidden), 0.02f);
  std::vector<float> out(q.size());
  const double best = best_seconds(3, [&] {
    for (int64_t s = 0; s < sequences; ++s) {
      const float* k = kv.data() + s * 2 * keys * hidden;
      cpu::attention(q.data() + s * hidden, hidden, k, k + keys * hidden, hidden,
                     out.data() + s * hidden, context, 1, n_heads, hidden / n_heads);
    }
  });
  return 4.0 * static_cast<double>(hidden) * static_cast<double>(keys) * sequences / best / 1e9;
}

}  // namespace strata
