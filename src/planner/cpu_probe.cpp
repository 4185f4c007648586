#include "planner/cpu_probe.h"

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <vector>

namespace strata {

double measure_sgemm_gflops(int n, int repetitions) {
  const size_t size = static_cast<size_t>(n) * n;
  std::vector<float> a(size, 0.5f), b(size, 0.25f), c(size);
  double best = 1e30;
  for (int r = 0; r < repetitions + 1; ++r) {  // the first run warms caches and threads
    const auto begin = std::chrono::steady_clock::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a.data(), n, b.data(), n,
                0.0f, c.data(), n);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
    if (r > 0) best = std::min(best, s);
  }
  return 2.0 * n * static_cast<double>(n) * n / best / 1e9;
}

}  // namespace strata
