#include "kernels/cpu/gemm.h"

#include <cblas.h>
#include <omp.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <tuple>

#include "core/error.h"

#if STRATA_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace strata::cpu {
namespace {

std::atomic<int> g_threads{0};

// Small products stay on OpenBLAS: oneDNN saves microseconds there, and its blocking depends on
// the column count, so HeteGen's split of a tiny model's layer drifts past the tests' 1e-5.
constexpr int64_t kOneDnnMinWork = int64_t{1} << 18;

// This thread's OpenMP team size as set_compute_threads asks (OpenMP keeps it per thread).
void apply_threads() {
  const int want = g_threads.load(std::memory_order_relaxed);
  if (want > 0 && omp_get_max_threads() != want) omp_set_num_threads(want);
}

// w_t: w is [n, k] (used transposed), else [k, n].
void openblas_gemm(const float* x, int64_t ldx, const float* w, int64_t ldw, bool w_t, float* y,
                   int64_t ldy, int64_t m, int64_t n, int64_t k) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, w_t ? CblasTrans : CblasNoTrans, static_cast<blasint>(m),
              static_cast<blasint>(n), static_cast<blasint>(k), 1.0f, x, static_cast<blasint>(ldx),
              w, static_cast<blasint>(ldw), 0.0f, y, static_cast<blasint>(ldy));
}

bool want_openblas() {
  static const bool openblas = [] {
    const char* v = std::getenv("STRATA_GEMM");
    return v != nullptr && std::strcmp(v, "openblas") == 0;
  }();
  return openblas;
}

#if STRATA_HAVE_ONEDNN
// One matmul primitive per shape, strides and team size, kept per thread: building one takes
// far longer than a decode step's GEMM.
class MatmulCache {
 public:
  void run(const float* x, int64_t ldx, const float* w, int64_t ldw, bool w_t, float* y,
           int64_t ldy, int64_t m, int64_t n, int64_t k) {
    using dnnl::memory;
    // Inside a parallel region OpenMP gives oneDNN a team of one.
    const Key key{m, n, k, ldx, w_t ? ldw : -ldw, ldy, omp_get_max_threads()};
    auto it = primitives_.find(key);
    if (it == primitives_.end()) {
      if (primitives_.size() >= kMaxEntries) primitives_.clear();
      const memory::desc src({m, k}, memory::data_type::f32, memory::dims{ldx, 1});
      const memory::desc wei({k, n}, memory::data_type::f32,
                             w_t ? memory::dims{1, ldw} : memory::dims{ldw, 1});
      const memory::desc dst({m, n}, memory::data_type::f32, memory::dims{ldy, 1});
      const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, wei, dst), engine());
      it = primitives_.emplace(key, Entry{dnnl::matmul(pd), src, wei, dst}).first;
    }
    Entry& e = it->second;
    memory src(e.src, engine(), const_cast<float*>(x));
    memory wei(e.wei, engine(), const_cast<float*>(w));
    memory dst(e.dst, engine(), y);
    e.matmul.execute(stream_, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}});
    stream_.wait();
  }

 private:
  using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int>;
  struct Entry {
    dnnl::matmul matmul;
    dnnl::memory::desc src, wei, dst;
  };
  static constexpr size_t kMaxEntries = 512;  // packed prefill makes a shape per row count

  static dnnl::engine& engine() {
    static dnnl::engine e(dnnl::engine::kind::cpu, 0);
    return e;
  }

  dnnl::stream stream_{engine()};
  std::map<Key, Entry> primitives_;
};
#endif

void gemm(const float* x, int64_t ldx, const float* w, int64_t ldw, bool w_t, float* y, int64_t ldy,
          int64_t m, int64_t n, int64_t k) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i) std::memset(y + i * ldy, 0, static_cast<size_t>(n) * 4);
    return;
  }
  apply_threads();
#if STRATA_HAVE_ONEDNN
  if (!want_openblas() && m * n * k >= kOneDnnMinWork) {
    thread_local MatmulCache cache;
    cache.run(x, ldx, w, ldw, w_t, y, ldy, m, n, k);
    return;
  }
#endif
  openblas_gemm(x, ldx, w, ldw, w_t, y, ldy, m, n, k);
}

}  // namespace

void gemm_nt(const float* x, int64_t ldx, const float* w, int64_t ldw, float* y, int64_t ldy,
             int64_t m, int64_t n, int64_t k) {
  gemm(x, ldx, w, ldw, true, y, ldy, m, n, k);
}

void gemm_nn(const float* x, int64_t ldx, const float* v, int64_t ldv, float* y, int64_t ldy,
             int64_t m, int64_t n, int64_t k) {
  gemm(x, ldx, v, ldv, false, y, ldy, m, n, k);
}

bool gemm_nests() {
  return gemm_library() == "onednn";
}

std::string gemm_library() {
#if STRATA_HAVE_ONEDNN
  if (!want_openblas()) return "onednn";
#endif
  return "openblas";
}

void set_compute_threads(int threads) {
  STRATA_CHECK(threads >= 0, "compute threads ", threads);
  g_threads = threads;
  if (threads > 0) openblas_set_num_threads(threads);
  apply_threads();
}

int compute_threads() {
  const int t = g_threads.load();
  return t > 0 ? t : omp_get_max_threads();
}

}  // namespace strata::cpu
