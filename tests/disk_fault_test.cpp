// Faults of the disk tier, injected (STRATA_DISK_FAULT) or made (a file cut under the store): the
// store reports each on the transfer it struck, naming the file, and lets the rest finish; a run
// of `strata generate` then ends in one line and a non-zero status, never a crash, a hang or a
// silent wrong answer, keeps the results it wrote and resumes to the uninterrupted run's output.
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "core/buffer.h"
#include "core/error.h"
#include "runtime/disk_store.h"
#include "test_util.h"

namespace strata {
namespace {

namespace fs = std::filesystem;
using test::lines_of;
using test::read_text;
using test::run_strata;
using test::TempDir;
using test::write_text;

constexpr uint64_t kChunk = DiskStore::kChunkBytes;

// Distinct bytes per position, so a transfer that moved the wrong part is seen.
void fill_pattern(HostBuffer& buffer, uint32_t seed) {
  auto* words = buffer.as<uint32_t>();
  for (uint64_t i = 0; i < buffer.size_bytes() / 4; ++i) words[i] = seed * 2654435761u + i;
}

std::string error_of(const std::function<void()>& f, int* status = nullptr) {
  try {
    f();
  } catch (const Error& e) {
    if (status) *status = e.exit_status();
    return e.what();
  }
  return "";
}

void expect_parts(const std::string& text, std::initializer_list<std::string> parts) {
  for (const auto& part : parts) EXPECT_NE(text.find(part), std::string::npos) << text;
}

TEST(DiskFault, SpecsParseAndBadOnesNameTheVariable) {
  const DiskFault eio = DiskFault::parse("read:3:EIO");
  EXPECT_EQ(eio.kind, DiskFault::Kind::kErrno);
  EXPECT_FALSE(eio.is_write);
  EXPECT_EQ(eio.after_chunks, 3u);
  EXPECT_EQ(eio.error, EIO);
  const DiskFault full = DiskFault::parse("write:0:ENOSPC");
  EXPECT_TRUE(full.is_write);
  EXPECT_EQ(full.error, ENOSPC);
  EXPECT_EQ(DiskFault::parse("write:7:short").kind, DiskFault::Kind::kShort);
  EXPECT_EQ(DiskFault::parse("read:1:eof").kind, DiskFault::Kind::kEof);
  EXPECT_EQ(DiskFault::parse("read:1:truncate").kind, DiskFault::Kind::kTruncate);
  for (const std::string bad : {"", "read", "read:1", "seek:1:EIO", "read:x:EIO", "read:-1:EIO",
                                "read:1:EPERM", "write:1:eof", "write:1:truncate"}) {
    int status = 0;
    const std::string e = error_of([&] { DiskFault::parse(bad); }, &status);
    EXPECT_EQ(status, kExitBadInput) << bad;
    expect_parts(e, {"STRATA_DISK_FAULT=" + bad});
  }
}

// Four reads of three chunks each in flight together; the fault strikes the fifth chunk, in the
// second read: that read fails naming the file, and the other three bring back their bytes.
void expect_one_read_fails(DiskFault fault, std::initializer_list<std::string> parts) {
  TempDir dir;
  const uint64_t size = 3 * kChunk;
  DiskStore store(dir.path().string(), 4 * size, fault);
  const DiskStore::Extent extent = store.allocate(4 * size);
  HostBuffer src(4 * size);
  fill_pattern(src, 1);
  store.write(extent, 0, src.data(), src.size_bytes());
  std::vector<HostBuffer> dst;
  std::vector<uint64_t> tickets;
  for (uint64_t i = 0; i < 4; ++i) {
    dst.emplace_back(size);
    std::memset(dst.back().data(), 0, size);
    tickets.push_back(store.submit_read(extent, i * size, dst.back().data(), size));
  }
  for (uint64_t i = 0; i < 4; ++i) {
    int status = 0;
    const std::string e = error_of([&] { store.wait(tickets[i]); }, &status);
    if (i == 1) {
      EXPECT_EQ(status, kExitBadInput);
      expect_parts(e, {store.path(), dir.path().string()});
      expect_parts(e, parts);
      EXPECT_EQ(e.find('\n'), std::string::npos) << e;
    } else {
      EXPECT_EQ(e, "") << i;
      EXPECT_EQ(std::memcmp(dst[i].data(), src.as<uint8_t>() + i * size, size), 0) << i;
    }
  }
  // The store goes on: a later read is whole.
  HostBuffer again(size);
  store.read(extent, size, again.data(), size);
  EXPECT_EQ(std::memcmp(again.data(), src.as<uint8_t>() + size, size), 0);
}

TEST(DiskFault, EioOnOneReadFailsOnlyThatRead) {
  expect_one_read_fails(DiskFault::parse("read:4:EIO"),
                        {"reading 3145728 bytes", "Input/output error"});
}

TEST(DiskFault, ReadMeetingTheEndOfTheFileSaysSo) {
  expect_one_read_fails(DiskFault::parse("read:4:eof"),
                        {"the file ends there", "at byte " + std::to_string(4 * kChunk)});
}

TEST(DiskFault, ShortTransfersAreCompletedNotPassedOff) {
  for (const std::string spec : {"read:2:short", "write:2:short"}) {
    SCOPED_TRACE(spec);
    TempDir dir;
    const uint64_t size = 5 * kChunk;
    DiskStore store(dir.path().string(), size, DiskFault::parse(spec));
    const DiskStore::Extent extent = store.allocate(size);
    HostBuffer src(size), dst(size);
    fill_pattern(src, 2);
    std::memset(dst.data(), 0, size);
    store.write(extent, 0, src.data(), size);
    store.read(extent, 0, dst.data(), size);
    EXPECT_EQ(std::memcmp(dst.data(), src.data(), size), 0);
    EXPECT_EQ(store.bytes_read(), size);
    EXPECT_EQ(store.bytes_written(), size);
  }
}

TEST(DiskFault, DiskFullOnAWriteNamesTheFileAndTheDisk) {
  TempDir dir;
  DiskStore store(dir.path().string(), 4 * kChunk, DiskFault::parse("write:2:ENOSPC"));
  const DiskStore::Extent extent = store.allocate(4 * kChunk);
  HostBuffer src(4 * kChunk);
  fill_pattern(src, 3);
  int status = 0;
  const std::string e = error_of([&] { store.write(extent, 0, src.data(), 4 * kChunk); }, &status);
  EXPECT_EQ(status, kExitBadInput);
  expect_parts(e, {store.path(), "writing 4194304 bytes", "No space left on device", "full"});
}

// A file cut under the store: reads past the cut and before it, and a write that would extend the
// file again, are refused (the cut part would read back as zeros).
TEST(DiskFault, FileTruncatedUnderTheStoreFailsEveryLaterTransfer) {
  TempDir dir;
  const uint64_t size = 4 * kChunk;
  DiskStore store(dir.path().string(), size);
  const DiskStore::Extent extent = store.allocate(size);
  HostBuffer src(size), dst(size);
  fill_pattern(src, 4);
  store.write(extent, 0, src.data(), size);
  store.truncate_for_test(size / 2);
  const std::string past = error_of([&] { store.read(extent, size / 2, dst.data(), kChunk); });
  expect_parts(past, {store.path(), "truncated under the engine"});
  const std::string before = error_of([&] { store.read(extent, 0, dst.data(), kChunk); });
  expect_parts(before, {store.path(), "truncated under the engine", std::to_string(size / 2)});
  const std::string write =
      error_of([&] { store.write(extent, size - kChunk, src.data(), kChunk); });
  expect_parts(write, {store.path(), "truncated"});
  const std::string hole = error_of([&] { store.read(extent, size / 2, dst.data(), kChunk); });
  EXPECT_NE(hole, "") << "a read of the cut part passed after the file grew again";
}

TEST(DiskFault, InjectedTruncationIsSeenOnTheReadItStruck) {
  TempDir dir;
  const uint64_t size = 3 * kChunk;
  DiskStore store(dir.path().string(), size, DiskFault::parse("read:1:truncate"));
  const DiskStore::Extent extent = store.allocate(size);
  HostBuffer buffer(size);
  fill_pattern(buffer, 6);
  store.write(extent, 0, buffer.data(), size);
  expect_parts(error_of([&] { store.read(extent, 0, buffer.data(), size); }),
               {store.path(), "the file ends there"});
  expect_parts(error_of([&] { store.read(extent, 0, buffer.data(), kChunk); }),
               {store.path(), "is 0 bytes", "truncated under the engine"});
}

// An error with reads of other tickets still in flight: drain() returns once the kernel is done
// with every buffer, so they can go; the store's end does not hang.
TEST(DiskFault, DrainWaitsForTransfersNobodyWaitsFor) {
  TempDir dir;
  const uint64_t size = 8 * kChunk;
  DiskStore store(dir.path().string(), 4 * size, DiskFault::parse("read:0:EIO"));
  const DiskStore::Extent extent = store.allocate(4 * size);
  HostBuffer src(4 * size);
  fill_pattern(src, 5);
  store.write(extent, 0, src.data(), src.size_bytes());
  const uint64_t before = store.bytes_read();
  {
    std::vector<HostBuffer> dst;
    std::vector<uint64_t> tickets;
    for (uint64_t i = 0; i < 4; ++i) {
      dst.emplace_back(size);
      tickets.push_back(store.submit_read(extent, i * size, dst.back().data(), size));
    }
    EXPECT_NE(error_of([&] { store.wait(tickets[0]); }), "");
    store.drain();
    // Every chunk but the failed one is done: nothing is left to write into dst.
    EXPECT_EQ(store.bytes_read() - before, 4 * size - kChunk);
  }
}

// --- strata generate under faults -------------------------------------------------------------

struct Job {
  TempDir dir;
  std::string offload, out, want;
  Job() : offload(dir.file("offload")), out(dir.file("out.jsonl")), want(dir.file("want.jsonl")) {
    fs::create_directory(offload);
    std::string text;
    // Lengths differ, so results finish step by step through the run.
    for (int i = 0; i < 12; ++i) {
      const nlohmann::json ids = {2, 10 + i, 20 + 3 * i, 7};
      text +=
          nlohmann::json{
              {"id", "r" + std::to_string(i)}, {"input_ids", ids}, {"max_tokens", 2 + 3 * i}}
              .dump() +
          "\n";
    }
    write_text(dir.file("in.jsonl"), text);
  }
  // Weights and cache all on disk; `fault` set in the environment for this run only. The
  // timeout turns a hang into a failure.
  test::RunResult generate(const std::string& output, const std::string& fault = "") const {
    return run_strata(
        "generate --model " + test::model_dir("opt-pub-tiny") + " --input " + dir.file("in.jsonl") +
            " --threads 1 --gpu-batch-size 2 --percent 0 0 0 0 100 0 "
            "--offload-dir " +
            offload + " --output " + output,
        (fault.empty() ? "" : "STRATA_DISK_FAULT=" + fault + " ") + "timeout -s KILL 120 ");
  }
};

std::vector<std::string> sorted(std::vector<std::string> lines) {
  std::sort(lines.begin(), lines.end());
  return lines;
}

// The run struck by `fault` ends in one line naming the store's file and `error`, status 2; the
// offload dir is empty; the lines it wrote are the uninterrupted run's; a re-run keeps them and
// ends with exactly the uninterrupted run's lines.
void expect_fault_ends_run_and_resumes(const std::string& fault, const std::string& error,
                                       bool some_results_first) {
  SCOPED_TRACE(fault);
  Job job;
  const auto clean = job.generate(job.want);
  ASSERT_EQ(clean.exit_status, 0) << clean.err;
  const std::vector<std::string> want = sorted(lines_of(read_text(job.want)));
  ASSERT_EQ(want.size(), 12u);

  const auto r = job.generate(job.out, fault);
  EXPECT_EQ(r.exit_status, 2) << r.err;
  ASSERT_FALSE(r.err.empty());
  const std::string last = lines_of(r.err).back();
  expect_parts(last,
               {"strata generate: error: disk tier:", job.offload + "/strata-offload-", error});
  EXPECT_EQ(r.err.find("internal"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::is_empty(job.offload)) << "the offload dir keeps a file";

  const std::string kept = fs::exists(job.out) ? read_text(job.out) : "";
  const auto kept_lines = lines_of(kept);
  EXPECT_EQ(kept.empty() || kept.back() == '\n', true) << "a torn line";
  if (some_results_first) {
    // The fault struck in the middle of the run: some results were out, not all.
    EXPECT_GT(kept_lines.size(), 0u) << r.err;
    EXPECT_LT(kept_lines.size(), want.size()) << r.err;
  } else {
    EXPECT_EQ(kept_lines.size(), 0u);
  }
  for (const auto& line : kept_lines)
    EXPECT_TRUE(std::binary_search(want.begin(), want.end(), line)) << line;

  const auto resumed = job.generate(job.out);
  ASSERT_EQ(resumed.exit_status, 0) << resumed.err;
  const std::string final_text = read_text(job.out);
  EXPECT_EQ(final_text.substr(0, kept.size()), kept) << "the re-run changed kept lines";
  EXPECT_EQ(sorted(lines_of(final_text)), want);
  EXPECT_TRUE(fs::is_empty(job.offload));
}

// opt-pub-tiny's stages are under a chunk each: a step reads one chunk per stage and cache
// block, and writes one per cache block. The whole run reads under 2000 chunks; 1200 reads or 500
// writes in, about half the results are out.
TEST(DiskFaultCli, EioOnAReadMidRun) {
  expect_fault_ends_run_and_resumes("read:1200:EIO", "Input/output error", true);
}

TEST(DiskFaultCli, DiskFullOnACacheWriteMidRun) {
  expect_fault_ends_run_and_resumes("write:500:ENOSPC", "No space left on device", true);
}

TEST(DiskFaultCli, DiskFullWhileWritingTheWeights) {
  expect_fault_ends_run_and_resumes("write:0:ENOSPC", "No space left on device", false);
}

TEST(DiskFaultCli, FileTruncatedMidRun) {
  // The read it struck meets the end, or another transfer sees the file's size first.
  expect_fault_ends_run_and_resumes("read:1200:truncate", "truncated under the engine", true);
}

TEST(DiskFaultCli, ShortReadAtTheEndMidRun) {
  expect_fault_ends_run_and_resumes("read:1200:eof", "the file ends there", true);
}

// A short transfer is asked for again: the run's output equals the uninterrupted run's.
TEST(DiskFaultCli, ShortTransfersLeaveTheOutputUnchanged) {
  Job job;
  ASSERT_EQ(job.generate(job.want).exit_status, 0);
  for (const std::string fault : {"read:0:short", "read:1200:short", "write:0:short"}) {
    SCOPED_TRACE(fault);
    fs::remove(job.out);
    const auto r = job.generate(job.out, fault);
    ASSERT_EQ(r.exit_status, 0) << r.err;
    EXPECT_EQ(sorted(lines_of(read_text(job.out))), sorted(lines_of(read_text(job.want))));
  }
}

}  // namespace
}  // namespace strata
