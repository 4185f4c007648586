// The pipeline: each rank runs the offloading engine over a contiguous slice of layers. For
// every group of GPU batches, rank 0 embeds the step's tokens and sends the hidden rows on;
// each rank runs its slice and forwards them; the last rank samples and sends the tokens back
// to rank 0, which applies eos, stop strings and lengths and starts that group's next step.
// With at least as many groups as ranks, every rank has a group to work on.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "parallel/transport.h"
#include "runtime/engine.h"
#include "runtime/generator.h"
#include "runtime/memory_plan.h"

namespace strata::parallel {

// Layer counts per rank, as even as they go (the earlier ranks take the remainder).
std::vector<int64_t> even_split(int64_t n_layers, int n_ranks);

// This rank's part of generating `prompts` (the same list on every rank; rank 0 reads the ids,
// the last rank each prompt's sampling and forced ids), in waves of options.n_groups blocks.
// options holds this rank's slice and policy; every rank must use the same batch shape and
// group count. Rank 0 returns one Generation per prompt; the other ranks return nothing.
// gen.stop_check and gen.on_finish get the index into `prompts`. `on_engine_ready`, when given,
// is called once this rank's engine is built, before the first step; `trace`, when given, gets
// this rank's engine trace (Engine::trace) at the end.
std::vector<Generation> pipeline_generate(const WeightSource& source, const EngineOptions& options,
                                          Transport& transport, std::span<const Prompt> prompts,
                                          const GenerateOptions& gen, GenerationStats* stats,
                                          const std::function<void()>& on_engine_ready = {},
                                          nlohmann::json* trace = nullptr);

// Rank 0 sends each rank its text (a rank's plan as JSON) so all ranks run one decision; the
// others receive theirs. Rank 0 gets texts[0].
std::string scatter_text(Transport& transport, const std::vector<std::string>& texts);

}  // namespace strata::parallel
