// What the planner knows about a node: link bandwidths, compute rates and tier sizes, measured
// by `strata profile` or written by hand (configs/hardware/*.json). Bandwidths in GB/s (1e9
// bytes/s), rates in GFLOP/s, sizes in bytes.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <utility>
#include <vector>

namespace strata {

struct HardwareProfile {
  std::string name;
  bool has_gpu = false;

  // Host <-> device over PCIe, pinned (GPU nodes only). The cache variant is the rate for the
  // KV cache's strided copies where it differs (FlexGen fits it apart); 0 means d2h_gbps.
  double h2d_gbps = 0;
  double d2h_gbps = 0;
  double d2h_cache_gbps = 0;
  // O_DIRECT sequential rates at the offload dir; the cache variant as above.
  double disk_read_gbps = 0;
  double disk_write_gbps = 0;
  double disk_write_cache_gbps = 0;
  // Seconds of one small (4 KiB) synchronous O_DIRECT request: the KV cache moves to and from
  // disk one sequence's keys or values at a time, where latency, not bandwidth, dominates.
  double disk_read_request_s = 0;
  double disk_write_request_s = 0;
  // CPU seconds the kernel spends per GB moved to or from the disk (virtio, io_uring): on a
  // node without a GPU they come out of the cores the compute uses.
  double disk_cpu_s_per_gb = 0;
  // Host memory: memcpy of one thread, and fp16 -> fp32 expansion (bytes of fp32 written per
  // second), the two things the CPU backend does to move data into its "GPU" tier.
  double host_copy_gbps = 0;
  double expand_gbps = 0;

  // GEMM and attention rates. Decode variants are the small-batch rates (0: same as prefill).
  double gpu_gemm_gflops = 0;
  double gpu_gemm_decode_gflops = 0;
  double gpu_attention_gflops = 0;
  double gpu_attention_decode_gflops = 0;
  double cpu_gemm_gflops = 0;
  double cpu_attention_gflops = 0;
  // Device memory bandwidth (0: not known). A decode GEMM or attention on the GPU reads its
  // weights or cache once per GPU batch, so it takes at least those bytes at this rate.
  double gpu_mem_gbps = 0;
  // sgemm rate by rows of the activation (m) over a decoder layer's shapes (h = 1024): few rows
  // stream the weights from memory at a fraction of the peak rate. Empty: cpu_gemm_gflops.
  std::vector<std::pair<double, double>> cpu_gemm_gflops_by_rows;

  uint64_t gpu_mem_bytes = 0;
  uint64_t cpu_mem_bytes = 0;
  uint64_t disk_bytes = 0;

  double gemm_decode_gflops() const {
    return gpu_gemm_decode_gflops > 0 ? gpu_gemm_decode_gflops : gpu_gemm_gflops;
  }
  double attention_decode_gflops() const {
    return gpu_attention_decode_gflops > 0 ? gpu_attention_decode_gflops : gpu_attention_gflops;
  }
  // GFLOP/s of a GEMM with `rows` activation rows: interpolated in log(rows), clamped at the ends.
  double cpu_gemm_rate_gflops(double rows) const;
  double cache_d2h_gbps() const { return d2h_cache_gbps > 0 ? d2h_cache_gbps : d2h_gbps; }
  double cache_disk_write_gbps() const {
    return disk_write_cache_gbps > 0 ? disk_write_cache_gbps : disk_write_gbps;
  }

  // Input error naming `source` and the field when one is missing or not positive.
  void validate(const std::string& source) const;
  nlohmann::json to_json() const;
  static HardwareProfile from_json(const nlohmann::json& json, const std::string& source);
  static HardwareProfile load(const std::string& path);
};

struct ProfileOptions {
  std::string offload_dir;  // empty: no disk figures (disk_bytes 0, rates 0)
  uint64_t disk_probe_bytes = 1ull << 30;
  int sgemm_n = 2048;
  bool quick = false;  // smaller probes, for --policy auto
  int gpu_index = 0;   // the GPU probed, where there is one; -1 leaves it out
};

// Measures this node. Without a GPU backend the profile has no GPU fields.
HardwareProfile measure_hardware(const ProfileOptions& options);

}  // namespace strata
