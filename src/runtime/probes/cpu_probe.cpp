#include "runtime/probes/cpu_probe.h"

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/cpu/gemm.h"
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
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
    if (r > 0) best = std::min(best, s);
  }
  return best;
}

}  // namespace

double measure_sgemm_gflops(int n, int repetitions) {
  const size_t size = static_cast<size_t>(n) * n;
  std::vector<float> a(size, 0.5f), b(size, 0.25f), c(size);
  // The bound is the faster of OpenBLAS and the GEMM the engine runs (gemm.h), so neither
  // library's rate can pass for the machine's.
  const double openblas = best_seconds(repetitions, [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a.data(), n, b.data(), n,
                0.0f, c.data(), n);
  });
  const double engine = best_seconds(
      repetitions, [&] { cpu::gemm_nt(a.data(), n, b.data(), n, c.data(), n, n, n, n); });
  return 2.0 * n * static_cast<double>(n) * n / std::min(openblas, engine) / 1e9;
}

double measure_sgemm_rows_gflops(int64_t rows, int hidden, bool blocked) {
  // A decoder layer's GEMMs (q, k, v, out: h x h; fc1: 4h x h; fc2: h x 4h), repeated over
  // enough copies that the weights stream from memory as a model's do: several times a server's
  // last-level cache (105 MB on a Sapphire Rapids VM) where the rows are few, so the GEMM is not
  // served from it; compute-bound row counts get fewer, to keep the run short.
  const size_t kWeightBytes = (rows <= 128 ? 768ull : 96ull) << 20;
  const int h = hidden, f = 4 * hidden;
  const int shapes[6][2] = {{h, h}, {h, h}, {h, h}, {h, h}, {f, h}, {h, f}};  // (n, k)
  const size_t layer = 8ull * static_cast<size_t>(h) * static_cast<size_t>(h) + 4ull * h * h;
  const size_t copies = std::max<size_t>(1, kWeightBytes / (layer * 4));
  std::vector<float> weights(copies * 12ull * h * h, 0.25f);
  if (blocked) {
    float* w = weights.data();
    for (size_t c = 0; c < copies; ++c) {
      for (const auto& [n, k] : shapes) {
        if (!cpu::can_block_weight(n, k)) return 0;
        cpu::block_weight(w, n, k);
        w += static_cast<size_t>(n) * static_cast<size_t>(k);
      }
    }
  }
  std::vector<float> x(static_cast<size_t>(rows) * static_cast<size_t>(f), 0.5f);
  std::vector<float> y(x.size());
  double flops = 0;
  const double best = best_seconds(2, [&] {
    flops = 0;
    const float* w = weights.data();
    for (size_t c = 0; c < copies; ++c) {
      for (const auto& [n, k] : shapes) {
        if (blocked) {
          cpu::gemm_nt_blocked(x.data(), k, w, y.data(), n, rows, n, k);
        } else {
          cpu::gemm_nt(x.data(), k, w, k, y.data(), n, rows, n, k);
        }
        w += static_cast<size_t>(n) * static_cast<size_t>(k);
        flops += 2.0 * static_cast<double>(rows) * n * k;
      }
    }
  });
  return flops / best / 1e9;
}

double measure_copy_gbps(uint64_t size_bytes) {
  std::vector<uint8_t> src(size_bytes, 1), dst(size_bytes);
  const double best = best_seconds(3, [&] { std::memcpy(dst.data(), src.data(), size_bytes); });
  return static_cast<double>(size_bytes) / best / 1e9;
}

double measure_read_gbps(uint64_t size_bytes) {
  constexpr int64_t kLanes = 64;
  const int64_t n = static_cast<int64_t>(size_bytes / 4);
  std::vector<float> data(static_cast<size_t>(n), 1.0f);
  const int threads = cpu::compute_threads();
  std::vector<double> sums(static_cast<size_t>(threads));
  const double best = best_seconds(3, [&] {
    cpu::for_ranges(n / kLanes, threads, [&](int64_t first, int64_t last) {
      // Independent partial sums, so the adds' latency does not bound the rate.
      float acc[kLanes] = {};
      for (int64_t i = first * kLanes; i < last * kLanes; i += kLanes) {
        for (int64_t l = 0; l < kLanes; ++l) acc[l] += data[static_cast<size_t>(i + l)];
      }
      float s = 0;
      for (const float a : acc) s += a;
      sums[static_cast<size_t>(first * threads * kLanes / n)] = s;  // kept: the loop must run
    });
  });
  STRATA_CHECK(sums[0] > 0, "read probe summed nothing");
  return static_cast<double>(n) * 4 / best / 1e9;
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
    cpu::for_sequences(sequences, 1, [&](int64_t s) {
      const float* k = kv.data() + s * 2 * keys * hidden;
      cpu::attention(q.data() + s * hidden, hidden, k, k + keys * hidden, hidden,
                     out.data() + s * hidden, context, 1, n_heads, n_heads, hidden / n_heads);
    });
  });
  return 4.0 * static_cast<double>(hidden) * static_cast<double>(keys) * sequences / best / 1e9;
}

}  // namespace strata
