#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/flag_values.h"
#include "core/error.h"
#include "core/units.h"
#include "model/weight_source.h"

namespace strata::cli {

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
                                                           cxxopts::value<std::string>());
  const auto flags = parse_flags(options, argc, argv);
  STRATA_INPUT_CHECK(flags.count("arch"), "--arch is required (", archs, ")");
  STRATA_INPUT_CHECK(flags.count("out"), "--out is required");
  const std::string arch = flags["arch"].as<std::string>();
  nlohmann::json config_json = builtin_config_json(arch);
  if (flags.count("layers")) {
    const int64_t layers = int_flag(flags, "layers", 1, 4096);
    config_json["num_hidden_layers"] = layers;
  }
  const uint64_t shard = parse_bytes(flags["max-shard-size"].as<std::string>(), "--max-shard-size");
  STRATA_INPUT_CHECK(shard > 0, "--max-shard-size must be > 0");
  const ModelConfig config = parse_model_config(config_json, arch);
  auto source = make_synthetic_source(config, uint64_flag(flags, "seed"), "synthetic:" + arch);
  const std::string out = flags["out"].as<std::string>();
  write_checkpoint(*source, config_json, out, shard);
  std::fprintf(stderr, "strata synth: wrote %s (%s, %lld layers, %.3g B parameters)\n", out.c_str(),
               arch.c_str(), static_cast<long long>(config.n_layers),
               static_cast<double>(config.n_params()) / 1e9);
  return 0;
}

}  // namespace strata::cli
