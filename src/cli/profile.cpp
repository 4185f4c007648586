// `strata profile`: measures this node (bandwidths, compute rates, tier sizes) into a hardware
// profile for `strata plan` and `--policy auto`.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/units.h"
#include "planner/hardware_profile.h"

namespace strata::cli {

int run_profile(int argc, char** argv) {
  cxxopts::Options options("strata profile",
                           "Measure this node's links, compute rates and memory into a hardware "
                           "profile (JSON).");
  options.add_options()("offload-dir", "directory whose disk is measured (O_DIRECT)",
                        cxxopts::value<std::string>()->default_value("."))(
      "out", "write the profile here (default: stdout)", cxxopts::value<std::string>())(
      "name", "the profile's name (default: the --out file's stem, or the host name)",
      cxxopts::value<std::string>())("disk-probe", "bytes written and read by the disk probe",
                                     cxxopts::value<std::string>()->default_value("1GiB"))(
      "quick", "smaller probes (about a second)")(
      "no-gpu", "profile the host alone, as the CPU backend sees it, where a GPU is present");
  const auto flags = parse_flags(options, argc, argv);
  if (flags.count("out")) check_output_file(flags["out"].as<std::string>(), "--out");
  ProfileOptions po;
  po.offload_dir = flags["offload-dir"].as<std::string>();
  po.disk_probe_bytes = parse_bytes(flags["disk-probe"].as<std::string>(), "--disk-probe");
  po.quick = flags.count("quick") > 0;
  if (flags.count("no-gpu")) po.gpu_index = -1;
  HardwareProfile hw = measure_hardware(po);
  if (flags.count("name")) {
    hw.name = flags["name"].as<std::string>();
  } else if (flags.count("out")) {
    hw.name = std::filesystem::path(flags["out"].as<std::string>()).stem().string();
  }
  hw.validate("the measured profile");
  const std::string text = hw.to_json().dump(2);
  if (!flags.count("out")) {
    std::printf("%s\n", text.c_str());
    return 0;
  }
  const std::string path = flags["out"].as<std::string>();
  write_output_file(path, text, "--out");
  std::fprintf(
      stderr,
      "strata profile: %s: sgemm %.1f GFLOP/s, decode attention %.2f GFLOP/s, copy %.2f "
      "GB/s, fp16 expand %.2f GB/s, disk read %.3f / write %.3f GB/s, RAM %s, free disk %s\n",
      path.c_str(), hw.cpu_gemm_gflops, hw.cpu_attention_gflops, hw.host_copy_gbps, hw.expand_gbps,
      hw.disk_read_gbps, hw.disk_write_gbps,
      format_bytes(static_cast<double>(hw.cpu_mem_bytes)).c_str(),
      format_bytes(static_cast<double>(hw.disk_bytes)).c_str());
  if (hw.has_gpu) {
    std::fprintf(stderr,
                 "strata profile: GPU: h2d %.2f / d2h %.2f GB/s pinned, GEMM %.0f (32 rows %.0f) "
                 "GFLOP/s, attention %.0f (decode %.0f) GFLOP/s, memory %.0f GB/s, %s free\n",
                 hw.h2d_gbps, hw.d2h_gbps, hw.gpu_gemm_gflops, hw.gpu_gemm_decode_gflops,
                 hw.gpu_attention_gflops, hw.gpu_attention_decode_gflops, hw.gpu_mem_gbps,
                 format_bytes(static_cast<double>(hw.gpu_mem_bytes)).c_str());
  }
  return 0;
}

}  // namespace strata::cli
