#include "model/model_dir.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>

#include "core/error.h"

namespace strata {
namespace {

const char* const kHint =
    "; strata reads no network: download it (huggingface-cli download ORG/NAME), give its "
    "directory, or use synthetic:ARCH for random weights (e.g. synthetic:opt-125m; "
    "configs/models/ lists them)";

}  // namespace

std::string hf_hub_cache() {
  if (const char* v = std::getenv("HF_HUB_CACHE"); v && *v) return v;
  if (const char* v = std::getenv("HF_HOME"); v && *v) return std::string(v) + "/hub";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.cache/huggingface/hub";
}

std::string resolve_model_dir(const std::string& spec) {
  std::error_code ec;
  if (spec.rfind("synthetic:", 0) == 0 || std::filesystem::exists(spec, ec)) return spec;
  static const std::regex repo(R"(([A-Za-z0-9][\w.-]*)/([A-Za-z0-9][\w.-]*))");
  std::smatch m;
  if (std::regex_match(spec, m, repo)) {
    const std::string dir = hf_hub_cache() + "/models--" + m[1].str() + "--" + m[2].str();
    std::ifstream ref(dir + "/refs/main");
    std::string commit;
    ref >> commit;
    const std::string snapshot = dir + "/snapshots/" + commit;
    if (!commit.empty() && std::filesystem::is_directory(snapshot, ec)) return snapshot;
    throw_input("--model " + spec +
                ": no such directory, and not in the local Hugging Face cache (" + dir +
                "/snapshots at refs/main" + (commit.empty() ? ": no refs/main" : "") + ")" + kHint);
  }
  STRATA_INPUT_CHECK(spec.find('/') != std::string::npos || spec.empty() || spec[0] == '.',
                     "--model ", spec,
                     ": no such directory (a model is a directory, ORG/NAME in the Hugging "
                     "Face cache, or synthetic:",
                     spec, ")", kHint);
  return spec;
}

}  // namespace strata
