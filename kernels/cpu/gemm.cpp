#include "kernels/cpu/gemm.h"

#include <cblas.h>
#include <omp.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

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
dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

// The weight layout oneDNN's matmul picks for itself; the same for any row count on the ISAs
// seen so far, and a fixed layout is what lets a weight be reordered once.
dnnl::memory::desc blocked_desc(int64_t n, int64_t k) {
  using dnnl::memory;
  constexpr int64_t m = 32;
  const memory::desc src({m, k}, memory::data_type::f32, memory::format_tag::ab);
  const memory::desc wei({k, n}, memory::data_type::f32, memory::format_tag::any);
  const memory::desc dst({m, n}, memory::data_type::f32, memory::format_tag::ab);
  return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, wei, dst), engine()).weights_desc();
}

// One matmul primitive per shape, strides and team size, kept per thread: building one takes
// far longer than a decode step's GEMM. ldw 0 with w_t: w is in blocked_desc's layout.
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
      const memory::desc wei =
          ldw == 0 ? blocked_desc(n, k)
                   : memory::desc({k, n}, memory::data_type::f32,
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
  if (ldw == 0 || (!want_openblas() && m * n * k >= kOneDnnMinWork)) {
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

bool can_block_weight(int64_t n, int64_t k) {
#if STRATA_HAVE_ONEDNN
  // n * k at the oneDNN threshold: the plain weight goes to oneDNN at any row count too.
  if (want_openblas() || n * k < kOneDnnMinWork) return false;
  // Asked on every linear call: building a primitive descriptor each time would show.
  static std::mutex mutex;
  static std::map<std::pair<int64_t, int64_t>, bool> known;
  const std::lock_guard lock(mutex);
  auto [it, added] = known.try_emplace({n, k}, false);
  if (added) {
    it->second = blocked_desc(n, k).get_size() == static_cast<size_t>(n * k) * sizeof(float);
  }
  return it->second;
#else
  (void)n;
  (void)k;
  return false;
#endif
}

void block_weight(float* w, int64_t n, int64_t k) {
  STRATA_CHECK(can_block_weight(n, k), "weight [", n, ", ", k, "] cannot be blocked in place");
#if STRATA_HAVE_ONEDNN
  using dnnl::memory;
  apply_threads();
  std::vector<float> blocked(static_cast<size_t>(n * k));
  memory plain(memory::desc({k, n}, memory::data_type::f32, memory::dims{1, k}), engine(), w);
  memory out(blocked_desc(n, k), engine(), blocked.data());
  dnnl::stream stream(engine());
  dnnl::reorder(plain, out).execute(stream, plain, out);
  stream.wait();
  std::memcpy(w, blocked.data(), blocked.size() * sizeof(float));
#endif
}

void gemm_nt_blocked(const float* x, int64_t ldx, const float* w, float* y, int64_t ldy, int64_t m,
                     int64_t n, int64_t k) {
  STRATA_CHECK(STRATA_HAVE_ONEDNN && !want_openblas(), "blocked weights need oneDNN's GEMM");
  gemm(x, ldx, w, 0, true, y, ldy, m, n, k);
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
