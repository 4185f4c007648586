// The `strata` subcommands; each parses its own flags and returns the exit status.
#pragma once

#include <cxxopts.hpp>
#include <optional>
#include <string>

#include "planner/cost_model.h"

#include "runtime/engine.h"
#include "runtime/memory_plan.h"

namespace strata::cli {

int run_generate(int argc, char** argv);
int run_synth(int argc, char** argv);
int run_bench(int argc, char** argv);
int run_tokenize(int argc, char** argv);
int run_detokenize(int argc, char** argv);
int run_plan(int argc, char** argv);
int run_profile(int argc, char** argv);
int run_simulate(int argc, char** argv);

// Parses flags; --help prints usage and exits 0; a bad or unknown flag is an input error.
cxxopts::ParseResult parse_flags(cxxopts::Options& options, int argc, char** argv);
// Sets the OpenBLAS thread count when threads > 0.
void set_threads(int threads);
// An output file named by `flag` (--json, --trace, --out): checked before the work, so an
// unwritable path fails at once (an input error naming the flag and path), and written after it.
void check_output_file(const std::string& path, const std::string& flag);
void write_output_file(const std::string& path, const std::string& text, const std::string& flag);
// --threads N, in [0, 4096].
int threads_flag(const cxxopts::ParseResult& flags);

// The offloading policy flags, spelled as FlexGen's: --percent, --gpu-batch-size,
// --num-gpu-batches, --offload-dir, --cpu-cache-compute, --policy FILE, --no-overlap,
// --gpu-mem / --cpu-mem / --disk-mem, --trace FILE.
void add_policy_flags(cxxopts::Options& options, const std::string& default_gpu_batch_size);
// The policy (--policy FILE first, then each flag given overrides its field), the caps and the
// offload dir; validated. Prompt and generation lengths are left for the caller.
EngineOptions engine_options_from_flags(const cxxopts::ParseResult& flags);
// True for --policy auto.
bool wants_auto_policy(const cxxopts::ParseResult& flags);
// Once prompt and generation lengths are in `options`: for --policy auto, plans the policy for
// this node (profiled quickly, or --hardware FILE) within the caps and puts it in `options`;
// returns the cost model's prediction for the policy run, or none without auto or --hardware.
// max_sequences > 0 caps the effective batch (generate has no more requests than that).
std::optional<Prediction> plan_from_flags(const cxxopts::ParseResult& flags,
                                          const ModelConfig& config, EngineOptions& options,
                                          int64_t max_sequences = 0);
// --alpha A, checked to be in [0, 1) with a one-line input error.
double parse_alpha_flag(const cxxopts::ParseResult& flags);
// True when any flag asks for the offloading engine rather than the resident one.
bool wants_offloading(const cxxopts::ParseResult& flags);

}  // namespace strata::cli
