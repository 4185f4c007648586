// Streams, events, the device pool, the pinned arena and the range allocator under them.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <future>
#include <numeric>
#include <vector>

#include "kernels/cuda/runtime.h"
#include "tests/cuda/cuda_test_util.h"

namespace strata::cuda {
namespace {

TEST(RangeAllocator, FirstFitCoalescesAndRefusesWhenFull) {
  RangeAllocator a(4 * RangeAllocator::kAlign);
  const auto x = a.allocate(1), y = a.allocate(RangeAllocator::kAlign + 1), z = a.allocate(10);
  ASSERT_TRUE(x && y && z);
  EXPECT_EQ(*x, 0u);
  EXPECT_EQ(*y, RangeAllocator::kAlign);
  EXPECT_EQ(*z, 3 * RangeAllocator::kAlign);
  EXPECT_FALSE(a.allocate(1).has_value());  // full: the negative case
  a.release(*y);
  a.release(*x);
  EXPECT_EQ(a.largest_free_bytes(), 3 * RangeAllocator::kAlign);  // x and y merged
  a.release(*z);
  EXPECT_EQ(a.largest_free_bytes(), 4 * RangeAllocator::kAlign);
  EXPECT_EQ(a.used_bytes(), 0u);
  EXPECT_EQ(a.peak_bytes(), 4 * RangeAllocator::kAlign);
  EXPECT_ANY_THROW(a.release(*z));
}

TEST(DevicePool, SteadyStateMakesNoDeviceAllocation) {
  DevicePool pool(64 << 20);
  const size_t free_before = device_free_bytes();
  for (int step = 0; step < 100; ++step) {
    Block a = pool.allocate(10 << 20), b = pool.allocate(3 << 20);
    Block c = pool.allocate(40 << 20);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(c.data()) % RangeAllocator::kAlign, 0u);
  }
  EXPECT_EQ(device_free_bytes(), free_before);
  EXPECT_EQ(pool.used_bytes(), 0u);
  EXPECT_ANY_THROW(pool.allocate(65 << 20));
}

TEST(PinnedArena, RoundTripThroughTwoStreamsOrderedByAnEvent) {
  constexpr size_t kN = 1 << 20;
  PinnedArena arena(16 << 20);
  Block src = arena.allocate(kN * 4), dst = arena.allocate(kN * 4);
  std::iota(src.as<uint32_t>(), src.as<uint32_t>() + kN, 7u);
  std::memset(dst.data(), 0, kN * 4);
  DeviceBuffer dev(kN * 4);
  Stream upload, download;
  Event uploaded, start, end;
  start.record(upload);
  copy_h2d(dev.data(), src.data(), kN * 4, upload);
  uploaded.record(upload);
  uploaded.wait(download);  // download must see the upload without a host sync
  copy_d2h(dst.data(), dev.data(), kN * 4, download);
  end.record(download);
  end.synchronize();
  EXPECT_TRUE(end.done());
  EXPECT_GT(end.elapsed_ms(start), 0.0f);
  EXPECT_EQ(std::memcmp(src.data(), dst.data(), kN * 4), 0);
}

// Host work on one stream must not queue behind host work on another (a disk read behind CPU
// attention): stream a's job waits for stream b's, which runs only if a's does not hold the one
// thread host functions may share. And each stream's jobs still run in order, before what
// follows them on the stream.
TEST(LaunchHost, StreamsRunHostWorkSideBySideAndInOrder) {
  Stream a, b;
  std::promise<void> b_ran;
  std::shared_future<void> b_done = b_ran.get_future().share();
  std::atomic<bool> a_saw_b{false};
  std::vector<int> order;
  launch_host(a, [&] {
    a_saw_b = b_done.wait_for(std::chrono::seconds(20)) == std::future_status::ready;
    order.push_back(1);
  });
  launch_host(a, [&] { order.push_back(2); });
  launch_host(b, [&] { b_ran.set_value(); });
  // The stream waits for its host work: a copy queued after it sees what it wrote.
  PinnedArena pinned(4096);
  const Block host = pinned.allocate(sizeof(int));
  DeviceBuffer device(sizeof(int));
  launch_host(a, [p = host.as<int>()] { *p = 42; });
  copy_h2d(device.data(), host.data(), sizeof(int), a);
  const Block back = pinned.allocate(sizeof(int));
  copy_d2h(back.data(), device.data(), sizeof(int), a);
  a.synchronize();
  b.synchronize();
  EXPECT_TRUE(a_saw_b) << "host work on stream a held up stream b's";
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
  EXPECT_EQ(*back.as<int>(), 42);
}

TEST(Copy2d, MovesAStridedTileBetweenHostAndDevice) {
  constexpr size_t kRows = 37, kSrcPitch = 300, kDstPitch = 128, kWidth = 100;
  std::vector<uint8_t> src(kRows * kSrcPitch), back(kRows * kDstPitch, 0);
  std::iota(src.begin(), src.end(), uint8_t{1});
  DeviceBuffer dev(kRows * kDstPitch);
  Stream s;
  fill_bytes(dev.data(), 0, dev.size_bytes(), s);
  copy_2d(dev.data(), kDstPitch, src.data(), kSrcPitch, kWidth, kRows, s);
  copy_d2h(back.data(), dev.data(), back.size(), s);
  s.synchronize();
  for (size_t r = 0; r < kRows; ++r) {
    for (size_t c = 0; c < kDstPitch; ++c) {
      ASSERT_EQ(back[r * kDstPitch + c], c < kWidth ? src[r * kSrcPitch + c] : 0) << r << "," << c;
    }
  }
}

TEST(Comparator, RejectsPerturbationAndNan) {
  const std::vector<float> want = {1.0f, -2.0f, 3.0f, 0.5f};
  EXPECT_EQ(test::mismatch(want, want, test::kRelF16), "");
  auto off = want;
  off[2] *= 1.01f;
  EXPECT_NE(test::mismatch(off, want, test::kRelF16), "");
  off = want;
  off[0] = std::nanf("");
  EXPECT_NE(test::mismatch(off, want, test::kRelF16), "");
}

}  // namespace
}  // namespace strata::cuda
