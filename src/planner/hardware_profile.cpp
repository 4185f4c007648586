#include "planner/hardware_profile.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/error.h"
#include "core/json_file.h"

namespace strata {
namespace {

struct Field {
  const char* key;
  double HardwareProfile::*rate;  // or null when bytes
  uint64_t HardwareProfile::*bytes;
  enum Need { kAlways, kGpu, kCpuOnly, kOptional } need;
};

const std::vector<Field>& fields() {
  using H = HardwareProfile;
  static const std::vector<Field> table = {
      {"h2d_gbps", &H::h2d_gbps, nullptr, Field::kGpu},
      {"d2h_gbps", &H::d2h_gbps, nullptr, Field::kGpu},
      {"d2h_cache_gbps", &H::d2h_cache_gbps, nullptr, Field::kOptional},
      {"disk_read_gbps", &H::disk_read_gbps, nullptr, Field::kAlways},
      {"disk_write_gbps", &H::disk_write_gbps, nullptr, Field::kAlways},
      {"disk_write_cache_gbps", &H::disk_write_cache_gbps, nullptr, Field::kOptional},
      {"disk_read_request_s", &H::disk_read_request_s, nullptr, Field::kOptional},
      {"disk_write_request_s", &H::disk_write_request_s, nullptr, Field::kOptional},
      {"disk_cpu_s_per_gb", &H::disk_cpu_s_per_gb, nullptr, Field::kOptional},
      {"host_copy_gbps", &H::host_copy_gbps, nullptr, Field::kCpuOnly},
      {"expand_gbps", &H::expand_gbps, nullptr, Field::kCpuOnly},
      {"gpu_gemm_gflops", &H::gpu_gemm_gflops, nullptr, Field::kGpu},
      {"gpu_gemm_decode_gflops", &H::gpu_gemm_decode_gflops, nullptr, Field::kOptional},
      {"gpu_attention_gflops", &H::gpu_attention_gflops, nullptr, Field::kGpu},
      {"gpu_attention_decode_gflops", &H::gpu_attention_decode_gflops, nullptr, Field::kOptional},
      {"cpu_gemm_gflops", &H::cpu_gemm_gflops, nullptr, Field::kCpuOnly},
      {"cpu_attention_gflops", &H::cpu_attention_gflops, nullptr, Field::kAlways},
      {"gpu_mem_gbps", &H::gpu_mem_gbps, nullptr, Field::kOptional},
      {"gpu_mem_bytes", nullptr, &H::gpu_mem_bytes, Field::kGpu},
      {"cpu_mem_bytes", nullptr, &H::cpu_mem_bytes, Field::kAlways},
      {"disk_bytes", nullptr, &H::disk_bytes, Field::kAlways},
  };
  return table;
}

bool required(Field::Need need, bool has_gpu) {
  return need == Field::kAlways || (need == Field::kGpu && has_gpu) ||
         (need == Field::kCpuOnly && !has_gpu);
}

}  // namespace

double HardwareProfile::cpu_gemm_rate_gflops(double rows) const {
  const auto& c = cpu_gemm_gflops_by_rows;
  if (c.empty()) return cpu_gemm_gflops;
  if (rows <= c.front().first) return c.front().second;
  if (rows >= c.back().first) return c.back().second;
  for (size_t i = 1; i < c.size(); ++i) {
    if (rows <= c[i].first) {
      const double t = std::log(rows / c[i - 1].first) / std::log(c[i].first / c[i - 1].first);
      return c[i - 1].second + t * (c[i].second - c[i - 1].second);
    }
  }
  return c.back().second;
}

void HardwareProfile::validate(const std::string& source) const {
  for (size_t i = 0; i < cpu_gemm_gflops_by_rows.size(); ++i) {
    const auto& [rows, rate] = cpu_gemm_gflops_by_rows[i];
    STRATA_INPUT_CHECK(
        rows >= 1 && rate > 0 && (i == 0 || rows > cpu_gemm_gflops_by_rows[i - 1].first), source,
        ": 'cpu_gemm_gflops_by_rows' needs [rows, GFLOP/s] pairs with rows "
        ">= 1 increasing and rates > 0");
  }
  for (const Field& f : fields()) {
    const double value = f.rate ? this->*f.rate : static_cast<double>(this->*f.bytes);
    if (required(f.need, has_gpu)) {
      STRATA_INPUT_CHECK(value > 0, source, ": hardware field '", f.key, "' must be > 0 (got ",
                         value, ")", has_gpu ? "" : " on a node without a GPU");
    } else {
      STRATA_INPUT_CHECK(value >= 0, source, ": hardware field '", f.key, "' must be >= 0");
    }
  }
}

nlohmann::json HardwareProfile::to_json() const {
  nlohmann::json j = {{"name", name}, {"has_gpu", has_gpu}};
  if (!cpu_gemm_gflops_by_rows.empty()) {
    j["cpu_gemm_gflops_by_rows"] = nlohmann::json::array();
    for (const auto& [rows, rate] : cpu_gemm_gflops_by_rows)
      j["cpu_gemm_gflops_by_rows"].push_back({rows, rate});
  }
  for (const Field& f : fields()) {
    const bool gpu_field = f.need == Field::kGpu || std::string(f.key).find("gpu") == 0 ||
                           std::string(f.key).find("h2d") == 0 ||
                           std::string(f.key).find("d2h") == 0;
    if (gpu_field && !has_gpu) continue;  // a node without a GPU has no GPU fields
    if (f.rate) {
      if (f.need != Field::kOptional || this->*f.rate > 0) j[f.key] = this->*f.rate;
    } else {
      j[f.key] = this->*f.bytes;
    }
  }
  return j;
}

HardwareProfile HardwareProfile::from_json(const nlohmann::json& j, const std::string& source) {
  STRATA_INPUT_CHECK(j.is_object(), source, ": a hardware profile is a JSON object");
  HardwareProfile p;
  STRATA_INPUT_CHECK(j.contains("has_gpu") && j["has_gpu"].is_boolean(), source,
                     ": hardware field 'has_gpu' (true / false) is missing");
  p.has_gpu = j["has_gpu"].get<bool>();
  if (j.contains("name")) {
    STRATA_INPUT_CHECK(j["name"].is_string(), source, ": hardware field 'name' must be a string");
    p.name = j["name"].get<std::string>();
  }
  for (const auto& [key, value] : j.items()) {
    if (key == "name" || key == "has_gpu" || key == "note") continue;
    if (key == "cpu_gemm_gflops_by_rows") {
      STRATA_INPUT_CHECK(value.is_array(), source, ": 'cpu_gemm_gflops_by_rows' must be an array");
      for (const auto& pair : value) {
        STRATA_INPUT_CHECK(
            pair.is_array() && pair.size() == 2 && pair[0].is_number() && pair[1].is_number(),
            source, ": 'cpu_gemm_gflops_by_rows' holds [rows, GFLOP/s] pairs");
        p.cpu_gemm_gflops_by_rows.emplace_back(pair[0].get<double>(), pair[1].get<double>());
      }
      continue;
    }
    bool known = false;
    for (const Field& f : fields()) known = known || key == f.key;
    STRATA_INPUT_CHECK(known, source, ": unknown hardware field '", key, "'");
  }
  for (const Field& f : fields()) {
    if (!j.contains(f.key)) {
      STRATA_INPUT_CHECK(!required(f.need, p.has_gpu), source, ": hardware field '", f.key,
                         "' is missing");
      continue;
    }
    const auto& v = j[f.key];
    STRATA_INPUT_CHECK(v.is_number(), source, ": hardware field '", f.key, "' must be a number");
    if (f.rate) {
      p.*f.rate = v.get<double>();
    } else {
      STRATA_INPUT_CHECK(v.get<double>() >= 0, source, ": hardware field '", f.key,
                         "' must be > 0 (got ", v.get<double>(), ")");
      // 2^64 bytes is past any machine; the check keeps the conversion defined.
      STRATA_INPUT_CHECK(v.get<double>() < 1.8e19, source, ": hardware field '", f.key,
                         "' is too large (", v.get<double>(), ")");
      p.*f.bytes = static_cast<uint64_t>(v.get<double>());
    }
  }
  p.validate(source);
  return p;
}

HardwareProfile HardwareProfile::load(const std::string& path) {
  return from_json(read_json_file(path, "hardware profile"), path);
}

}  // namespace strata
