// What `strata plan --cluster` and `strata simulate` share: the model by name, the workload
// flags and the per-rank table.
#pragma once

#include <cxxopts.hpp>
#include <string>

#include "model/model_config.h"
#include "planner/cluster_planner.h"

namespace strata::cli {

// "opt-30b" or "facebook/opt-30b" (the built-in family), "synthetic:opt-30b", or a model dir;
// only the config is read.
ModelConfig model_config_for(const std::string& model);

// --prompt-len (default 512), --gen-len (32), --gpu-batch-size, --num-gpu-batches,
// --compress-weight, --compress-cache, as the flags `strata plan` defines them.
ClusterPlanRequest cluster_request_from_flags(const cxxopts::ParseResult& flags);

// The split, each rank's policy and seconds, and the pipeline's prediction, for people.
void print_cluster_plan(const ClusterPlan& plan, const Cluster& cluster, const std::string& model,
                        const ModelConfig& config);

}  // namespace strata::cli
