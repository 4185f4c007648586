#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <utility>

#include "cli/commands.h"
#include "core/error.h"
#include "parallel/world.h"

namespace {

using Command = int (*)(int, char**);

const std::map<std::string, std::pair<Command, const char*>>& commands() {
  static const std::map<std::string, std::pair<Command, const char*>> table = {
      {"generate", {strata::cli::run_generate, "generate tokens for JSONL requests"}},
      {"bench", {strata::cli::run_bench, "measure throughput on synthetic prompts"}},
      {"synth", {strata::cli::run_synth, "write a random-weight OPT checkpoint"}},
      {"plan", {strata::cli::run_plan, "choose a policy for a model on a hardware profile"}},
      {"simulate", {strata::cli::run_simulate, "project pipeline throughput for larger clusters"}},
      {"profile", {strata::cli::run_profile, "measure this node into a hardware profile"}},
      {"tokenize", {strata::cli::run_tokenize, "print the token ids of each stdin line"}},
      {"detokenize", {strata::cli::run_detokenize, "print the text of each stdin line of ids"}},
  };
  return table;
}

void usage(FILE* out) {
  std::fprintf(out, "usage: strata <command> [flags]   (strata <command> --help)\n\ncommands:\n");
  for (const auto& [name, entry] : commands())
    std::fprintf(out, "  %-10s %s\n", name.c_str(), entry.second);
}

// Under a launcher (mpirun, srun) before the ranks have met: this rank and the job's size from
// the launcher's environment, or {-1, 1}.
std::pair<int, int> launched_rank() {
  const std::pair<const char*, const char*> kVars[] = {
      {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"},
      {"PMI_RANK", "PMI_SIZE"},
      {"SLURM_PROCID", "SLURM_NTASKS"}};
  for (const auto& [rank, size] : kVars) {
    const char* r = std::getenv(rank);
    const char* n = std::getenv(size);
    if (r && n) return {std::atoi(r), std::atoi(n)};
  }
  return {-1, 1};
}

// A path for an error line: one of thousands of characters keeps its two ends.
std::string short_path(const std::string& path) {
  constexpr size_t kKeep = 80;
  if (path.size() <= 2 * kKeep + 3) return path;
  return path.substr(0, kKeep) + "..." + path.substr(path.size() - kKeep);
}

// One line on stderr, valid UTF-8 whatever the message quotes; returns the exit status.
int report(const std::string& command, const std::string& what, int status,
           const std::string& where, bool verbose) {
  std::string message = strata::printable_line(what);
  const bool internal = status != strata::kExitBadInput;
  if (internal && !where.empty()) {
    message += verbose ? " [" + strata::printable_line(where) + "]" : " (--verbose says where)";
  }
  // Under mpirun a failing rank ends the whole job, naming itself.
  strata::parallel::abort_job_if_parallel(status, command + ": " + message);
  if (const auto [rank, size] = launched_rank(); size > 1) {
    // The ranks have not met yet, so each read the same flags and files and met the same error:
    // rank 0 says it once, naming itself; the others end quietly with the same status.
    if (rank != 0) {
      // mpirun ends the job when a rank exits non-zero: wait so that rank 0's line gets out.
      std::this_thread::sleep_for(std::chrono::seconds(2));
      return status;
    }
    char host[256] = {};
    if (gethostname(host, sizeof(host) - 1) != 0) host[0] = '?';
    message += " (rank 0 of " + std::to_string(size) + " on " + host + ")";
  }
  std::fprintf(stderr, "strata %s: %s: %s\n", command.c_str(),
               status == strata::kExitBadInput ? "error" : "internal error", message.c_str());
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? strata::kExitBadInput : 0;
  }
  auto it = commands().find(argv[1]);
  if (it == commands().end()) {
    std::string names;
    for (const auto& [name, entry] : commands()) names += (names.empty() ? "" : ", ") + name;
    std::fprintf(stderr, "strata: error: unknown command '%s' (commands: %s)\n", argv[1],
                 names.c_str());
    return strata::kExitBadInput;
  }
  // --verbose: an internal error also says where in the source it was raised (parse_flags
  // accepts the flag on every command).
  bool verbose = false;
  for (int i = 2; i < argc; ++i) verbose = verbose || std::strcmp(argv[i], "--verbose") == 0;
  const std::string command = argv[1];
  try {
    return it->second.first(argc - 1, argv + 1);
  } catch (const strata::Error& e) {
    return report(command, e.what(), e.exit_status(), e.where(), verbose);
  } catch (const std::filesystem::filesystem_error& e) {
    // A path the user gave that the file system refuses (too long, not a directory, no access).
    return report(command, short_path(e.path1().string()) + ": " + e.code().message(),
                  strata::kExitBadInput, "", verbose);
  } catch (const std::exception& e) {
    return report(command, e.what(), strata::kExitInternal, strata::process_location(), verbose);
  }
}
