// The CUDA side of runtime/probes/gpu_probe.h, called by the backend factory in CUDA builds.
#pragma once

#include "runtime/probes/gpu_probe.h"

namespace strata {

// links_only: the host<->device and device copy rates alone.
GpuFigures measure_cuda_gpu(int index, bool quick, bool links_only = false);

}  // namespace strata
