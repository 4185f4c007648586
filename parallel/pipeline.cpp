#include "parallel/pipeline.h"

#include <chrono>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <type_traits>

#include "core/error.h"
#include "runtime/step_builder.h"

namespace strata::parallel {
namespace {

constexpr int kTagHeader = 1;  // the step's sequences (Header)
constexpr int kTagHidden = 2;  // their hidden rows, batch by batch
constexpr int kTagTokens = 3;  // sampled tokens (Tokens)
constexpr int kTagText = 4;

using Clock = std::chrono::steady_clock;

// Sends whose buffers must live until they complete.
class Outbox {
 public:
  explicit Outbox(Transport& t) : t_(t) {}
  template <typename T>
  void send(int peer, int tag, std::vector<T> data) {
    auto buffer = std::make_unique<std::vector<uint8_t>>(data.size() * sizeof(T));
    std::memcpy(buffer->data(), data.data(), buffer->size());
    Request r = t_.isend(peer, tag, buffer->data(), buffer->size());
    pending_.push_back({std::move(buffer), std::move(r)});
    while (!pending_.empty() && pending_.front().request.test()) pending_.pop_front();
  }
  void drain() {
    for (auto& p : pending_) p.request.wait();
    pending_.clear();
  }

 private:
  struct Pending {
    std::unique_ptr<std::vector<uint8_t>> buffer;
    Request request;
  };
  Transport& t_;
  std::deque<Pending> pending_;
};

// The messages of a step, fixed-size (a count, then up to one entry per sequence of a block) so
// the receiver knows their length.
struct HeaderEntry {  // a sequence of the step, in position order
  int64_t pos;
  int64_t n_tokens;
};
struct TokenEntry {  // a sampled token, back to rank 0, with its alternatives when asked
  int64_t pos;
  Sampled sampled;
};
template <typename E>
struct StepMessage {
  explicit StepMessage(int64_t block)
      : bytes(sizeof(int64_t) + static_cast<size_t>(block) * sizeof(E)) {}
  std::vector<uint8_t> bytes;
  int64_t count() const {
    int64_t n;
    std::memcpy(&n, bytes.data(), sizeof(n));
    return n;
  }
  E at(int64_t e) const {
    E entry;
    std::memcpy(&entry, bytes.data() + sizeof(int64_t) + static_cast<size_t>(e) * sizeof(E),
                sizeof(E));
    return entry;
  }
  void push(const E& entry) {
    const int64_t n = count();
    std::memcpy(bytes.data() + sizeof(int64_t) + static_cast<size_t>(n) * sizeof(E), &entry,
                sizeof(E));
    set_count(n + 1);
  }
  void set_count(int64_t n) { std::memcpy(bytes.data(), &n, sizeof(n)); }
};
using Header = StepMessage<HeaderEntry>;
using Tokens = StepMessage<TokenEntry>;
static_assert(std::is_trivially_copyable_v<TokenEntry>, "token entries travel as bytes");

// One group's sequences within a wave.
struct Group {
  size_t begin = 0;  // first prompt
  size_t count = 0;
  std::optional<StepBuilder> steps;
  std::vector<RandomStream> streams;  // last rank: per position
  std::optional<Tokens> tokens;       // one-rank runs: the tokens of the last step
};

// What every step of a rank needs.
struct RankContext {
  Transport& transport;
  Engine& engine;
  std::span<const Prompt> prompts;
  const GenerateOptions& gen;
  Outbox& outbox;
  int64_t block = 0;
  int rank = 0, size = 0;
  bool first = false, last = false;
  std::vector<int32_t> dummy;  // tokens of ranks without the embedding
  std::vector<float> rows, scratch;
  std::vector<Generation>* results = nullptr;
  GenerationStats local;
};

// Rank 0: the tokens sampled for group g's previous step, accepted into its results.
void accept_tokens(RankContext& r, Group& grp) {
  Tokens tokens(r.block);
  if (r.size > 1) {
    r.transport.recv(r.size - 1, kTagTokens, tokens.bytes.data(), tokens.bytes.size());
  } else {
    tokens = std::move(*grp.tokens);
  }
  const std::vector<int32_t>& eos = r.engine.config().eos_token_ids;
  for (int64_t e = 0; e < tokens.count(); ++e) {
    const TokenEntry t = tokens.at(e);
    const size_t i = grp.begin + static_cast<size_t>(t.pos);
    const bool goes_on = accept_token(t.sampled, r.prompts[i], r.gen, eos, i, (*r.results)[i]);
    grp.steps->accept(t.pos, t.sampled.token, goes_on);
  }
  r.local.generated_tokens += tokens.count();
  if (r.gen.on_step && tokens.count() > 0) r.gen.on_step(tokens.count());
}

// The step's sequences: built on rank 0 from its running sequences, received on the others.
Header step_header(RankContext& r, Group& grp) {
  Header header(r.block);
  if (r.first) {
    grp.steps->next_step();
    const auto& steps = grp.steps->steps();
    for (size_t k = 0; k < steps.size(); ++k) {
      for (size_t j = 0; j < steps[k].size(); ++j) {
        const int64_t pos = grp.steps->position(k, j);
        const auto n_tokens = static_cast<int64_t>(steps[k][j].tokens.size());
        if (grp.steps->prefill()) r.local.prompt_tokens += n_tokens;
        header.push({pos, n_tokens});
      }
    }
  } else {
    r.transport.recv(r.rank - 1, kTagHeader, header.bytes.data(), header.bytes.size());
    grp.steps->clear();
    for (int64_t e = 0; e < header.count(); ++e) {
      const HeaderEntry h = header.at(e);
      grp.steps->add(h.pos,
                     std::span<const int32_t>(r.dummy.data(), static_cast<size_t>(h.n_tokens)));
    }
  }
  if (!r.last) r.outbox.send(r.rank + 1, kTagHeader, header.bytes);
  return header;
}

// Hidden rows of the step's batches in packed order, into the engine or out of it.
void move_hidden(RankContext& r, int64_t g, const StepBuilder& steps, bool into_engine) {
  const int64_t hidden = r.engine.config().hidden_size;
  int64_t total = 0;
  for (int64_t x : steps.n_new()) total += x;
  r.rows.resize(static_cast<size_t>(total * hidden));
  if (into_engine) {
    r.transport.recv(r.rank - 1, kTagHidden, r.rows.data(), r.rows.size() * sizeof(float));
  }
  int64_t offset = 0;
  for (size_t k = 0; k < steps.steps().size(); ++k) {
    int64_t n = 0;
    for (const auto& st : steps.steps()[k]) n += static_cast<int64_t>(st.tokens.size());
    if (n == 0) continue;
    float* at = r.rows.data() + offset * hidden;
    if (into_engine) {
      r.engine.write_hidden(g, static_cast<int64_t>(k), at, n);
    } else {
      r.engine.read_hidden(g, static_cast<int64_t>(k), at, n);
    }
    offset += n;
  }
  if (!into_engine) r.outbox.send(r.rank + 1, kTagHidden, r.rows);
}

// The last rank: a token per sequence of step t, in step order, back to rank 0. Every sequence
// of a group starts together, so one running at step t has t tokens already.
void sample_tokens(RankContext& r, Group& grp, int64_t t) {
  Tokens tokens(r.block);
  const size_t vocab = static_cast<size_t>(r.engine.config().vocab_size);
  const auto& steps = grp.steps->steps();
  for (size_t k = 0; k < steps.size(); ++k) {
    for (size_t j = 0; j < steps[k].size(); ++j) {
      const int64_t pos = grp.steps->position(k, j);
      std::span<const float> row(r.engine.logits(static_cast<int64_t>(k)).data() + j * vocab,
                                 vocab);
      const Sampled s =
          next_token(row, r.prompts[grp.begin + static_cast<size_t>(pos)], r.gen,
                     static_cast<size_t>(t), grp.streams[static_cast<size_t>(pos)], r.scratch);
      tokens.push({pos, s});
    }
  }
  if (r.size > 1) {
    r.outbox.send(0, kTagTokens, tokens.bytes);
  } else {
    grp.tokens = std::move(tokens);
  }
}

// Group g's step t on this rank.
void run_group_step(RankContext& r, Group& grp, int64_t g, int64_t t) {
  if (r.first && t > 0) accept_tokens(r, grp);
  if (r.first && t == r.gen.gen_len) return;
  const Header header = step_header(r, grp);
  if (header.count() > 0) {
    if (!r.first) move_hidden(r, g, *grp.steps, true);
    r.engine.forward(g, grp.steps->steps(), grp.steps->lengths());
    grp.steps->advance();
    if (!r.last) move_hidden(r, g, *grp.steps, false);
  }
  if (r.last) sample_tokens(r, grp, t);
}

}  // namespace

std::vector<int64_t> even_split(int64_t n_layers, int n_ranks) {
  STRATA_INPUT_CHECK(n_ranks <= n_layers, n_ranks, " ranks but the model has only ", n_layers,
                     " layers: every rank needs at least one");
  std::vector<int64_t> out(static_cast<size_t>(n_ranks), n_layers / n_ranks);
  for (int64_t r = 0; r < n_layers % n_ranks; ++r) ++out[static_cast<size_t>(r)];
  return out;
}

std::string scatter_text(Transport& transport, const std::vector<std::string>& texts) {
  if (transport.rank() == 0) {
    STRATA_CHECK(static_cast<int>(texts.size()) == transport.size(), "one text per rank");
    for (int r = 1; r < transport.size(); ++r) {
      const auto& text = texts[static_cast<size_t>(r)];
      const uint64_t n = text.size();
      transport.send(r, kTagText, &n, sizeof(n));
      transport.send(r, kTagText, text.data(), n);
    }
    return texts[0];
  }
  uint64_t n = 0;
  transport.recv(0, kTagText, &n, sizeof(n));
  std::string text(n, '\0');
  transport.recv(0, kTagText, text.data(), n);
  return text;
}

std::vector<Generation> pipeline_generate(const WeightSource& source, const EngineOptions& options,
                                          Transport& transport, std::span<const Prompt> prompts,
                                          const GenerateOptions& gen, GenerationStats* stats,
                                          const std::function<void()>& on_engine_ready,
                                          nlohmann::json* trace) {
  const int rank = transport.rank(), size = transport.size();
  const auto engine_ptr = make_engine(source, options);
  if (on_engine_ready) on_engine_ready();
  Engine& engine = *engine_ptr;
  STRATA_CHECK(engine.has_embed() == (rank == 0) && engine.has_head() == (rank == size - 1),
               "rank ", rank, "'s slice does not match its place in the pipeline");
  const Policy& p = options.policy;
  const int64_t block = p.gpu_batch_size * p.num_gpu_batches, n_groups = options.n_groups;
  const size_t n = prompts.size();
  Outbox outbox(transport);
  std::vector<Generation> results(rank == 0 ? n : 0);
  RankContext r{transport, engine, prompts, gen,       outbox,
                block,     rank,   size,    rank == 0, rank == size - 1};
  r.dummy.assign(static_cast<size_t>(options.max_prompt_len), 0);
  r.scratch.resize(static_cast<size_t>(engine.config().vocab_size));
  r.results = &results;

  for (size_t wave = 0; wave < n; wave += static_cast<size_t>(n_groups * block)) {
    std::vector<Group> groups(static_cast<size_t>(n_groups));
    for (int64_t g = 0; g < n_groups; ++g) {
      Group& grp = groups[static_cast<size_t>(g)];
      grp.begin = std::min(n, wave + static_cast<size_t>(g * block));
      grp.count = std::min(n, grp.begin + static_cast<size_t>(block)) - grp.begin;
      grp.steps.emplace(r.first ? prompts.subspan(grp.begin, grp.count) : std::span<const Prompt>{},
                        static_cast<int64_t>(grp.count), p.gpu_batch_size);
      if (r.last) {
        for (size_t i = 0; i < grp.count; ++i) {
          const Prompt& pr = prompts[grp.begin + i];
          grp.streams.emplace_back(pr.sampling_of(gen).seed, pr.index);
        }
      }
    }
    const auto wave_begin = Clock::now();
    auto prefill_end = wave_begin;
    // Rank 0 runs one iteration more: it applies the tokens of the last step.
    const int64_t iterations = gen.gen_len + (r.first ? 1 : 0);
    for (int64_t t = 0; t < iterations; ++t) {
      for (int64_t g = 0; g < n_groups; ++g) {
        run_group_step(r, groups[static_cast<size_t>(g)], g, t);
        if (r.first && t == 1 && g == n_groups - 1) prefill_end = Clock::now();
      }
    }
    if (r.first) {
      r.local.prefill_s += std::chrono::duration<double>(prefill_end - wave_begin).count();
      r.local.decode_s += std::chrono::duration<double>(Clock::now() - prefill_end).count();
    }
  }
  outbox.drain();
  if (stats) stats->add(r.local);
  if (trace) *trace = engine.trace();
  return results;
}

}  // namespace strata::parallel
