// The host emulation's streams: work is queued per stream and runs only when the host waits
// (a stream or event synchronise, a copy to pageable memory), in a seeded random interleaving of
// the streams that only respects the events they wait on. A missing event therefore shows up as
// a wrong result here, as it would on a GPU under the wrong timing.
#pragma once

#include <cstddef>
#include <functional>

#include "kernels/cuda/runtime.h"

namespace strata::cuda::host {

// Queues `work` on `stream`.
void enqueue(const Stream& stream, std::function<void()> work);
// Runs queued work until everything queued on `stream` so far is done.
void drain(const Stream& stream);

// Emulated device memory: a kernel or copy that reads or writes outside it is an error.
void check_device(const void* p, size_t bytes, const char* what);
bool is_device(const void* p);
bool is_pinned(const void* p);

}  // namespace strata::cuda::host
