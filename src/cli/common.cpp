#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/flag_values.h"
#include "core/error.h"
#include "kernels/cpu/gemm.h"

namespace strata::cli {

cxxopts::ParseResult parse_flags(cxxopts::Options& options, int argc, char** argv) {
  options.add_options()("h,help", "print this help")(
      "verbose", "on an internal error, also say where in the source it was raised");
  // FlexGen users write `--percent 20 80 0 100 100 0`; cxxopts reads a list as "20,80,...".
  std::vector<std::string> args(argv, argv + argc);
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] != "--percent") continue;
    size_t j = i + 1;
    std::string joined;
    // Anything that is not a flag is one of its values ("-10" too), for the number parser to
    // judge, so a bad value is named rather than taken for a stray argument.
    while (j < args.size() && j < i + 7 && !args[j].empty() && looks_like_value(args[j])) {
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
  cpu::set_compute_threads(threads);
}

void check_output_file(const std::string& path, const std::string& flag) {
  struct stat info {};
  const bool existed = ::stat(path.c_str(), &info) == 0;
  STRATA_INPUT_CHECK(!(existed && S_ISDIR(info.st_mode)), flag, " ", path, ": is a directory");
  // Opened as the write will open it, without truncating; a file made only to ask is removed.
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  STRATA_INPUT_CHECK(fd >= 0, flag, " ", path, ": cannot write (", std::strerror(errno), ")");
  ::close(fd);
  if (!existed) ::unlink(path.c_str());
}

void write_output_file(const std::string& path, const std::string& text, const std::string& flag) {
  std::ofstream out(path);
  out << text << "\n";
  out.flush();
  STRATA_INPUT_CHECK(out.good(), flag, " ", path, ": write failed (", std::strerror(errno), ")");
}

int threads_flag(const cxxopts::ParseResult& flags) {
  return static_cast<int>(int_flag(flags, "threads", 0, 4096));
}

}  // namespace strata::cli
