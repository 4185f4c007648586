#include "runtime/step_builder.h"

#include "core/error.h"

namespace strata {

StepBuilder::StepBuilder(std::span<const Prompt> prompts, int64_t n_seqs, int64_t batch_size)
    : prompts_(prompts),
      batch_size_(batch_size),
      active_(static_cast<size_t>(n_seqs), true),
      next_(static_cast<size_t>(n_seqs), 0) {
  STRATA_CHECK(batch_size >= 1 && n_seqs >= 0, "a step builder needs a batch size");
  STRATA_CHECK(prompts.empty() || static_cast<int64_t>(prompts.size()) == n_seqs,
               "one prompt per sequence");
  const int64_t n_batches = (n_seqs + batch_size - 1) / batch_size;
  steps_.resize(static_cast<size_t>(n_batches));
  lengths_.assign(static_cast<size_t>(n_batches),
                  std::vector<int64_t>(static_cast<size_t>(batch_size), 0));
}

void StepBuilder::clear() {
  for (auto& batch : steps_) batch.clear();
  n_new_.clear();
  n_cached_.clear();
  ++step_;
}

void StepBuilder::add(int64_t pos, std::span<const int32_t> tokens) {
  STRATA_CHECK(pos >= 0 && pos < static_cast<int64_t>(active_.size()) && !tokens.empty(),
               "step entry ", pos, " outside the block");
  const auto k = static_cast<size_t>(pos / batch_size_);
  const int64_t slot = pos % batch_size_;
  steps_[k].push_back({slot, tokens});
  n_new_.push_back(static_cast<int64_t>(tokens.size()));
  n_cached_.push_back(lengths_[k][static_cast<size_t>(slot)]);
}

bool StepBuilder::next_step() {
  clear();
  for (size_t pos = 0; pos < active_.size(); ++pos) {
    if (!active_[pos]) continue;
    add(static_cast<int64_t>(pos),
        step_ == 1 ? prompts_[pos].prefill_ids() : std::span<const int32_t>(&next_[pos], 1));
  }
  return !n_new_.empty();
}

void StepBuilder::advance() {
  for (size_t k = 0; k < steps_.size(); ++k) {
    for (const auto& st : steps_[k]) {
      lengths_[k][static_cast<size_t>(st.slot)] += static_cast<int64_t>(st.tokens.size());
    }
  }
}

void StepBuilder::accept(int64_t pos, int32_t token, bool goes_on) {
  next_[static_cast<size_t>(pos)] = token;
  active_[static_cast<size_t>(pos)] = goes_on;
}

}  // namespace strata
