// Which sequences run in each forward step and with which tokens, written once for every
// generation loop (the reference model, the engines, the pipeline): a whole prompt first, then
// each running sequence's last token. Sequence `pos` sits in GPU batch pos / batch_size at slot
// pos % batch_size.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "runtime/generator.h"
#include "runtime/stages.h"

namespace strata {

class StepBuilder {
 public:
  // `prompts` may be empty on a pipeline rank that is told each step's sequences (add()).
  StepBuilder(std::span<const Prompt> prompts, int64_t n_seqs, int64_t batch_size);

  // The next step of the sequences still running; false when none is.
  bool next_step();
  // A step given from elsewhere: clear(), then add() its sequences in position order.
  void clear();
  void add(int64_t pos, std::span<const int32_t> tokens);

  const std::vector<std::vector<SequenceStep>>& steps() const { return steps_; }
  // Cached tokens per batch and slot, as forward() reads them.
  const std::vector<std::vector<int64_t>>& lengths() const { return lengths_; }
  // Per sequence of the step, in step order: its new tokens and its cached ones.
  const std::vector<int64_t>& n_new() const { return n_new_; }
  const std::vector<int64_t>& n_cached() const { return n_cached_; }
  bool prefill() const { return step_ == 1; }
  // The position of batch k's j-th sequence of the step.
  int64_t position(size_t k, size_t j) const {
    return static_cast<int64_t>(k) * batch_size_ + steps_[k][j].slot;
  }

  // After the forward: every sequence of the step has its tokens cached.
  void advance();
  // Sequence pos's new token; it runs on unless `goes_on` is false (eos, a stop, its length).
  void accept(int64_t pos, int32_t token, bool goes_on);
  bool active(int64_t pos) const { return active_[static_cast<size_t>(pos)]; }

 private:
  std::span<const Prompt> prompts_;
  int64_t batch_size_;
  int64_t step_ = 0;  // steps built so far
  std::vector<bool> active_;
  std::vector<int32_t> next_;
  std::vector<std::vector<SequenceStep>> steps_;
  std::vector<std::vector<int64_t>> lengths_;
  std::vector<int64_t> n_new_, n_cached_;
};

}  // namespace strata
