// Measurements of this machine's CPU, taken in the same run as what they bound.
#pragma once

namespace strata {

// OpenBLAS sgemm rate on n x n x n, best of a few repetitions, in GFLOP/s.
double measure_sgemm_gflops(int n = 2048, int repetitions = 3);

}  // namespace strata
