#include <cstdio>
#include <cstring>
#include <exception>
#include <map>
#include <string>

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
  try {
    return it->second.first(argc - 1, argv + 1);
  } catch (const strata::Error& e) {
    // Under mpirun a failing rank ends the whole job, naming itself.
    strata::parallel::abort_job_if_parallel(e.exit_status(),
                                            std::string(argv[1]) + ": " + e.what());
    std::fprintf(stderr, "strata %s: error: %s\n", argv[1], e.what());
    return e.exit_status();
  } catch (const std::exception& e) {
    strata::parallel::abort_job_if_parallel(strata::kExitInternal,
                                            std::string(argv[1]) + ": " + e.what());
    std::fprintf(stderr, "strata %s: internal error: %s [%s]\n", argv[1], e.what(),
                 strata::process_location().c_str());
    return strata::kExitInternal;
  }
}
