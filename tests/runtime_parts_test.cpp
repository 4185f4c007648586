// Streams and tiered arrays against plain references: the pieces the offloading schedule is
// built from.
#include <atomic>
#include <random>
#include <thread>

#include "core/error.h"
#include "core/units.h"
#include "runtime/stream.h"
#include "runtime/tiered_array.h"
#include "test_util.h"

namespace strata {
namespace {

// b's "after slow" waits for a's slow task, which is held until b has run a task of its own, so
// b is running and would take "after slow" at once if it ignored the event. Checked by the order
// of the work and of the spans on the shared trace clock, over many rounds (no sleeps).
// Sizes between 2^63 and 2^64 bytes convert exactly (llround stopped at 2^63); 2^64 and past
// are input errors.
TEST(Units, ParseBytesUpTo2To64) {
  EXPECT_EQ(parse_bytes("16GiB", "x"), uint64_t{16} << 30);
  EXPECT_EQ(parse_bytes("10000000TB", "x"), uint64_t{10000000000000000000u});
  try {
    parse_bytes("20000000TB", "--cpu-mem");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.exit_status(), kExitBadInput);
    EXPECT_NE(std::string(e.what()).find("--cpu-mem: '20000000TB' is too large"), std::string::npos)
        << e.what();
  }
}

TEST(Stream, RunsInOrderAndWaitsForOtherStreams) {
  Stream a("a"), b("b");
  for (int round = 0; round < 200; ++round) {
    SCOPED_TRACE(testing::Message() << "round " << round);
    a.clear_stats();
    b.clear_stats();
    std::vector<int> order;
    std::mutex mutex;
    auto record = [&](int v) {
      std::lock_guard<std::mutex> lock(mutex);
      order.push_back(v);
    };
    Event b_started;
    EventPtr slow = a.enqueue("slow", [&] {
      b_started.wait();
      record(1);
    });
    b.enqueue("b first", [&] {
      record(0);
      b_started.signal();
    });
    b.enqueue("after slow", [&] { record(2); }, {slow});
    b.enqueue("then", [&] { record(3); });
    a.enqueue("a again", [&] { record(4); });
    a.synchronize();
    b.synchronize();
    ASSERT_EQ(order.size(), 5u);
    const auto at = [&](int v) { return std::find(order.begin(), order.end(), v) - order.begin(); };
    ASSERT_LT(at(0), at(1));
    ASSERT_LT(at(1), at(2)) << "b ran past the event of a's slow task";
    ASSERT_LT(at(2), at(3));
    ASSERT_LT(at(1), at(4));
    const auto a_spans = a.spans(), b_spans = b.spans();
    ASSERT_EQ(a_spans.size(), 2u);
    ASSERT_EQ(b_spans.size(), 3u);
    ASSERT_EQ(b_spans[1].name, "after slow");
    ASSERT_GE(b_spans[1].begin_s, a_spans[0].end_s);  // began after slow had ended
    EXPECT_DOUBLE_EQ(a.busy_s(), (a_spans[0].end_s - a_spans[0].begin_s) +
                                     (a_spans[1].end_s - a_spans[1].begin_s));
  }
}

TEST(Stream, ErrorsSurfaceAtSynchronizeAndDependentsStillFinish) {
  Stream a("a"), b("b");
  std::atomic<int> ran{0};
  EventPtr failing = a.enqueue("fails", [] { throw_input("boom"); });
  a.enqueue("skipped after the error", [&] { ++ran; });
  b.enqueue("waits on the failed task", [&] { ++ran; }, {failing});
  b.synchronize();  // no hang: the failed task's event still fires
  EXPECT_EQ(ran.load(), 1);
  EXPECT_THROW(a.synchronize(), Error);
  a.enqueue("runs again", [&] { ++ran; });
  a.synchronize();
  EXPECT_EQ(ran.load(), 2);
}

// Loads and stores of random ranges over random splits equal the same edits on a plain array.
TEST(TieredArray, RandomRangesMatchAPlainArray) {
  test::TempDir dir;
  std::mt19937 rng(11);
  for (DType stored : {DType::kF32, DType::kF16}) {
    for (TierSplit split : {TierSplit{100, 0}, TierSplit{0, 100}, TierSplit{0, 0},
                            TierSplit{33.3, 21.7}, TierSplit{0.01, 99.9}, TierSplit{50, 0}}) {
      SCOPED_TRACE(testing::Message()
                   << dtype_name(stored) << " " << split.gpu_percent << "/" << split.cpu_percent);
      const int64_t n = 10007;
      DiskStore disk(dir.path().string(), 1 << 20);
      TierCounters counters;
      TieredArray array(n, StoredFormat::plain(stored), split, &disk, counters);
      // Values every dtype holds exactly, so stores and loads round-trip bit for bit.
      std::vector<float> plain(n);
      for (auto& v : plain) v = static_cast<float>(static_cast<int>(rng() % 2001) - 1000) / 8;
      std::vector<uint8_t> packed(n * dtype_size(stored));
      convert_from_f32(stored, plain.data(), packed.data(), n);
      array.fill_stored(packed.data());
      HostBuffer staging(array.staging_bytes() + 4096);
      std::vector<float> work(n, NAN);
      array.load(work.data(), 0, n, staging);
      EXPECT_EQ(work, plain);
      for (int round = 0; round < 20; ++round) {
        int64_t b = rng() % n, e = rng() % n;
        if (b > e) std::swap(b, e);
        ++e;
        for (int64_t i = b; i < e; ++i) work[i] = plain[i] = static_cast<float>(rng() % 512) / 4;
        array.store(work.data(), b, e, staging);
        std::vector<float> check(n, NAN);
        int64_t lb = rng() % n, le = rng() % n;
        if (lb > le) std::swap(lb, le);
        ++le;
        array.load(check.data(), lb, le, staging);
        for (int64_t i = lb; i < le; ++i) ASSERT_EQ(check[i], plain[i]) << "element " << i;
      }
      const ElementSplit e = array.split();
      EXPECT_EQ(e.gpu + e.cpu + e.disk, n);
    }
  }
}

}  // namespace
}  // namespace strata
