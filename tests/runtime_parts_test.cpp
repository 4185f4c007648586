// Streams and tiered arrays against plain references: the pieces the offloading schedule is
// built from.
#include <atomic>
#include <random>
#include <thread>

#include "core/error.h"
#include "runtime/stream.h"
#include "runtime/tiered_array.h"
#include "test_util.h"

namespace strata {
namespace {

TEST(Stream, RunsInOrderAndWaitsForOtherStreams) {
  Stream a("a"), b("b");
  std::vector<int> order;
  std::mutex mutex;
  auto record = [&](int v) {
    std::lock_guard<std::mutex> lock(mutex);
    order.push_back(v);
  };
  EventPtr slow = a.enqueue("slow", [&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    record(1);
  });
  b.enqueue("after slow", [&] { record(2); }, {slow});
  b.enqueue("then", [&] { record(3); });
  a.enqueue("a again", [&] { record(4); });
  a.synchronize();
  b.synchronize();
  ASSERT_EQ(order.size(), 4u);
  EXPECT_EQ(order[0], 1);  // b's tasks waited for the event
  EXPECT_LT(std::find(order.begin(), order.end(), 2), std::find(order.begin(), order.end(), 3));
  EXPECT_EQ(a.spans().size(), 2u);
  EXPECT_GT(a.busy_s(), 0.04);
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
