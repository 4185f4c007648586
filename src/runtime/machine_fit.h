// Whether a memory plan fits the machine it is about to run on: the engine knows every byte it
// will allocate (memory_plan.h), so it holds them against the host memory the process can still
// take and the offload dir's free space before allocating any, rather than ending in bad_alloc or
// the OOM killer half way through loading.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/memory_plan.h"

namespace strata {

// What this process can still take. Host: the least of /proc/meminfo's MemAvailable, RLIMIT_AS
// (ulimit -v) less the address space in use, and the cgroup's memory.max less memory.current;
// `host_limit` names the one that binds. Disk: the offload dir's free space (statvfs), when a
// dir is given.
struct MachineRoom {
  static constexpr uint64_t kUnknown = ~uint64_t{0};
  uint64_t host_bytes = kUnknown;
  std::string host_limit;
  uint64_t disk_bytes = kUnknown;
};
MachineRoom machine_room(const std::string& offload_dir);

// Host memory a plan takes: the CPU tier, and on the CPU backend the "GPU" tier as well.
uint64_t host_bytes_needed(const MemoryPlan& plan, Device device);

// An input error, one line, when `plan` (of `options` on `device`) does not fit `room`: what it
// needs, what there is, and which flags would make it fit (--policy auto, --offload-dir with
// weights on disk, --compress-weight, a smaller --gpu-batch-size), each checked by planning it.
void check_fits(const ModelConfig& config, const EngineOptions& options, const MemoryPlan& plan,
                Device device, const MachineRoom& room);
// check_fits against this machine.
void check_fits_machine(const ModelConfig& config, const EngineOptions& options,
                        const MemoryPlan& plan, Device device);

}  // namespace strata
