// The hot CPU loops are compiled for AVX-512 and AVX2 besides the baseline, and the loader picks
// the best this machine runs (GCC's function multiversioning): the binaries stay portable, unlike
// -march=native. -ffp-contract=off holds in every version, so only the order of a vectorised
// sum's partial sums depends on the vector width.
#pragma once

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define STRATA_CPU_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define STRATA_CPU_CLONES
#endif
