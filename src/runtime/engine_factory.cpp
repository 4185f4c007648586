// The one place that knows which backends this build has.
#include "core/error.h"
#include "core/log.h"
#include "runtime/engine.h"
#include "runtime/offload_engine.h"

#if STRATA_HAVE_CUDA
#include "kernels/cuda/launchers.h"
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
