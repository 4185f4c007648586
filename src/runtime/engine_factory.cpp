// The one place that knows which backends this build has.
#include "core/error.h"
#include "core/log.h"
#include "runtime/cpu_engine.h"
#include "runtime/cuda/cuda_layout.h"
#include "runtime/engine.h"
#include "runtime/memory_plan.h"
#include "runtime/probes/gpu_probe.h"

#if STRATA_HAVE_CUDA
#include "kernels/cuda/device.h"
#include "runtime/cuda/cuda_engine.h"
#include "runtime/probes/gpu_probe_cuda.h"
#endif

namespace strata {

int cuda_device_count() {
#if STRATA_HAVE_CUDA
  return cuda::device_count();
#else
  return 0;
#endif
}

std::optional<GpuFigures> measure_gpu(int index, bool quick) {
#if STRATA_HAVE_CUDA
  if (index < 0 || index >= cuda_device_count()) return std::nullopt;
  return measure_cuda_gpu(index, quick);
#else
  (void)index;
  (void)quick;
  return std::nullopt;
#endif
}

double measure_pinned_h2d_gbps(int index) {
#if STRATA_HAVE_CUDA
  if (index < 0 || index >= cuda_device_count()) return 0;
  return measure_cuda_gpu(index, false, true).h2d_gbps;
#else
  (void)index;
  return 0;
#endif
}

MemoryPlan plan_memory(const ModelConfig& config, const EngineOptions& options) {
  if (resolved_device(options) == Device::kCuda) return plan_cuda_memory(config, options);
  return plan_cpu_memory(config, options);
}

std::unique_ptr<Engine> make_engine(const WeightSource& source, const EngineOptions& options) {
  const ModelConfig& config = source.config();
  const int64_t longest = options.max_prompt_len + options.gen_len;
  STRATA_INPUT_CHECK(config.sliding_window == 0 || longest <= config.sliding_window,
                     source.description(), ": config.json sliding_window ", config.sliding_window,
                     " is below this run's longest sequence (", longest,
                     " tokens); sliding-window attention is not implemented yet");
  if (resolved_device(options) == Device::kCpu) {
    if (options.device == Device::kAuto && cuda_device_count() > 0) {
      log_warn("--device auto: running on the CPU although a GPU is present: " +
               cuda_unsupported(options.policy));
    }
    return make_cpu_engine(source, options);
  }
  const std::string why = cuda_unsupported(options.policy);
  STRATA_INPUT_CHECK(why.empty(), why);
#if STRATA_HAVE_CUDA
  return make_cuda_engine(source, options);
#else
  STRATA_INPUT_CHECK(false, "--device cuda: this build has no CUDA backend");
  return nullptr;
#endif
}

}  // namespace strata
