// A cluster file (configs/clusters/*.json): the ranks of a pipeline in order, each with its
// node's hardware profile, the device it computes on and the memory it may use.
//
//   {"name": "...", "note": "...",
//    "nodes": [{"name": "gpu0", "hardware": "configs/hardware/gcp-t4-flexgen.json",
//               "device": "cuda", "gpu_mem": "16GiB", "cpu_mem": "96GiB", "disk_mem": "500GiB",
//               "threads": 8, "count": 1}, ...]}
//
// "hardware" is a path (absolute, or relative to the file's directory or any directory above
// it, so "configs/hardware/X.json" works from the repository's configs/clusters/) or an inline
// profile object. "count" repeats an entry as that many ranks. A missing cap is the profile's
// usable size; disk_mem "0" keeps the rank off disk.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "planner/hardware_profile.h"
#include "runtime/policy.h"

namespace strata {

enum class NodeDevice { kCpu, kCuda };
const char* node_device_name(NodeDevice device);

struct ClusterNode {
  std::string name;
  std::string hardware_source;  // the profile's path, or "inline"
  HardwareProfile hardware;     // has_gpu is false on a cpu device (the CPU backend's model)
  NodeDevice device = NodeDevice::kCpu;
  TierCaps caps;         // 0: the profile's usable size
  bool no_disk = false;  // disk_mem "0"
  int threads = 0;       // 0: not set
};

struct Cluster {
  std::string name;
  std::string source;              // the file, for messages
  std::vector<ClusterNode> ranks;  // pipeline order: rank 0 embeds, the last rank samples

  int64_t n_ranks() const { return static_cast<int64_t>(ranks.size()); }
  // `n_ranks` ranks: the file's ranks repeated in order (for projections past the file).
  Cluster replicated(int64_t n_ranks) const;

  // Input errors name `source` and the field, on one line.
  static Cluster from_json(const nlohmann::json& json, const std::string& source,
                           const std::string& base_dir);
  static Cluster load(const std::string& path);
};

// Input error unless the cluster has exactly the ranks the run was started with.
void check_rank_count(const Cluster& cluster, int64_t n_ranks);

}  // namespace strata
