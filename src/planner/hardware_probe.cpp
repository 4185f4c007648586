// `strata profile`: the figures of HardwareProfile measured on this node with the engine's own
// paths (OpenBLAS, the attention kernel, fp16 expansion, the O_DIRECT disk store).
#include <sys/statvfs.h>
#include <unistd.h>

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <tuple>

#include "core/buffer.h"
#include "core/error.h"
#include "planner/hardware_profile.h"
#include "runtime/disk_store.h"
#include "runtime/probes/cpu_probe.h"
#include "runtime/probes/disk_probe.h"
#include "runtime/probes/gpu_probe.h"

namespace strata {
namespace {

double process_cpu_s() {
  timespec t{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

// Mean seconds of one synchronous 4 KiB O_DIRECT write, then read, at scattered offsets.
std::pair<double, double> measure_disk_request_s(const std::string& dir) {
  constexpr int kRequests = 64;
  constexpr uint64_t kStride = 64 * DiskStore::kAlignment;
  DiskStore store(dir, kRequests * kStride);
  const DiskStore::Extent extent = store.allocate(kRequests * kStride);
  HostBuffer block(DiskStore::kAlignment);
  std::memset(block.data(), 0x5a, block.size_bytes());
  auto timed = [&](bool is_write) {
    const auto begin = std::chrono::steady_clock::now();
    for (int i = 0; i < kRequests; ++i) {
      if (is_write) {
        store.write(extent, i * kStride, block.data(), block.size_bytes());
      } else {
        store.read(extent, i * kStride, block.data(), block.size_bytes());
      }
    }
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count() /
           kRequests;
  };
  const double write_s = timed(true);
  return {timed(false), write_s};
}

}  // namespace

HardwareProfile measure_hardware(const ProfileOptions& options) {
  HardwareProfile p;
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  p.name = host;
  // Without a GPU the CPU backend's "GPU" tier is host memory, so the profile carries the host
  // rates that move data into it instead of PCIe figures; the CPU rates are measured either way
  // (HeteGen's CPU columns and CPU attention use them on a GPU node).
  p.has_gpu = false;
  if (const auto gpu = measure_gpu(options.gpu_index, options.quick)) {
    p.has_gpu = true;
    p.h2d_gbps = gpu->h2d_gbps;
    p.d2h_gbps = gpu->d2h_gbps;
    p.gpu_gemm_gflops = gpu->gemm_gflops;
    p.gpu_gemm_decode_gflops = gpu->gemm_decode_gflops;
    p.gpu_attention_gflops = gpu->attention_gflops;
    p.gpu_attention_decode_gflops = gpu->attention_decode_gflops;
    p.gpu_mem_gbps = gpu->mem_gbps;
    p.gpu_mem_bytes = gpu->mem_bytes;
  }
  const int n = options.quick ? 1024 : options.sgemm_n;
  p.cpu_gemm_gflops = measure_sgemm_gflops(n, options.quick ? 2 : 3);
  for (const int64_t rows : {1, 4, 8, 16, 32, 64, 256, 1024}) {
    p.cpu_gemm_gflops_by_rows.emplace_back(static_cast<double>(rows),
                                           measure_sgemm_rows_gflops(rows));
  }
  p.cpu_attention_gflops = measure_decode_attention_gflops();
  p.host_copy_gbps = measure_copy_gbps(options.quick ? 64ull << 20 : 256ull << 20);
  p.expand_gbps = measure_expand_gbps(options.quick ? 16ull << 20 : 64ull << 20);
  p.cpu_mem_bytes = static_cast<uint64_t>(::sysconf(_SC_PHYS_PAGES)) *
                    static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  if (!options.offload_dir.empty()) {
    struct statvfs info {};
    STRATA_INPUT_CHECK(::statvfs(options.offload_dir.c_str(), &info) == 0, options.offload_dir,
                       ": cannot stat the offload dir");
    p.disk_bytes = static_cast<uint64_t>(info.f_bavail) * info.f_frsize;
    const uint64_t probe = std::min<uint64_t>(
        options.quick ? 256ull << 20 : options.disk_probe_bytes, p.disk_bytes / 4);
    // The read probe writes its file and reads it back: 2 x probe bytes through the disk.
    const double cpu_begin = process_cpu_s();
    p.disk_read_gbps = measure_disk_read_gbps(options.offload_dir, probe);
    p.disk_cpu_s_per_gb = (process_cpu_s() - cpu_begin) / (2.0 * static_cast<double>(probe) / 1e9);
    // A virtual disk's rate swings between runs: the better of two reads is what it can do.
    if (!options.quick) {
      p.disk_read_gbps =
          std::max(p.disk_read_gbps, measure_disk_read_gbps(options.offload_dir, probe));
    }
    p.disk_write_gbps = measure_disk_write_gbps(options.offload_dir, probe);
    std::tie(p.disk_read_request_s, p.disk_write_request_s) =
        measure_disk_request_s(options.offload_dir);
  }
  return p;
}

}  // namespace strata
