// Measurements of the disk the offload dir is on, taken in the same run as what they bound.
#pragma once

#include <cstdint>
#include <string>

namespace strata {

// O_DIRECT sequential bandwidth of a scratch DiskStore of `size_bytes` in `dir`, through the
// same io_uring path; the scratch file is removed afterwards. Writing includes the final
// fdatasync; reading first writes the file (untimed) so the reads touch the device.
double measure_disk_read_gbps(const std::string& dir, uint64_t size_bytes);
double measure_disk_write_gbps(const std::string& dir, uint64_t size_bytes);

}  // namespace strata
