#include <cblas.h>

#include <cstdio>
#include <cstdlib>

#include "cli/commands.h"
#include "core/error.h"

namespace strata::cli {

cxxopts::ParseResult parse_flags(cxxopts::Options& options, int argc, char** argv) {
  options.add_options()("h,help", "print this help");
  cxxopts::ParseResult result;
  try {
    result = options.parse(argc, argv);
  } catch (const cxxopts::exceptions::exception& e) {
    throw_input(e.what());
  }
  if (result.count("help")) {
    std::printf("%s\n", options.help().c_str());
    std::exit(0);
  }
  if (!result.unmatched().empty()) throw_input("unexpected argument '" + result.unmatched()[0] + "'");
  return result;
}

void set_threads(int threads) {
  STRATA_INPUT_CHECK(threads >= 0, "--threads must be >= 0");
  if (threads > 0) openblas_set_num_threads(threads);
}

}  // namespace strata::cli
