#include <sys/statvfs.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <system_error>

#include "cli/commands.h"
#include "cli/flag_values.h"
#include "core/error.h"
#include "core/units.h"
#include "model/weight_source.h"

namespace strata::cli {
namespace {

namespace fs = std::filesystem;

// A directory next to the target, removed with what it holds unless released: the checkpoint is
// written here and renamed into place whole, so a failed or interrupted write never leaves a
// half-written model under the target's name.
class StagingDir {
 public:
  explicit StagingDir(const fs::path& target) {
    char tag[32];
    std::snprintf(tag, sizeof(tag), "%d-%08x", static_cast<int>(::getpid()),
                  static_cast<unsigned>(std::random_device{}()));
    path_ = target.parent_path() / ("." + target.filename().string() + ".strata-synth-" + tag);
    std::error_code error;
    STRATA_INPUT_CHECK(fs::create_directory(path_, error) && !error, "--out ", target.string(),
                       ": cannot create ", path_.string(), " (", error.message(), ")");
  }
  ~StagingDir() {
    if (path_.empty()) return;
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  StagingDir(const StagingDir&) = delete;
  StagingDir& operator=(const StagingDir&) = delete;
  const fs::path& path() const { return path_; }
  void release() { path_.clear(); }

 private:
  fs::path path_;
};

// What --out may be: new, an empty directory, or (with --replace) a directory to replace.
void check_target(const fs::path& out, bool replace) {
  std::error_code error;
  const fs::file_status status = fs::symlink_status(out, error);
  if (!fs::exists(status)) {
    STRATA_INPUT_CHECK(fs::is_directory(out.parent_path()), "--out ", out.string(), ": ",
                       out.parent_path().string(), " is not a directory");
    return;
  }
  STRATA_INPUT_CHECK(fs::is_directory(status), "--out ", out.string(),
                     ": exists and is not a directory");
  STRATA_INPUT_CHECK(replace || fs::is_empty(out, error), "--out ", out.string(),
                     ": exists and is not empty; give --replace to replace it (old and new files "
                     "are never mixed)");
}

// The checkpoint's bytes against the free space where it is written.
void check_room(const fs::path& out, const ModelConfig& config, DType dtype) {
  const fs::path dir = out.parent_path();
  const double need =
      static_cast<double>(config.n_params()) * static_cast<double>(dtype_size(dtype));
  struct statvfs info {};
  if (::statvfs(dir.c_str(), &info) != 0) return;
  const double free_bytes = static_cast<double>(info.f_bavail) * static_cast<double>(info.f_frsize);
  STRATA_INPUT_CHECK(need <= free_bytes, "--out ", out.string(), ": the checkpoint needs about ",
                     format_bytes(need), " but its filesystem has ", format_bytes(free_bytes),
                     " free");
}

// Puts `staged` at `out`; an existing `out` (empty, or --replace) goes only once it is in place.
void move_into_place(StagingDir& staged, const fs::path& out) {
  std::error_code error;
  fs::path old;
  if (fs::exists(out)) {
    old = staged.path().string() + ".old";
    fs::rename(out, old, error);
    STRATA_CHECK(!error, "rename ", out.string(), " -> ", old.string(), ": ", error.message());
  }
  fs::rename(staged.path(), out, error);
  std::error_code ignored;
  if (error && !old.empty()) fs::rename(old, out, ignored);  // put the old one back
  STRATA_CHECK(!error, "rename ", staged.path().string(), " -> ", out.string(), ": ",
               error.message());
  staged.release();
  if (!old.empty()) fs::remove_all(old, error);
}

}  // namespace

int run_synth(int argc, char** argv) {
  std::string archs;
  for (const auto& name : builtin_model_names()) archs += (archs.empty() ? "" : ", ") + name;
  cxxopts::Options options("strata synth",
                           "Write a Hugging Face OPT directory with random weights.");
  options.add_options()("arch", "family member: " + archs, cxxopts::value<std::string>())(
      "layers", "override num_hidden_layers", number_value())("seed", "random seed",
                                                              number_value("0"))(
      "max-shard-size", "largest safetensors shard",
      cxxopts::value<std::string>()->default_value("5GB"))("out", "output directory",
                                                           cxxopts::value<std::string>())(
      "replace", "replace --out when it exists and is not empty");
  const auto flags = parse_flags(options, argc, argv);
  STRATA_INPUT_CHECK(flags.count("arch"), "--arch is required (", archs, ")");
  STRATA_INPUT_CHECK(flags.count("out"), "--out is required");
  const std::string arch = flags["arch"].as<std::string>();
  nlohmann::json config_json = builtin_config_json(arch);
  if (flags.count("layers")) config_json["num_hidden_layers"] = int_flag(flags, "layers", 1, 4096);
  const uint64_t shard = parse_bytes(flags["max-shard-size"].as<std::string>(), "--max-shard-size");
  STRATA_INPUT_CHECK(shard > 0, "--max-shard-size must be > 0");
  const ModelConfig config = parse_model_config(config_json, arch);
  const std::string out_text = flags["out"].as<std::string>();
  const fs::path out = fs::absolute(fs::path(out_text)).lexically_normal();
  const fs::path target = out.has_filename() ? out : out.parent_path();
  check_target(target, flags.count("replace") > 0);
  check_room(target, config, config.dtype);
  auto source = make_synthetic_source(config, uint64_flag(flags, "seed"), "synthetic:" + arch);
  StagingDir staged(target);
  write_checkpoint(*source, config_json, staged.path().string(), shard);
  move_into_place(staged, target);
  std::fprintf(stderr, "strata synth: wrote %s (%s, %lld layers, %.3g B parameters)\n",
               out_text.c_str(), arch.c_str(), static_cast<long long>(config.n_layers),
               static_cast<double>(config.n_params()) / 1e9);
  return 0;
}

}  // namespace strata::cli
