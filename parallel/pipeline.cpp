#include "parallel/pipeline.h"

#include <chrono>
#include <cstring>
#include <deque>
#include <memory>

#include "core/error.h"

namespace strata::parallel {
namespace {

constexpr int kTagHeader = 1;  // the step's sequences: [n, (pos, n_tokens, prompt index)...]
constexpr int kTagHidden = 2;  // their hidden rows, batch by batch
constexpr int kTagTokens = 3;  // sampled tokens: [n, (pos, token, logprob)...]
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

// One group's sequences within a wave.
struct Group {
  size_t begin = 0;  // first prompt
  size_t count = 0;
  std::vector<std::vector<int64_t>> lengths;  // [k][slot]
  std::vector<bool> active;                   // rank 0: per position
  std::vector<int32_t> next;                  // rank 0: last sampled token per position
  std::vector<RandomStream> streams;          // last rank: per position
  std::vector<double> tokens;                 // one-rank runs: the tokens of the last step
};

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
                                          const GenerateOptions& gen, GenerationStats* stats) {
  const int rank = transport.rank(), size = transport.size();
  const bool first = rank == 0, last = rank == size - 1;
  const auto engine_ptr = make_engine(source, options);
  Engine& engine = *engine_ptr;
  STRATA_CHECK(engine.has_embed() == first && engine.has_head() == last, "rank ", rank,
               "'s slice does not match its place in the pipeline");
  const OptConfig& c = engine.config();
  const Policy& p = options.policy;
  const int64_t gbs = p.gpu_batch_size, ngb = p.num_gpu_batches, block = gbs * ngb;
  const int64_t n_groups = options.n_groups, hidden = c.hidden_size;
  const size_t n = prompts.size(), vocab = static_cast<size_t>(c.vocab_size);
  const size_t header_len = 1 + 3 * static_cast<size_t>(block);
  std::vector<Generation> results(first ? n : 0);
  std::vector<float> scratch(vocab);
  std::vector<int32_t> dummy(static_cast<size_t>(options.max_prompt_len), 0);
  std::vector<float> rows;
  Outbox outbox(transport);
  GenerationStats local;

  for (size_t wave = 0; wave < n; wave += static_cast<size_t>(n_groups * block)) {
    std::vector<Group> groups(static_cast<size_t>(n_groups));
    for (int64_t g = 0; g < n_groups; ++g) {
      Group& grp = groups[static_cast<size_t>(g)];
      grp.begin = std::min(n, wave + static_cast<size_t>(g * block));
      grp.count = std::min(n, grp.begin + static_cast<size_t>(block)) - grp.begin;
      grp.lengths.assign(static_cast<size_t>(ngb), std::vector<int64_t>(gbs, 0));
      grp.active.assign(grp.count, true);
      grp.next.assign(grp.count, 0);
      if (last) {
        for (size_t i = 0; i < grp.count; ++i) {
          grp.streams.emplace_back(gen.sampling.seed, prompts[grp.begin + i].index);
        }
      }
    }
    const auto wave_begin = Clock::now();
    auto prefill_end = wave_begin;
    // Rank 0 runs one iteration more: it applies the tokens of the last step.
    const int64_t iterations = gen.gen_len + (first ? 1 : 0);
    for (int64_t t = 0; t < iterations; ++t) {
      for (int64_t g = 0; g < n_groups; ++g) {
        Group& grp = groups[static_cast<size_t>(g)];
        std::vector<int64_t> header(header_len, 0);
        if (first) {
          if (t > 0) {  // the tokens sampled for this group's previous step
            std::vector<double> tokens(header_len);
            if (size > 1) {
              transport.recv(size - 1, kTagTokens, tokens.data(), tokens.size() * sizeof(double));
            } else {
              tokens = grp.tokens;
            }
            const auto count = static_cast<size_t>(tokens[0]);
            for (size_t e = 0; e < count; ++e) {
              const auto pos = static_cast<size_t>(tokens[1 + 3 * e]);
              const Sampled s{static_cast<int32_t>(tokens[2 + 3 * e]),
                              static_cast<float>(tokens[3 + 3 * e])};
              const size_t i = grp.begin + pos;
              grp.active[pos] = accept_token(s, gen, c.eos_token_id, i, results[i]);
              grp.next[pos] = s.token;
            }
            local.generated_tokens += static_cast<int64_t>(count);
            if (gen.on_step && count > 0) gen.on_step(static_cast<int64_t>(count));
            if (t == 1 && g == n_groups - 1) prefill_end = Clock::now();
          }
          if (t == gen.gen_len) continue;
          size_t m = 0;
          for (size_t pos = 0; pos < grp.count; ++pos) {
            if (!grp.active[pos]) continue;
            const size_t i = grp.begin + pos;
            const auto n_tokens = t == 0 ? static_cast<int64_t>(prompts[i].ids.size()) : 1;
            if (t == 0) local.prompt_tokens += n_tokens;
            header[1 + 3 * m] = static_cast<int64_t>(pos);
            header[2 + 3 * m] = n_tokens;
            header[3 + 3 * m] = static_cast<int64_t>(prompts[i].index);
            ++m;
          }
          header[0] = static_cast<int64_t>(m);
        } else {
          transport.recv(rank - 1, kTagHeader, header.data(), header.size() * sizeof(int64_t));
        }
        if (!last) outbox.send(rank + 1, kTagHeader, header);

        // The step's sequences, batch by batch, in header order (the packed row order).
        const auto m = static_cast<size_t>(header[0]);
        std::vector<std::vector<SequenceStep>> steps(static_cast<size_t>(ngb));
        std::vector<int64_t> batch_rows(static_cast<size_t>(ngb), 0);
        std::vector<std::pair<size_t, size_t>> where(m);  // (k, index within batch k)
        int64_t total_rows = 0;
        for (size_t e = 0; e < m; ++e) {
          const int64_t pos = header[1 + 3 * e], n_tokens = header[2 + 3 * e];
          const auto k = static_cast<size_t>(pos / gbs);
          const int64_t slot = pos % gbs;
          std::span<const int32_t> tokens(dummy.data(), static_cast<size_t>(n_tokens));
          if (first) {
            const size_t i = grp.begin + static_cast<size_t>(pos);
            tokens = t == 0 ? std::span<const int32_t>(prompts[i].ids)
                            : std::span<const int32_t>(&grp.next[static_cast<size_t>(pos)], 1);
          }
          where[e] = {k, steps[k].size()};
          steps[k].push_back({slot, tokens});
          batch_rows[k] += n_tokens;
          total_rows += n_tokens;
        }
        if (m > 0) {
          if (!first) {
            rows.resize(static_cast<size_t>(total_rows * hidden));
            transport.recv(rank - 1, kTagHidden, rows.data(), rows.size() * sizeof(float));
            int64_t offset = 0;
            for (int64_t k = 0; k < ngb; ++k) {
              if (batch_rows[k] == 0) continue;
              engine.write_hidden(g, k, rows.data() + offset * hidden, batch_rows[k]);
              offset += batch_rows[k];
            }
          }
          engine.forward(g, steps, grp.lengths);
          for (size_t k = 0; k < steps.size(); ++k) {
            for (const auto& st : steps[k]) {
              grp.lengths[k][static_cast<size_t>(st.slot)] +=
                  static_cast<int64_t>(st.tokens.size());
            }
          }
          if (!last) {
            rows.resize(static_cast<size_t>(total_rows * hidden));
            int64_t offset = 0;
            for (int64_t k = 0; k < ngb; ++k) {
              if (batch_rows[k] == 0) continue;
              engine.read_hidden(g, k, rows.data() + offset * hidden, batch_rows[k]);
              offset += batch_rows[k];
            }
            outbox.send(rank + 1, kTagHidden, rows);
          }
        }
        if (last) {
          std::vector<double> tokens(header_len, 0.0);
          tokens[0] = static_cast<double>(m);
          for (size_t e = 0; e < m; ++e) {
            const auto pos = static_cast<size_t>(header[1 + 3 * e]);
            const auto [k, j] = where[e];
            std::span<const float> row(engine.logits(static_cast<int64_t>(k)).data() + j * vocab,
                                       vocab);
            const Sampled s = sample_token(row, gen.sampling, grp.streams[pos], scratch);
            tokens[1 + 3 * e] = static_cast<double>(pos);
            tokens[2 + 3 * e] = s.token;
            tokens[3 + 3 * e] = s.logprob;
          }
          if (size > 1) {
            outbox.send(0, kTagTokens, tokens);
          } else {
            grp.tokens = std::move(tokens);
          }
        }
      }
    }
    if (first) {
      local.prefill_s += std::chrono::duration<double>(prefill_end - wave_begin).count();
      local.decode_s += std::chrono::duration<double>(Clock::now() - prefill_end).count();
    }
  }
  outbox.drain();
  if (stats) stats->add(local);
  return results;
}

}  // namespace strata::parallel
