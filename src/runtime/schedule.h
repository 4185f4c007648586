// FlexGen's block schedule, written once for every backend: one forward step over (stage j,
// GPU batch k), loads of stage j+1 and batch k+1 ahead of compute (j, k), stores of k-1 behind
// it, disk reads of weights submitted further ahead. The loop owns ring slots, marks and disk
// tickets; a backend (the CPU engine, the CUDA engine) says where memory lives, how bytes move
// and how a stage computes, and orders its work on three lanes by marks, as cudaEventRecord /
// cudaStreamWaitEvent do.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "runtime/stages.h"

namespace strata {

inline constexpr int kRing = 3;  // working buffers for batch k-1 (storing), k (computing), k+1
// Disk reads of stages s, s+1 and s+2 are in flight together, so the disk queue never drains
// between stages.
inline constexpr int kWeightSlots = 3;

// Where work runs. Without overlap every lane is the compute lane.
enum class Lane { kLoad, kCompute, kStore };

// Ordering points the schedule names. Index: weight buffer (2), staging slot (kWeightSlots),
// ring slot (kRing), or GPU batch over all groups (kActStored).
enum class MarkKind {
  kWeightsFetched,  // a stage's disk part is in staging
  kWeightsReady,    // a weight buffer holds its stage in compute form
  kStageDone,       // the last compute that read a weight buffer
  kStagingFree,     // a staging slot's bytes have been used
  kComputed,        // the latest compute
  kCacheReady,
  kCacheFree,
  kActReady,
  kActFree,
  kActStored,  // a batch's hidden rows are back on their tiers
  kCount
};
struct Mark {
  MarkKind kind;
  int64_t index = 0;
};

// One event per mark, of the backend's event type.
template <typename E>
class MarkTable {
 public:
  explicit MarkTable(int64_t n_batches) {
    const int64_t sizes[] = {2, 2, 2, kWeightSlots, 1, kRing, kRing, kRing, kRing, n_batches};
    for (size_t i = 0; i < table_.size(); ++i) table_[i].resize(static_cast<size_t>(sizes[i]));
  }
  E& operator[](Mark m) {
    return table_[static_cast<size_t>(m.kind)][static_cast<size_t>(m.index)];
  }

 private:
  std::array<std::vector<E>, static_cast<size_t>(MarkKind::kCount)> table_;
};

// Stage s's work on GPU batch k, as the schedule hands it to the backend.
struct BatchWork {
  int64_t stage = 0;
  const StageLayout* layout = nullptr;
  int64_t k = 0;      // within the step
  int64_t batch = 0;  // over all groups: the hidden rows and cache it owns
  const std::vector<SequenceStep>* steps = nullptr;
  const std::vector<int64_t>* lengths = nullptr;  // cached tokens per slot
  int act_slot = -1;    // ring buffer holding its hidden rows, -1 when computed in place
  int cache_slot = -1;  // ring buffer holding its cache rows, -1 when none crosses
};

// Calls f(begin, end) for each element range of batch w's cache block (KvBlock's layout: per
// slot its keys, then its values, [capacity, hidden] each) holding each sequence's cached
// positions [0, len) (new_rows false) or the ones this step adds, [len, len + tokens).
template <typename F>
void for_each_kv_range(const BatchWork& w, int64_t capacity, int64_t hidden, bool new_rows, F&& f) {
  for (const auto& st : *w.steps) {
    const int64_t len = (*w.lengths)[static_cast<size_t>(st.slot)];
    const int64_t first = new_rows ? len : 0;
    const int64_t count = new_rows ? static_cast<int64_t>(st.tokens.size()) : len;
    if (count == 0) continue;
    for (int64_t part = 0; part < 2; ++part) {
      const int64_t begin = ((2 * st.slot + part) * capacity + first) * hidden;
      f(begin, begin + count * hidden);
    }
  }
}

// What a backend implements. Work issued on a lane runs in issue order, after the marks the
// lane was told to wait for; record(lane, m) makes m reached once the lane's work so far is.
class ScheduleBackend {
 public:
  virtual ~ScheduleBackend() = default;

  virtual void record(Lane lane, Mark mark) = 0;
  virtual void wait(Lane lane, Mark mark) = 0;

  virtual void begin_step(const std::vector<std::vector<SequenceStep>>& steps,
                          const std::vector<std::vector<int64_t>>& lengths) = 0;
  // Drains every lane; errors of the step surface here.
  virtual void end_step() = 0;

  // False when stage s is computed where it lives (no buffer, no reads).
  virtual bool weights_loaded(int64_t s) const = 0;
  // Where a stage's bytes become its compute form in a weight buffer.
  virtual Lane expand_lane() const = 0;
  // Submits the read of stage s's disk part into staging `slot` once `slot_free` is reached;
  // *ticket (0: nothing read) is set by the time finish_weight_read's work runs.
  virtual void submit_weight_read(int64_t s, int slot, Mark slot_free, uint64_t* ticket) = 0;
  // Waits for that read, on the load lane or the host.
  virtual void finish_weight_read(int64_t s, uint64_t* ticket) = 0;
  // Stage s into weight buffer `buffer` from its tiers and staging `slot`, on expand_lane().
  virtual void expand_weights(int64_t s, int buffer, int slot) = 0;

  virtual bool hidden_in_place(int64_t batch) const = 0;
  // Whether the work's KV cache crosses into a ring buffer (false: in place, or none).
  virtual bool cache_crosses(const BatchWork& w) const = 0;
  virtual void load_hidden(const BatchWork& w) = 0;   // load lane
  virtual void load_cache(const BatchWork& w) = 0;    // load lane: the valid rows
  virtual void compute(const BatchWork& w) = 0;       // compute lane
  virtual void store_cache(const BatchWork& w) = 0;   // store lane: the new rows
  virtual void store_hidden(const BatchWork& w) = 0;  // store lane
};

class BlockSchedule {
 public:
  // overlap false (--no-overlap): each disk read is issued when its stage is next, so no read
  // is in flight while anything computes.
  BlockSchedule(ScheduleBackend& backend, const std::vector<StageLayout>& layouts, bool overlap)
      : b_(backend), layouts_(layouts), read_ahead_(overlap ? kWeightSlots - 1 : 1) {}
  // Finishes reads still in flight (they write into staging the backend owns): call before the
  // backend's buffers go.
  void drain() noexcept;

  // One forward of GPU batches [base, base + steps.size()) (over all groups).
  void run(const std::vector<std::vector<SequenceStep>>& steps,
           const std::vector<std::vector<int64_t>>& lengths, int64_t base);

 private:
  void submit(int64_t s, uint64_t* ticket);
  void load_weights(int64_t s);
  void run_batch(BatchWork& w);

  ScheduleBackend& b_;
  const std::vector<StageLayout>& layouts_;
  const int64_t read_ahead_;  // stages whose reads are in flight as a stage's compute is issued
  std::vector<uint64_t> tickets_;
  int64_t cache_item_ = 0, act_item_ = 0;
  // Reads of the next step's first stages, submitted as this one ends so no step starts with an
  // idle disk.
  bool carried_ = false;
  uint64_t carried_tickets_[kWeightSlots - 1] = {};
};

}  // namespace strata
