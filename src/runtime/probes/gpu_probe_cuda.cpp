// The GPU probe over the engine's own kernels (only built with CUDA or its host emulation).
#include "runtime/probes/gpu_probe_cuda.h"

#include "kernels/cuda/ops.h"
#include "kernels/cuda/runtime.h"

#include <vector>

namespace strata {
namespace {

using cuda::Fp16;

// Inputs of ~1.06 (0x3C3C): finite through every kernel; timings do not depend on values.
cuda::DeviceBuffer filled(size_t bytes, const cuda::Stream& stream) {
  cuda::DeviceBuffer b(bytes);
  cuda::fill_bytes(b.data(), 0x3C, bytes, stream);
  return b;
}

double gflops(double flops, double ms) {
  return flops / (ms * 1e-3) / 1e9;
}

}  // namespace

GpuFigures measure_cuda_gpu(int index, bool quick, bool links_only) {
  cuda::set_device(index);
  GpuFigures g;
  g.mem_bytes = cuda::device_free_bytes();
  cuda::Stream s;
  const int reps = quick ? 3 : 10;
  {
    const size_t bytes = quick ? size_t{64} << 20 : size_t{256} << 20;
    cuda::PinnedArena arena(bytes);
    cuda::Block host = arena.allocate(bytes);
    cuda::DeviceBuffer a = filled(bytes, s), b(bytes);
    g.h2d_gbps =
        bytes /
        (cuda::median_ms(s, reps, [&] { cuda::copy_h2d(a.data(), host.data(), bytes, s); }) * 1e6);
    g.d2h_gbps =
        bytes /
        (cuda::median_ms(s, reps, [&] { cuda::copy_d2h(host.data(), a.data(), bytes, s); }) * 1e6);
    g.mem_gbps =
        2.0 * bytes /
        (cuda::median_ms(s, reps, [&] { cuda::copy_d2d(b.data(), a.data(), bytes, s); }) * 1e6);
  }
  if (links_only) return g;
  cuda::Blas blas;
  const int64_t h = quick ? 1024 : 4096;
  {
    cuda::DeviceBuffer x = filled(h * h * 2, s), w = filled(4 * h * h * 2, s), y(4 * h * h * 2);
    g.gemm_gflops = gflops(2.0 * h * h * h, cuda::median_ms(s, reps, [&] {
                             cuda::linear(blas, x.as<Fp16>(), w.as<Fp16>(), nullptr, y.as<Fp16>(),
                                          h, h, h, cuda::Activation::kNone, s);
                           }));
    const int64_t rows = 32;
    g.gemm_decode_gflops =
        gflops(2.0 * rows * 4 * h * h, cuda::median_ms(s, reps, [&] {
                 cuda::linear(blas, x.as<Fp16>(), w.as<Fp16>(), nullptr, y.as<Fp16>(), rows, 4 * h,
                              h, cuda::Activation::kNone, s);
               }));
  }
  const int64_t head_dim = 128, heads = h / head_dim;
  {
    const int64_t seqs = 4, len = quick ? 256 : 512;
    cuda::DeviceBuffer q = filled(seqs * len * h * 2, s), k = filled(seqs * len * h * 2, s);
    cuda::DeviceBuffer v = filled(seqs * len * h * 2, s), out(seqs * len * h * 2);
    const double flops = seqs * 4.0 * h * len * (len + 1) / 2;
    g.attention_gflops = gflops(
        flops, cuda::median_ms(s, reps, [&] {
          cuda::attention_prefill(q.as<Fp16>(), h, len * h, k.as<Fp16>(), v.as<Fp16>(), h, len * h,
                                  out.as<Fp16>(), 0, len, seqs, heads, heads, head_dim, nullptr, s);
        }));
  }
  {
    const int64_t seqs = 32, len = quick ? 512 : 2048;
    cuda::DeviceBuffer q = filled(seqs * h * 2, s), out(seqs * h * 2);
    cuda::DeviceBuffer k = filled(seqs * len * h * 2, s), v = filled(seqs * len * h * 2, s);
    std::vector<int32_t> lengths(static_cast<size_t>(seqs), static_cast<int32_t>(len));
    cuda::DeviceBuffer device_lengths(lengths.size() * 4);
    cuda::copy_h2d(device_lengths.data(), lengths.data(), lengths.size() * 4, s);
    const size_t ws_bytes = cuda::attention_decode_workspace_bytes(seqs, heads, head_dim, len);
    cuda::DeviceBuffer ws(ws_bytes);
    g.attention_decode_gflops = gflops(
        seqs * 4.0 * h * len, cuda::median_ms(s, reps, [&] {
          cuda::attention_decode(q.as<Fp16>(), h, k.as<Fp16>(), v.as<Fp16>(), h, len * h, nullptr,
                                 device_lengths.as<int32_t>(), nullptr, len, out.as<Fp16>(), h,
                                 seqs, heads, heads, head_dim, ws.data(), ws_bytes, s);
        }));
  }
  return g;
}

}  // namespace strata
