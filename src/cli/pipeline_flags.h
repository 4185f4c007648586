// Flags and set-up shared by generate and bench when run as several MPI ranks: this rank's
// layer slice, policy and transport, decided before any weight is read.
#pragma once

#include <cxxopts.hpp>
#include <memory>
#include <optional>
#include <vector>

#include "parallel/transport.h"
#include "runtime/engine.h"
#include "runtime/memory_plan.h"

namespace strata::cli {

void add_pipeline_flags(cxxopts::Options& options);

struct PipelineRank {
  EngineOptions options;  // this rank's slice, policy, caps and group count
  std::unique_ptr<parallel::Transport> transport;
  std::vector<int64_t> layers_per_rank;
};

// The rank's set-up when the process is one of several ranks (mpirun -np N, srun); none for a
// one-rank run, which is the single-node engine itself. `base` holds the flags' policy and
// the prompt and generation lengths. The split is --layers-per-rank, or planned from
// --cluster (on rank 0, then sent to every rank), or as even as it goes. A one-rank run with
// --cluster gets the plan's policy and caps in `base`.
std::optional<PipelineRank> pipeline_rank_from_flags(const cxxopts::ParseResult& flags,
                                                     const ModelConfig& config,
                                                     EngineOptions& base);

}  // namespace strata::cli
