#include "runtime/machine_fit.h"

#include <sys/resource.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <vector>

#include "core/error.h"
#include "core/units.h"

namespace strata {
namespace {

// "MemAvailable:   123456 kB" from /proc/meminfo, in bytes.
uint64_t mem_available_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key, unit;
  uint64_t kib = 0;
  while (in >> key >> kib) {
    std::getline(in, unit);
    if (key == "MemAvailable:") return kib * 1024;
  }
  return MachineRoom::kUnknown;
}

// Virtual address space in use (statm's first field, in pages).
uint64_t address_space_bytes() {
  std::ifstream in("/proc/self/statm");
  uint64_t pages = 0;
  if (!(in >> pages)) return 0;
  return pages * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

uint64_t read_number(const std::string& path) {
  std::ifstream in(path);
  std::string text;
  if (!(in >> text) || text == "max") return MachineRoom::kUnknown;
  try {
    return std::stoull(text);
  } catch (const std::exception&) {
    return MachineRoom::kUnknown;
  }
}

// The cgroup v2 limit of this process less what the cgroup uses.
uint64_t cgroup_room_bytes() {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("0::", 0) != 0) continue;
    const std::string dir = "/sys/fs/cgroup" + line.substr(3);
    const uint64_t max = read_number(dir + "/memory.max");
    if (max == MachineRoom::kUnknown) return max;
    const uint64_t current = read_number(dir + "/memory.current");
    if (current == MachineRoom::kUnknown) return max;
    return max > current ? max - current : 0;
  }
  return MachineRoom::kUnknown;
}

std::string bytes_text(uint64_t bytes) {
  return format_bytes(static_cast<double>(bytes));
}

bool host_fits(const MemoryPlan& plan, Device device, const MachineRoom& room) {
  return host_bytes_needed(plan, device) <= room.host_bytes;
}

bool fits(const MemoryPlan& plan, Device device, const MachineRoom& room) {
  return host_fits(plan, device, room) && plan.total(Tier::kDisk) <= room.disk_bytes;
}

MemoryPlan plan_on(const ModelConfig& config, EngineOptions options, Device device) {
  options.device = device;
  return plan_memory(config, options);
}

// Flags that would make the run fit, each checked by planning it.
std::vector<std::string> remedies(const ModelConfig& config, const EngineOptions& options,
                                  Device device, const MachineRoom& room) {
  std::vector<std::string> out;
  out.push_back("--policy auto (plans within this machine)");
  const Policy& p = options.policy;
  if (!p.compress_weight) {
    EngineOptions o = options;
    o.policy.compress_weight = true;
    if (fits(plan_on(config, o, device), device, room)) out.push_back("--compress-weight");
  }
  // Weights to disk: the largest CPU share that fits the host, nothing on the GPU tier.
  const double host_weight_percent =
      p.weights.cpu_percent + (device == Device::kCuda ? 0.0 : p.weights.gpu_percent);
  {
    EngineOptions o = options;
    o.policy.weights = {0, 0};
    MachineRoom any_disk = room;
    any_disk.disk_bytes = MachineRoom::kUnknown;
    if (host_fits(plan_on(config, o, device), device, any_disk)) {
      int lo = 0, hi = 100;  // lo fits
      while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        o.policy.weights = {0, static_cast<double>(mid)};
        if (host_fits(plan_on(config, o, device), device, any_disk)) {
          lo = mid;
        } else {
          hi = mid - 1;
        }
      }
      o.policy.weights = {0, static_cast<double>(lo)};
      const uint64_t disk = plan_on(config, o, device).total(Tier::kDisk);
      if (lo < host_weight_percent && disk <= room.disk_bytes) {
        char text[256];
        std::snprintf(text, sizeof(text),
                      "--offload-dir %s --percent 0 %d %g %g %g %g (%s on disk)",
                      options.offload_dir.empty() ? "DIR" : options.offload_dir.c_str(), lo,
                      p.cache.gpu_percent, p.cache.cpu_percent, p.activations.gpu_percent,
                      p.activations.cpu_percent, bytes_text(disk).c_str());
        out.push_back(text);
      }
    }
  }
  // A smaller batch: the largest GPU batch that fits.
  if (p.gpu_batch_size > 1) {
    EngineOptions o = options;
    o.policy.gpu_batch_size = 1;
    if (fits(plan_on(config, o, device), device, room)) {
      int64_t lo = 1, hi = p.gpu_batch_size - 1;
      while (lo < hi) {
        const int64_t mid = lo + (hi - lo + 1) / 2;
        o.policy.gpu_batch_size = mid;
        if (fits(plan_on(config, o, device), device, room)) {
          lo = mid;
        } else {
          hi = mid - 1;
        }
      }
      out.push_back("--gpu-batch-size " + std::to_string(lo) + " or less");
    }
  }
  return out;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    out += (i == 0 ? "" : i + 1 == items.size() ? " or " : ", ") + items[i];
  }
  return out;
}

}  // namespace

MachineRoom machine_room(const std::string& offload_dir) {
  MachineRoom room;
  const auto take = [&room](uint64_t bytes, const char* name) {
    if (bytes < room.host_bytes) {
      room.host_bytes = bytes;
      room.host_limit = name;
    }
  };
  take(mem_available_bytes(), "MemAvailable in /proc/meminfo");
  rlimit limit{};
  if (::getrlimit(RLIMIT_AS, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
    const uint64_t used = address_space_bytes();
    take(limit.rlim_cur > used ? limit.rlim_cur - used : 0,
         "RLIMIT_AS (ulimit -v) less what is mapped");
  }
  take(cgroup_room_bytes(), "the cgroup's memory.max less memory.current");
  struct statvfs info {};
  if (!offload_dir.empty() && ::statvfs(offload_dir.c_str(), &info) == 0) {
    room.disk_bytes = uint64_t{info.f_bavail} * info.f_frsize;
  }
  return room;
}

uint64_t host_bytes_needed(const MemoryPlan& plan, Device device) {
  const uint64_t cpu = plan.total(Tier::kCpu);
  return device == Device::kCuda ? cpu : cpu + plan.total(Tier::kGpu);
}

void check_fits(const ModelConfig& config, const EngineOptions& options, const MemoryPlan& plan,
                Device device, const MachineRoom& room) {
  const uint64_t host = host_bytes_needed(plan, device);
  const uint64_t disk = plan.total(Tier::kDisk);
  if (host <= room.host_bytes && disk <= room.disk_bytes) return;
  const auto sum = [&](const uint64_t(&part)[kNumTiers]) {
    uint64_t total = part[static_cast<int>(Tier::kCpu)];
    if (device != Device::kCuda) total += part[static_cast<int>(Tier::kGpu)];
    return total;
  };
  std::ostringstream message;
  if (host > room.host_bytes) {
    message << "the policy needs " << bytes_text(host) << " of host memory (weights "
            << bytes_text(sum(plan.weights)) << ", KV cache " << bytes_text(sum(plan.cache))
            << ", activations " << bytes_text(sum(plan.activations)) << ", working "
            << bytes_text(sum(plan.working)) << ") but this machine has "
            << bytes_text(room.host_bytes) << " (" << room.host_limit << ")";
  } else {
    message << "the policy puts " << bytes_text(disk) << " on disk but --offload-dir "
            << options.offload_dir << " has " << bytes_text(room.disk_bytes) << " free";
  }
  message << "; to fit, try: " << join(remedies(config, options, device, room));
  throw_input(message.str());
}

void check_fits_machine(const ModelConfig& config, const EngineOptions& options,
                        const MemoryPlan& plan, Device device) {
  check_fits(config, options, plan, device, machine_room(options.offload_dir));
}

}  // namespace strata
