#include "runtime/schedule.h"

namespace strata {

void BlockSchedule::drain() noexcept {
  try {
    b_.end_step();
    if (carried_) {
      for (int64_t s = 0; s < read_ahead_; ++s) {
        if (b_.weights_loaded(s)) b_.finish_weight_read(s, &carried_tickets_[s]);
      }
      carried_ = false;
      b_.end_step();
    }
  } catch (...) {  // the error was reported where it happened
  }
}

// The disk read of stage s into its staging slot, once the stage that used the slot before is
// done with it.
void BlockSchedule::submit(int64_t s, uint64_t* ticket) {
  if (!b_.weights_loaded(s)) return;
  const int slot = static_cast<int>(s % kWeightSlots);
  b_.submit_weight_read(s, slot, {MarkKind::kStagingFree, slot}, ticket);
}

// Stage s into weight buffer s % 2 once stage s - 2 has finished reading it.
void BlockSchedule::load_weights(int64_t s) {
  if (!b_.weights_loaded(s)) return;
  const int buffer = static_cast<int>(s % 2), slot = static_cast<int>(s % kWeightSlots);
  const Lane lane = b_.expand_lane();
  b_.finish_weight_read(s, &tickets_[static_cast<size_t>(s)]);
  if (lane != Lane::kLoad) {  // expansion elsewhere waits for the read
    b_.record(Lane::kLoad, {MarkKind::kWeightsFetched, buffer});
    b_.wait(lane, {MarkKind::kWeightsFetched, buffer});
  }
  b_.wait(lane, {MarkKind::kStageDone, buffer});
  b_.expand_weights(s, buffer, slot);
  b_.record(lane, {MarkKind::kStagingFree, slot});
  b_.record(lane, {MarkKind::kWeightsReady, buffer});
}

// Batch k's hidden rows and cache in (load lane), its compute, its new rows out (store lane).
void BlockSchedule::run_batch(BatchWork& w) {
  const bool embed = w.layout->kind == StageKind::kEmbed;
  const bool head = w.layout->kind == StageKind::kHead;
  if (!b_.hidden_in_place(w.batch)) {
    w.act_slot = static_cast<int>(act_item_++ % kRing);
    b_.wait(Lane::kLoad, {MarkKind::kActFree, w.act_slot});
    if (!embed) {  // the embedding writes the rows; nothing to load
      b_.wait(Lane::kLoad, {MarkKind::kActStored, w.batch});
      b_.load_hidden(w);
    }
    b_.record(Lane::kLoad, {MarkKind::kActReady, w.act_slot});
  }
  if (b_.cache_crosses(w)) {
    w.cache_slot = static_cast<int>(cache_item_++ % kRing);
    b_.wait(Lane::kLoad, {MarkKind::kCacheFree, w.cache_slot});
    b_.load_cache(w);
    b_.record(Lane::kLoad, {MarkKind::kCacheReady, w.cache_slot});
  }

  if (b_.weights_loaded(w.stage)) b_.wait(Lane::kCompute, {MarkKind::kWeightsReady, w.stage % 2});
  if (w.cache_slot >= 0) b_.wait(Lane::kCompute, {MarkKind::kCacheReady, w.cache_slot});
  if (w.act_slot >= 0) b_.wait(Lane::kCompute, {MarkKind::kActReady, w.act_slot});
  b_.compute(w);
  if (w.cache_slot < 0 && w.act_slot < 0) return;

  b_.record(Lane::kCompute, {MarkKind::kComputed});
  b_.wait(Lane::kStore, {MarkKind::kComputed});
  if (w.cache_slot >= 0) {
    b_.store_cache(w);
    b_.record(Lane::kStore, {MarkKind::kCacheFree, w.cache_slot});
  }
  if (w.act_slot >= 0) {
    if (!head) {  // the head's input rows are not needed again
      b_.store_hidden(w);
      b_.record(Lane::kStore, {MarkKind::kActStored, w.batch});
    }
    b_.record(Lane::kStore, {MarkKind::kActFree, w.act_slot});
  }
}

void BlockSchedule::run(const std::vector<std::vector<SequenceStep>>& steps,
                        const std::vector<std::vector<int64_t>>& lengths, int64_t base) {
  const auto n_stages = static_cast<int64_t>(layouts_.size());
  b_.begin_step(steps, lengths);
  tickets_.assign(static_cast<size_t>(n_stages), 0);
  for (int64_t s = 0; s < read_ahead_ && s < n_stages; ++s) {
    if (carried_) {
      tickets_[static_cast<size_t>(s)] = carried_tickets_[s];
    } else {
      submit(s, &tickets_[static_cast<size_t>(s)]);
    }
  }
  carried_ = false;
  load_weights(0);

  for (int64_t s = 0; s < n_stages; ++s) {
    for (size_t k = 0; k < steps.size(); ++k) {
      if (steps[k].empty()) continue;
      BatchWork w{s,
                  &layouts_[static_cast<size_t>(s)],
                  static_cast<int64_t>(k),
                  base + static_cast<int64_t>(k),
                  &steps[k],
                  &lengths[k]};
      run_batch(w);
    }
    b_.record(Lane::kCompute, {MarkKind::kStageDone, s % 2});
    // Stage s + 2's disk read (s + 1's without overlap) and stage s + 1's load are issued
    // behind stage s's compute.
    const int64_t ahead = s + read_ahead_;
    if (ahead < n_stages) submit(ahead, &tickets_[static_cast<size_t>(ahead)]);
    if (s + 1 < n_stages) load_weights(s + 1);
  }
  // The next step's first stages are read while this one finishes; each waits for the slot's
  // last user in this step.
  if (read_ahead_ > 1 && n_stages >= kWeightSlots) {
    for (int64_t s = 0; s < read_ahead_; ++s) {
      carried_tickets_[s] = 0;
      submit(s, &carried_tickets_[s]);
    }
    carried_ = true;
  }
  b_.end_step();
}

}  // namespace strata
