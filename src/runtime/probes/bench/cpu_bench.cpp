// strata_cpu_bench: CPU kernel rates, each next to the bound it is judged against, measured in the
// same run: the engine's GEMM at a decode step's and a prefill's row counts against the 2048^3
// sgemm peak, decode attention against a read of memory by the same threads. Prints one JSON
// object. Usage: strata_cpu_bench [--threads N] (default one per core).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "kernels/cpu/gemm.h"
#include "runtime/probes/cpu_probe.h"

namespace strata {
namespace {

int parse_threads(int argc, char** argv) {
  if (argc == 1) return 0;
  if (argc == 3 && std::strcmp(argv[1], "--threads") == 0) {
    char* end = nullptr;
    const long t = std::strtol(argv[2], &end, 10);
    if (*end == '\0' && t >= 0 && t <= 4096) return static_cast<int>(t);
  }
  std::fprintf(stderr, "strata_cpu_bench: usage: strata_cpu_bench [--threads N]\n");
  std::exit(2);
}

int run(int argc, char** argv) {
  cpu::set_compute_threads(parse_threads(argc, argv));
  nlohmann::json out;
  out["threads"] = cpu::compute_threads();
  out["gemm_library"] = cpu::gemm_library();
  const double peak = measure_sgemm_gflops(2048, 3);
  const double read = measure_read_gbps();
  out["sgemm_peak_gflops"] = peak;
  out["read_gbps"] = read;
  // OPT-1.3B's layer shapes (hidden 2048): a decode step of 32 sequences, and 32 x 128 prompts.
  nlohmann::json gemm = nlohmann::json::array();
  for (const int64_t rows : {1, 8, 32, 128, 4096}) {
    const double g = measure_sgemm_rows_gflops(rows, 2048);
    const double b = measure_sgemm_rows_gflops(rows, 2048, true);
    gemm.push_back({{"rows", rows},
                    {"gflops", g},
                    {"of_peak", g / peak},
                    {"blocked_gflops", b},
                    {"blocked_of_peak", b / peak}});
  }
  out["gemm_rows_hidden_2048"] = gemm;
  // One query over the cache, 32 heads of 64; attention reads 8 bytes of cache per 4 flops.
  nlohmann::json attention = nlohmann::json::array();
  for (const int64_t context : {144, 1024}) {
    // Enough sequences that the cache (about 600 MB) streams from memory, not the last cache.
    const int64_t sequences = (600 << 20) / (2 * (context + 1) * 2048 * 4);
    const double gbps = 2.0 * measure_decode_attention_gflops(2048, 32, context, sequences);
    attention.push_back({{"context", context}, {"gbps", gbps}, {"of_read", gbps / read}});
  }
  out["decode_attention_hidden_2048"] = attention;
  std::cout << out.dump(1) << "\n";
  return 0;
}

}  // namespace
}  // namespace strata

int main(int argc, char** argv) {
  return strata::run(argc, argv);
}
