// The CPU engine: weights, KV cache and activations placed over the GPU, CPU and disk tiers by a
// Policy, the GPU tier being host memory and each of the schedule's lanes (runtime/schedule.h) a
// host thread, so loads of stage j+1 and of batch k+1 overlap compute of (j, k) and stores of k-1.
#pragma once

#include <memory>

#include "runtime/engine.h"

namespace strata {

std::unique_ptr<Engine> make_cpu_engine(const WeightSource& source, const EngineOptions& options);

}  // namespace strata
