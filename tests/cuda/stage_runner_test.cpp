// The device stage runner against the CPU engine's stage math (runtime/stages.h) on the
// reference models: the same packed steps (ragged prefill of several sequences, a step that mixes
// one sequence's prefill with the others' decode, pure decode steps) through embed, every decoder
// stage and head, on the CPU in fp32 and on the device in fp16.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "model/weight_source.h"
#include "runtime/cuda/stage_runner.h"
#include "runtime/stages.h"
#include "tests/cuda/cuda_test_util.h"

namespace strata::cuda {
namespace {

using test::mismatch;

// Relative to |want| + rms(want), as test::mismatch. The weights are the checkpoints' own fp16
// values on both sides, so what differs is the device's fp16 rounding of hidden rows, q / k / v,
// the cache and every GEMM output (2^-11 each), compounded over 2-3 layers and residual adds. A
// CPU emulation of those rounding points needed up to 1.5e-2 (hidden) and 2.0e-2 (logits) over
// 200 prompt sets of this scenario; the bounds are twice that. The negative control lands at
// 0.67 or more.
constexpr double kRelHidden = 3e-2;
constexpr double kRelLogits = 4e-2;

constexpr int64_t kCapacity = 64;
constexpr int64_t kSlots = 4;
constexpr int64_t kMaxRows = 64;

struct StepResult {
  std::vector<float> hidden;  // after the last decoder stage, [rows, hidden_size]
  std::vector<float> logits;  // [n_seqs, vocab_size]
};

// One model on both sides: fp32 stage buffers and caches for the CPU functions, fp16 ones on the
// device. lengths (by slot) are shared: both sides start empty and advance together.
class ModelPair {
 public:
  ModelPair(const std::filesystem::path& dir, bool sep_layer)
      : source_(open_weight_source(dir.string())),
        config_(source_->config()),
        layouts_(stage_layouts(config_, sep_layer)),
        limits_{kMaxRows, kSlots, kCapacity},
        pool_(StageRunner::workspace_bytes(config_, limits_) + 4096),
        scratch_(Blas::output_scratch_bytes(kMaxRows, 4 * config_.hidden_size + config_.ffn_dim)),
        pinned_(StageRunner::host_meta_bytes(config_, limits_) + 4096),
        runner_(config_, limits_, pool_, pinned_, blas_),
        lengths_(kSlots, 0) {
    blas_.set_output_scratch(scratch_.data(), scratch_.size_bytes());
    const int64_t h = config_.hidden_size;
    for (const auto& layout : layouts_) {
      std::vector<float> f32(static_cast<size_t>(layout.numel));
      read_stage(*source_, layout, DType::kF32, f32.data());
      std::vector<Fp16> f16(f32.size());
      read_stage(*source_, layout, DType::kF16, f16.data());
      cpu_weights_.push_back(std::move(f32));
      gpu_weights_.push_back(test::upload(f16));
    }
    const auto cache_numel = static_cast<size_t>(KvBlock::numel(kSlots, kCapacity, h));
    for (int64_t l = 0; l < config_.n_layers; ++l) {
      cpu_cache_.emplace_back(cache_numel, std::numeric_limits<float>::quiet_NaN());
      gpu_cache_.push_back(test::poisoned<Fp16>(cache_numel));  // unwritten rows cannot pass
    }
    hidden_ = DeviceBuffer(static_cast<size_t>(kMaxRows * h) * sizeof(Fp16));
    logits_ = DeviceBuffer(static_cast<size_t>(kSlots * config_.vocab_size) * sizeof(float));
  }

  const ModelConfig& config() const { return config_; }
  std::span<const int64_t> lengths() const { return lengths_; }

  StepResult cpu(std::span<const SequenceStep> steps) {
    const int64_t h = config_.hidden_size;
    std::vector<int64_t> row_offsets;
    const int64_t rows = pack_rows(config_, steps, lengths_, kCapacity, row_offsets);
    StepResult r{std::vector<float>(static_cast<size_t>(rows * h)),
                 std::vector<float>(steps.size() * static_cast<size_t>(config_.vocab_size))};
    embed_forward(config_, cpu_weights_.front().data(), steps, lengths_, row_offsets,
                  r.hidden.data(), ws_);
    for (size_t i = 1; i + 1 < layouts_.size(); ++i) {
      const KvBlock kv{cpu_cache_[static_cast<size_t>(layouts_[i].layer)].data(), kCapacity, h,
                       lengths_};
      decoder_forward(config_, layouts_[i], cpu_weights_[i].data(), steps, row_offsets, kv,
                      r.hidden.data(), ws_);
    }
    head_forward(config_, layouts_.back(), cpu_weights_.back().data(), row_offsets, r.hidden.data(),
                 r.logits.data(), ws_);
    return r;
  }

  // `lengths` is normally lengths(); the negative control passes wrong ones.
  StepResult gpu(std::span<const SequenceStep> steps, std::span<const int64_t> lengths) {
    const int64_t h = config_.hidden_size;
    const Stream& stream = test::stream();
    const uint64_t pageable = pageable_h2d_copies();
    const int64_t rows = runner_.begin_step(0, steps, lengths, stream);
    const auto n_logits = steps.size() * static_cast<size_t>(config_.vocab_size);
    fill_bytes(hidden_.data(), 0xFF, hidden_.size_bytes(), stream);
    fill_bytes(logits_.data(), 0xFF, logits_.size_bytes(), stream);
    auto* hidden = hidden_.as<Fp16>();
    runner_.embed(layouts_.front(), gpu_weights_.front().as<Fp16>(), hidden, stream);
    for (size_t i = 1; i + 1 < layouts_.size(); ++i) {
      const DeviceKvBlock kv{gpu_cache_[static_cast<size_t>(layouts_[i].layer)].as<Fp16>(),
                             kCapacity, h};
      runner_.decoder(layouts_[i], gpu_weights_[i].as<Fp16>(), kv, hidden, stream);
    }
    runner_.head(layouts_.back(), gpu_weights_.back().as<Fp16>(), hidden, logits_.as<float>(),
                 stream);
    // A pageable source may make the copy wait for the stream; the metadata crosses pinned.
    EXPECT_EQ(pageable_h2d_copies(), pageable) << "the step copied from pageable memory";
    return {test::from_f16(test::download<Fp16>(hidden_, static_cast<size_t>(rows * h))),
            test::download<float>(logits_, n_logits)};
  }

  void advance(std::span<const SequenceStep> steps) {
    for (const auto& s : steps) {
      lengths_[static_cast<size_t>(s.slot)] += static_cast<int64_t>(s.tokens.size());
    }
  }

  // Every layer's cached keys and values of the slots in use, positions [0, length).
  void expect_caches_match(std::span<const int64_t> slots) const {
    const int64_t h = config_.hidden_size;
    for (int64_t l = 0; l < config_.n_layers; ++l) {
      const auto& cpu_cache = cpu_cache_[static_cast<size_t>(l)];
      const auto device = test::from_f16(
          test::download<Fp16>(gpu_cache_[static_cast<size_t>(l)], cpu_cache.size()));
      std::vector<float> got, want;
      for (int64_t slot : slots) {
        const int64_t n = lengths_[static_cast<size_t>(slot)] * h;
        for (int64_t part = 0; part < 2; ++part) {  // keys, then values
          const int64_t base = slot * 2 * kCapacity * h + part * kCapacity * h;
          got.insert(got.end(), device.begin() + base, device.begin() + base + n);
          want.insert(want.end(), cpu_cache.begin() + base, cpu_cache.begin() + base + n);
        }
      }
      EXPECT_EQ(mismatch(got, want, kRelHidden), "") << "cache of layer " << l;
    }
  }

 private:
  std::unique_ptr<WeightSource> source_;
  ModelConfig config_;
  std::vector<StageLayout> layouts_;
  StageRunnerLimits limits_;
  Blas blas_;
  DevicePool pool_;
  DeviceBuffer scratch_;
  PinnedArena pinned_;
  StageRunner runner_;
  std::vector<int64_t> lengths_;
  std::vector<std::vector<float>> cpu_weights_, cpu_cache_;
  Workspace ws_;
  std::vector<DeviceBuffer> gpu_weights_, gpu_cache_;
  DeviceBuffer hidden_, logits_;
};

int32_t argmax(const float* row, int64_t n) {
  return static_cast<int32_t>(std::max_element(row, row + n) - row);
}

// Greedy ids of both sides, row by row. They must be identical unless the CPU's best two logits
// are closer than the logit bound allows two errors to bridge; then the device's pick must be
// one of those near-tied ids (reported, so a run shows how often that happened).
void expect_same_greedy(const StepResult& got, const StepResult& want, int64_t vocab,
                        std::vector<int32_t>& next) {
  double sq = 0;
  for (float w : want.logits) sq += static_cast<double>(w) * w;
  const double rms = std::sqrt(sq / static_cast<double>(want.logits.size()));
  const auto n_rows = static_cast<int64_t>(want.logits.size()) / vocab;
  next.assign(static_cast<size_t>(n_rows), 0);
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* w = want.logits.data() + r * vocab;
    const float* g = got.logits.data() + r * vocab;
    const int32_t want_id = argmax(w, vocab), got_id = argmax(g, vocab);
    next[static_cast<size_t>(r)] = want_id;
    if (got_id == want_id) continue;
    const auto tol = [&](int32_t id) { return kRelLogits * (std::fabs(w[id]) + rms); };
    const double gap = static_cast<double>(w[want_id]) - w[got_id];
    EXPECT_LE(gap, tol(want_id) + tol(got_id)) << "row " << r << ": device picked " << got_id
                                               << ", CPU " << want_id << " by a margin of " << gap;
    std::printf("  near tie in row %lld: device %d, CPU %d, CPU margin %.3g\n",
                static_cast<long long>(r), got_id, want_id, gap);
  }
}

struct Case {
  const char* model;
  bool sep_layer;
};

class StageRunnerTest : public ::testing::TestWithParam<Case> {};

TEST_P(StageRunnerTest, MatchesCpuStages) {
  const std::filesystem::path dir = strata::test::model_dir(GetParam().model);
  ASSERT_TRUE(std::filesystem::exists(dir / "config.json"))
      << dir << " missing: set STRATA_TEST_DATA to a copy of tests/data";
  ModelPair pair(dir, GetParam().sep_layer);
  const int64_t vocab = pair.config().vocab_size;
  auto gen = test::rng();
  const auto prompt = [&](size_t n) {
    std::vector<int32_t> tokens(n);
    for (auto& t : tokens) t = static_cast<int32_t>(gen() % static_cast<uint64_t>(vocab));
    return tokens;
  };
  // Three sequences in slots 2, 0 and 3 (slot 1 stays poisoned): A (37 tokens, over two key
  // tiles) and B prefill; then C's prefill shares a packed step with A's and B's first decode
  // token; then four decode steps. Next tokens are the CPU's greedy ids on both sides.
  const std::vector<int64_t> slots = {2, 0, 3};
  std::vector<std::vector<int32_t>> pending = {prompt(37), prompt(5), {}};
  const std::vector<int32_t> late_prompt = prompt(18);
  const auto make_steps = [&] {
    std::vector<SequenceStep> steps;
    for (size_t s = 0; s < slots.size(); ++s) {
      if (!pending[s].empty()) steps.push_back({slots[s], pending[s]});
    }
    return steps;
  };
  for (int step = 0; step < 6; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    if (step == 1) pending[2] = late_prompt;
    const auto steps = make_steps();
    const StepResult want = pair.cpu(steps);
    const StepResult got = pair.gpu(steps, pair.lengths());
    EXPECT_EQ(mismatch(got.hidden, want.hidden, kRelHidden), "") << "hidden";
    EXPECT_EQ(mismatch(got.logits, want.logits, kRelLogits), "") << "logits";
    std::vector<int32_t> next;
    expect_same_greedy(got, want, vocab, next);
    pair.advance(steps);
    size_t row = 0;
    for (size_t s = 0; s < slots.size(); ++s) {
      if (!pending[s].empty()) pending[s] = {next[row++]};
    }
  }
  pair.expect_caches_match(slots);

  // Negative control: a decode step whose cache lengths are one short (the new keys overwrite
  // the last cached ones, positions shift by one) must fall outside both bounds.
  const auto steps = make_steps();
  const StepResult want = pair.cpu(steps);
  std::vector<int64_t> short_lengths(pair.lengths().begin(), pair.lengths().end());
  for (int64_t slot : slots) --short_lengths[static_cast<size_t>(slot)];
  const StepResult wrong = pair.gpu(steps, short_lengths);
  EXPECT_NE(mismatch(wrong.hidden, want.hidden, kRelHidden), "");
  EXPECT_NE(mismatch(wrong.logits, want.logits, kRelLogits), "");
}

INSTANTIATE_TEST_SUITE_P(ReferenceModels, StageRunnerTest,
                         ::testing::Values(Case{"opt-pub-tiny", false},
                                           Case{"opt-pub-350m-style", false},
                                           Case{"opt-pub-gelu-nobias", false},
                                           Case{"opt-pub-tiny", true},
                                           Case{"opt-pub-350m-style", true}),
                         [](const auto& info) {
                           std::string name = info.param.model;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name + (info.param.sep_layer ? "_sep" : "");
                         });

}  // namespace
}  // namespace strata::cuda
