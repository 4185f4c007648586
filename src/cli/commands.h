// The `strata` subcommands; each parses its own flags and returns the exit status.
#pragma once

#include <cxxopts.hpp>
#include <string>

namespace strata::cli {

int run_generate(int argc, char** argv);
int run_synth(int argc, char** argv);
int run_bench(int argc, char** argv);
int run_tokenize(int argc, char** argv);
int run_detokenize(int argc, char** argv);

// Parses flags; --help prints usage and exits 0; a bad or unknown flag is an input error.
cxxopts::ParseResult parse_flags(cxxopts::Options& options, int argc, char** argv);
// Sets the OpenBLAS thread count when threads > 0.
void set_threads(int threads);

}  // namespace strata::cli
