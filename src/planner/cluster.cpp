#include "planner/cluster.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_file.h"
#include "core/units.h"

namespace strata {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kMaxCount = 4096;  // a typo guard, far above any cluster strata plans

// The file's directory and every one above it, then the working directory: a cluster file in
// configs/clusters/ can name "configs/hardware/X.json" (repository-relative) or "../hardware/X".
std::string resolve_hardware(const std::string& path, const std::string& base_dir,
                             const std::string& field) {
  // A name the system refuses (too long, say) is one that is not there.
  const auto exists = [](const fs::path& p) {
    std::error_code error;
    return fs::exists(p, error);
  };
  if (fs::path(path).is_absolute()) {
    STRATA_INPUT_CHECK(exists(path), field, ": hardware profile '", path, "' does not exist");
    return path;
  }
  std::error_code ec;
  fs::path dir = fs::absolute(base_dir.empty() ? fs::path(".") : fs::path(base_dir), ec);
  while (!ec && !dir.empty()) {
    if (exists(dir / path)) return (dir / path).lexically_normal().string();
    if (dir == dir.parent_path()) break;
    dir = dir.parent_path();
  }
  STRATA_INPUT_CHECK(exists(path), field, ": hardware profile '", path,
                     "' not found beside the cluster file, above it or in the working directory");
  return path;
}

uint64_t cap_field(const nlohmann::json& node, const char* key, const std::string& field) {
  if (!node.contains(key)) return 0;
  const auto& v = node[key];
  STRATA_INPUT_CHECK(v.is_string(), field, ".", key, " must be a size string such as \"16GiB\"");
  return parse_bytes(v.get<std::string>(), field + "." + key);
}

ClusterNode parse_node(const nlohmann::json& j, const std::string& field,
                       const std::string& base_dir) {
  STRATA_INPUT_CHECK(j.is_object(), field, " must be an object");
  static const char* const kKeys[] = {"name",     "hardware", "device", "gpu_mem", "cpu_mem",
                                      "disk_mem", "threads",  "count",  "note"};
  for (const auto& [key, value] : j.items()) {
    bool known = false;
    for (const char* k : kKeys) known = known || key == k;
    STRATA_INPUT_CHECK(known, field, ": unknown field '", key, "'");
  }
  ClusterNode n;
  if (j.contains("name")) {
    STRATA_INPUT_CHECK(j["name"].is_string(), field, ".name must be a string");
    n.name = j["name"].get<std::string>();
  }
  STRATA_INPUT_CHECK(j.contains("device") && j["device"].is_string(), field,
                     ".device is missing (\"cpu\" or \"cuda\")");
  const std::string device = j["device"].get<std::string>();
  STRATA_INPUT_CHECK(device == "cpu" || device == "cuda", field, ".device '", device,
                     "' is not \"cpu\" or \"cuda\"");
  n.device = device == "cuda" ? NodeDevice::kCuda : NodeDevice::kCpu;

  STRATA_INPUT_CHECK(j.contains("hardware"), field,
                     ".hardware is missing (a profile's path or an inline profile)");
  const auto& hw = j["hardware"];
  if (hw.is_string()) {
    n.hardware_source = resolve_hardware(hw.get<std::string>(), base_dir, field + ".hardware");
    n.hardware = HardwareProfile::from_json(read_json_file(n.hardware_source, "hardware profile"),
                                            field + ".hardware (" + n.hardware_source + ")");
  } else {
    STRATA_INPUT_CHECK(hw.is_object(), field, ".hardware must be a path or a profile object");
    n.hardware_source = "inline";
    n.hardware = HardwareProfile::from_json(hw, field + ".hardware");
  }
  if (n.device == NodeDevice::kCuda) {
    STRATA_INPUT_CHECK(n.hardware.has_gpu, field, ".device is \"cuda\" but its hardware profile (",
                       n.hardware_source, ") has no GPU");
  } else if (n.hardware.has_gpu) {
    // A CPU rank on a GPU machine runs the CPU backend: the CPU fields of the profile are the
    // ones that count, and must be there.
    n.hardware.has_gpu = false;
    n.hardware.validate(field + ".hardware (" + n.hardware_source + ", used for a cpu device)");
  }
  if (n.name.empty()) n.name = n.hardware.name;

  n.caps.gpu_bytes = cap_field(j, "gpu_mem", field);
  n.caps.cpu_bytes = cap_field(j, "cpu_mem", field);
  n.caps.disk_bytes = cap_field(j, "disk_mem", field);
  n.no_disk = j.contains("disk_mem") && n.caps.disk_bytes == 0;
  STRATA_INPUT_CHECK(!j.contains("gpu_mem") || n.caps.gpu_bytes > 0, field,
                     ".gpu_mem must be > 0 (leave it out for the profile's size)");
  STRATA_INPUT_CHECK(!j.contains("cpu_mem") || n.caps.cpu_bytes > 0, field,
                     ".cpu_mem must be > 0 (leave it out for the profile's size)");
  // A cap past what the node has is a typo the planner would otherwise believe.
  const std::pair<const char*, std::pair<uint64_t, uint64_t>> sizes[] = {
      {"gpu_mem", {n.caps.gpu_bytes, n.hardware.has_gpu ? n.hardware.gpu_mem_bytes : 0}},
      {"cpu_mem", {n.caps.cpu_bytes, n.hardware.cpu_mem_bytes}},
      {"disk_mem", {n.caps.disk_bytes, n.hardware.disk_bytes}}};
  for (const auto& [key, v] : sizes) {
    const auto [cap, size] = v;
    STRATA_INPUT_CHECK(cap == 0 || size == 0 || cap <= size, field, ".", key, " ",
                       format_bytes(static_cast<double>(cap)),
                       " is more than its hardware profile has (",
                       format_bytes(static_cast<double>(size)), ")");
  }
  if (j.contains("threads")) {
    STRATA_INPUT_CHECK(j["threads"].is_number_integer() && j["threads"].get<int64_t>() >= 1 &&
                           j["threads"].get<int64_t>() <= 4096,
                       field, ".threads must be a whole number >= 1");
    n.threads = j["threads"].get<int>();
  }
  return n;
}

}  // namespace

const char* node_device_name(NodeDevice device) {
  return device == NodeDevice::kCuda ? "cuda" : "cpu";
}

Cluster Cluster::replicated(int64_t n_ranks) const {
  STRATA_CHECK(!ranks.empty() && n_ranks >= 1, "replicating an empty cluster");
  Cluster c = *this;
  c.ranks.clear();
  for (int64_t r = 0; r < n_ranks; ++r) {
    c.ranks.push_back(ranks[static_cast<size_t>(r) % ranks.size()]);
  }
  return c;
}

Cluster Cluster::from_json(const nlohmann::json& j, const std::string& source,
                           const std::string& base_dir) {
  STRATA_INPUT_CHECK(j.is_object(), source, ": a cluster file is a JSON object with \"nodes\"");
  for (const auto& [key, value] : j.items()) {
    STRATA_INPUT_CHECK(key == "name" || key == "note" || key == "nodes", source,
                       ": unknown cluster field '", key, "'");
  }
  Cluster c;
  c.source = source;
  if (j.contains("name")) {
    STRATA_INPUT_CHECK(j["name"].is_string(), source, ": name must be a string");
    c.name = j["name"].get<std::string>();
  }
  STRATA_INPUT_CHECK(j.contains("nodes") && j["nodes"].is_array() && !j["nodes"].empty(), source,
                     ": nodes must be a non-empty array of nodes");
  for (size_t i = 0; i < j["nodes"].size(); ++i) {
    const std::string field = source + ": nodes[" + std::to_string(i) + "]";
    const auto& entry = j["nodes"][i];
    const ClusterNode node = parse_node(entry, field, base_dir);
    int64_t count = 1;
    if (entry.contains("count")) {
      STRATA_INPUT_CHECK(entry["count"].is_number_integer() && entry["count"].get<int64_t>() >= 1 &&
                             entry["count"].get<int64_t>() <= kMaxCount,
                         field, ".count must be a whole number from 1 to ", kMaxCount);
      count = entry["count"].get<int64_t>();
    }
    for (int64_t k = 0; k < count; ++k) c.ranks.push_back(node);
  }
  return c;
}

Cluster Cluster::load(const std::string& path) {
  const std::string dir = fs::path(path).parent_path().string();
  return from_json(read_json_file(path, "cluster file"), path, dir);
}

void check_rank_count(const Cluster& cluster, int64_t n_ranks) {
  STRATA_INPUT_CHECK(cluster.n_ranks() == n_ranks, cluster.source, " describes ", cluster.n_ranks(),
                     " rank", cluster.n_ranks() == 1 ? "" : "s", " but ", n_ranks,
                     " were started; give one node entry (or count) per rank");
}

}  // namespace strata
