// strata_cuda_bench: kernel rates on this GPU, each next to the bound it is judged against,
// measured in the same run (decode attention against a device-to-device copy, GEMM and prefill
// in TFLOP/s, pinned host<->device bandwidth). Prints one JSON object.
#include <algorithm>
#include <cstdio>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/ops.h"
#include "kernels/quant_format.h"

namespace strata::cuda {
namespace {

double time_ms(const Stream& stream, int reps, const std::function<void()>& fn) {
  return median_ms(stream, reps, fn);
}

double gbps(double bytes, double ms) {
  return bytes / (ms * 1e-3) / 1e9;
}
double tflops(double flops, double ms) {
  return flops / (ms * 1e-3) / 1e12;
}

// Inputs of ~1.06 (0x3C3C): finite everywhere; timings do not depend on values.
DeviceBuffer filled(size_t bytes, const Stream& stream) {
  DeviceBuffer b(bytes);
  fill_bytes(b.data(), 0x3C, bytes, stream);
  return b;
}

nlohmann::json copies(const Stream& stream) {
  const size_t bytes = size_t{1} << 30;
  nlohmann::json out;
  DeviceBuffer a = filled(bytes, stream), b(bytes);
  const double d2d = time_ms(stream, 10, [&] { copy_d2d(b.data(), a.data(), bytes, stream); });
  out["d2d_copy_gbps"] = gbps(2.0 * bytes, d2d);  // read + write
  const size_t host_bytes = size_t{256} << 20;
  PinnedArena arena(host_bytes);
  Block host = arena.allocate(host_bytes);
  out["h2d_pinned_gbps"] =
      gbps(host_bytes,
           time_ms(stream, 10, [&] { copy_h2d(a.data(), host.data(), host_bytes, stream); }));
  out["d2h_pinned_gbps"] =
      gbps(host_bytes,
           time_ms(stream, 10, [&] { copy_d2h(host.data(), a.data(), host_bytes, stream); }));
  return out;
}

nlohmann::json decode_attention(const Stream& stream, double d2d_gbps) {
  nlohmann::json rows = nlohmann::json::array();
  struct Shape {
    int64_t seqs, heads, dim, len;
  };
  for (const Shape s : {Shape{64, 56, 128, 544}, Shape{32, 32, 128, 2048}, Shape{8, 40, 128, 8192},
                        Shape{1, 56, 128, 32768}}) {
    const int64_t width = s.heads * s.dim;
    const size_t cache_bytes = static_cast<size_t>(s.seqs * s.len * width) * 2;
    DeviceBuffer k = filled(cache_bytes, stream), v = filled(cache_bytes, stream);
    DeviceBuffer q = filled(s.seqs * width * 2, stream), out(s.seqs * width * 2);
    std::vector<int32_t> lengths(s.seqs, static_cast<int32_t>(s.len));
    DeviceBuffer dlen(lengths.size() * 4);
    copy_h2d(dlen.data(), lengths.data(), lengths.size() * 4, stream);
    const size_t ws_bytes = attention_decode_workspace_bytes(s.seqs, s.heads, s.dim, s.len);
    DeviceBuffer ws(ws_bytes);
    const double ms = time_ms(stream, 20, [&] {
      attention_decode(q.as<Fp16>(), width, k.as<Fp16>(), v.as<Fp16>(), width, s.len * width,
                       nullptr, dlen.as<int32_t>(), nullptr, s.len, out.as<Fp16>(), width, s.seqs,
                       s.heads, s.heads, s.dim, ws.data(), ws_bytes, stream);
    });
    const double bw = gbps(2.0 * cache_bytes, ms);
    rows.push_back({{"seqs", s.seqs},
                    {"heads", s.heads},
                    {"head_dim", s.dim},
                    {"context", s.len},
                    {"ms", ms},
                    {"gbps", bw},
                    {"fraction_of_d2d_copy", bw / d2d_gbps}});
  }
  return rows;
}

nlohmann::json prefill_attention(const Stream& stream) {
  nlohmann::json rows = nlohmann::json::array();
  struct Shape {
    int64_t seqs, heads, dim, n;
  };
  for (const Shape s : {Shape{8, 56, 128, 512}, Shape{2, 32, 128, 2048}, Shape{16, 32, 64, 512}}) {
    const int64_t width = s.heads * s.dim;
    const size_t bytes = static_cast<size_t>(s.seqs * s.n * width) * 2;
    DeviceBuffer q = filled(bytes, stream), k = filled(bytes, stream), v = filled(bytes, stream);
    DeviceBuffer out(bytes);
    const double ms = time_ms(stream, 10, [&] {
      attention_prefill(q.as<Fp16>(), width, s.n * width, k.as<Fp16>(), v.as<Fp16>(), width,
                        s.n * width, out.as<Fp16>(), 0, s.n, s.seqs, s.heads, s.heads, s.dim,
                        nullptr, stream);
    });
    // QK^T and PV over the causal half: 2 GEMMs x 2 flops x n(n+1)/2 x dim per head.
    const double flops = 4.0 * s.seqs * s.heads * s.dim * (s.n * (s.n + 1) / 2.0);
    rows.push_back({{"seqs", s.seqs},
                    {"heads", s.heads},
                    {"head_dim", s.dim},
                    {"tokens", s.n},
                    {"ms", ms},
                    {"tflops", tflops(flops, ms)}});
  }
  return rows;
}

nlohmann::json gemm(const Stream& stream) {
  nlohmann::json rows = nlohmann::json::array();
  Blas blas;
  DeviceBuffer scratch(Blas::output_scratch_bytes(4096, 28672));
  blas.set_output_scratch(scratch.data(), scratch.size_bytes());
  struct Shape {
    int64_t m, n, k;
  };
  // OPT-30B's MLP (hidden 7168, ffn 28672) at prefill and decode batch sizes.
  for (const Shape s : {Shape{4096, 28672, 7168}, Shape{4096, 7168, 28672}, Shape{512, 7168, 7168},
                        Shape{64, 28672, 7168}}) {
    DeviceBuffer x = filled(s.m * s.k * 2, stream), w = filled(s.n * s.k * 2, stream);
    DeviceBuffer b = filled(s.n * 2, stream), y(s.m * s.n * 2);
    const double ms = time_ms(stream, 10, [&] {
      linear(blas, x.as<Fp16>(), w.as<Fp16>(), b.as<Fp16>(), y.as<Fp16>(), s.m, s.n, s.k,
             Activation::kRelu, stream);
    });
    rows.push_back({{"m", s.m},
                    {"n", s.n},
                    {"k", s.k},
                    {"ms", ms},
                    {"tflops", tflops(2.0 * s.m * s.n * s.k, ms)},
                    {"weight_gbps", gbps(2.0 * s.n * s.k, ms)}});
  }
  return rows;
}

nlohmann::json quantized(const Stream& stream, double d2d_gbps) {
  nlohmann::json out;
  const int64_t n = 28672, k = 7168;
  const size_t q_bytes =
      static_cast<size_t>(k * ((n + kQuantGroup - 1) / kQuantGroup)) * quant_group_bytes(4);
  // Zero bytes: scale 0, min 0, codes 0 - a valid (all-zero) quantised matrix.
  DeviceBuffer w(q_bytes), w16(n * k * 2);
  fill_bytes(w.data(), 0, q_bytes, stream);
  const double deq_ms =
      time_ms(stream, 10, [&] { dequantize_matrix(4, w.data(), n, k, w16.as<Fp16>(), stream); });
  out["dequantize_matrix_4bit"] = {
      {"rows", n},
      {"cols", k},
      {"ms", deq_ms},
      {"gbps", gbps(static_cast<double>(q_bytes) + 2.0 * n * k, deq_ms)}};
  // The KV cache's compression: fp16 in, 4-bit groups of 64 along head_dim out.
  const int64_t kv_n = int64_t{256} << 20;
  DeviceBuffer kv = filled(kv_n * 2, stream), kv_q(kv_n / kQuantGroup * quant_group_bytes(4));
  const double quant_ms = time_ms(
      stream, 10, [&] { quantize(4, kv.as<Fp16>(), kv_n, kQuantGroup, kv_q.data(), stream); });
  out["quantize_4bit"] = {
      {"values", kv_n},
      {"ms", quant_ms},
      {"gbps", gbps(2.0 * kv_n + static_cast<double>(kv_q.size_bytes()), quant_ms)}};
  nlohmann::json rows = nlohmann::json::array();
  for (int64_t m : {1, 8, 16}) {
    DeviceBuffer x = filled(m * k * 2, stream), y(m * n * 2);
    const double ms = time_ms(stream, 20, [&] {
      q4_linear(x.as<Fp16>(), w.data(), nullptr, y.as<Fp16>(), m, n, k, stream);
    });
    const double bw = gbps(static_cast<double>(q_bytes), ms);
    rows.push_back({{"m", m},
                    {"n", n},
                    {"k", k},
                    {"ms", ms},
                    {"weight_gbps", bw},
                    {"fraction_of_d2d_copy", bw / d2d_gbps}});
  }
  out["q4_linear"] = rows;
  return out;
}

int run() {
  if (device_count() == 0) {
    std::fprintf(stderr, "strata_cuda_bench: no CUDA device\n");
    return 77;
  }
  set_device(0);
  Stream stream;
  nlohmann::json report;
  report["device"] = device_name(0);
  report["copies"] = copies(stream);
  const double d2d = report["copies"]["d2d_copy_gbps"].get<double>();
  report["decode_attention"] = decode_attention(stream, d2d);
  report["prefill_attention"] = prefill_attention(stream);
  report["gemm_fp16"] = gemm(stream);
  report["quantized"] = quantized(stream, d2d);
  std::cout << report.dump(2) << "\n";
  return 0;
}

}  // namespace
}  // namespace strata::cuda

int main() {
  try {
    return strata::cuda::run();
  } catch (const strata::Error& e) {
    std::fprintf(stderr, "strata_cuda_bench: %s\n", e.what());
    return e.exit_status();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "strata_cuda_bench: %s\n", e.what());
    return 1;
  }
}
