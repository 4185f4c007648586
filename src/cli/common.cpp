#include <cblas.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"

namespace strata::cli {

cxxopts::ParseResult parse_flags(cxxopts::Options& options, int argc, char** argv) {
  options.add_options()("h,help", "print this help");
  // FlexGen users write `--percent 20 80 0 100 100 0`; cxxopts reads a list as "20,80,...".
  std::vector<std::string> args(argv, argv + argc);
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] != "--percent") continue;
    size_t j = i + 1;
    std::string joined;
    while (j < args.size() && j < i + 7 && !args[j].empty() &&
           (std::isdigit(static_cast<unsigned char>(args[j][0])) || args[j][0] == '.')) {
      joined += (joined.empty() ? "" : ",") + args[j++];
    }
    if (j > i + 2)
      args.erase(args.begin() + static_cast<long>(i) + 1, args.begin() + static_cast<long>(j));
    if (j > i + 2) args.insert(args.begin() + static_cast<long>(i) + 1, joined);
  }
  std::vector<char*> pointers;
  for (auto& a : args) pointers.push_back(a.data());
  cxxopts::ParseResult result;
  try {
    result = options.parse(static_cast<int>(pointers.size()), pointers.data());
  } catch (const cxxopts::exceptions::exception& e) {
    throw_input(e.what());
  }
  if (result.count("help")) {
    std::printf("%s\n", options.help().c_str());
    std::exit(0);
  }
  if (!result.unmatched().empty())
    throw_input("unexpected argument '" + result.unmatched()[0] + "'");
  return result;
}

void set_threads(int threads) {
  STRATA_INPUT_CHECK(threads >= 0, "--threads must be >= 0");
  if (threads > 0) openblas_set_num_threads(threads);
}

}  // namespace strata::cli
