// The one place that knows which backends this build has.
#include "core/error.h"
#include "core/log.h"
#include "runtime/engine.h"
#include "runtime/offload_engine.h"

#if STRATA_HAVE_CUDA
#include <algorithm>
#include <vector>

#include "kernels/cuda/launchers.h"
#include "kernels/cuda/runtime.h"
#include "runtime/cuda/cuda_engine.h"
#endif

namespace strata {

int cuda_device_count() {
#if STRATA_HAVE_CUDA
  return cuda::device_count();
#else
  return 0;
#endif
}

double measure_pinned_h2d_gbps(int gpu_index) {
#if STRATA_HAVE_CUDA
  if (gpu_index >= cuda_device_count()) return 0;
  cuda::set_device(gpu_index);
  const size_t bytes = size_t{256} << 20;
  cuda::PinnedArena arena(bytes);
  cuda::Block host = arena.allocate(bytes);
  cuda::DeviceBuffer device(bytes);
  cuda::Stream stream;
  cuda::Event start, end;
  std::vector<double> gbps;
  for (int i = 0; i < 7; ++i) {
    start.record(stream);
    cuda::copy_h2d(device.data(), host.data(), bytes, stream);
    end.record(stream);
    end.synchronize();
    if (i > 0) gbps.push_back(static_cast<double>(bytes) / (end.elapsed_ms(start) * 1e-3) / 1e9);
  }
  std::sort(gbps.begin(), gbps.end());
  return gbps[gbps.size() / 2];
#else
  (void)gpu_index;
  return 0;
#endif
}

std::unique_ptr<Engine> make_engine(const WeightSource& source, const EngineOptions& options) {
  if (resolved_device(options) == Device::kCpu) {
    if (options.device == Device::kAuto && cuda_device_count() > 0) {
      log_warn("--device auto: running on the CPU although a GPU is present: " +
               cuda_unsupported(options.policy));
    }
    return std::make_unique<OffloadEngine>(source, options);
  }
  const std::string why = cuda_unsupported(options.policy);
  STRATA_INPUT_CHECK(why.empty(), why);
#if STRATA_HAVE_CUDA
  return std::make_unique<CudaEngine>(source, options);
#else
  STRATA_INPUT_CHECK(false, "--device cuda: this build has no CUDA backend");
  return nullptr;
#endif
}

}  // namespace strata
