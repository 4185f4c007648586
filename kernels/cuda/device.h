// The CUDA devices this process sees, and a toolchain check; no CUDA header leaks from here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace strata::cuda {

// Number of usable GPUs; 0 when there is no driver or device. Any other CUDA error (a driver
// older than the runtime needs) is a failure naming it and both versions.
int device_count();
std::string device_name(int device);

// Converts n fp16 values to fp32 on the current device, host buffers in and out (a test hook
// for the toolchain until the CUDA backend lands).
void fp16_to_fp32_roundtrip(const uint16_t* host_src, float* host_dst, size_t n);

}  // namespace strata::cuda
