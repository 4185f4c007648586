#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/buffer.h"
#include "core/error.h"
#include "core/random.h"
#include "model/weight_source.h"

namespace strata {
namespace {

uint64_t hash_name(const std::string& name, uint64_t seed) {
  uint64_t h = 1469598103934665603ull ^ seed;
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  return splitmix64(h);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

class SyntheticSource : public WeightSource {
 public:
  SyntheticSource(const ModelConfig& config, uint64_t seed, std::string description)
      : config_(config), seed_(seed), description_(std::move(description)) {
    for (const auto& spec : model_tensor_specs(config_))
      numel_[spec.name] = shape_numel(spec.shape);
  }

  const ModelConfig& config() const override { return config_; }
  const std::string& description() const override { return description_; }

  // Uniform values of a per-kind centre and spread: layer-norm gains near 1, small biases and
  // weights of std 0.02 as OPT was initialised.
  void read(const std::string& requested, DType dtype, void* dst) const override {
    const bool tied = requested == "lm_head.weight" && config_.tie_word_embeddings;
    const std::string name = tied ? "embed_tokens.weight" : requested;
    auto it = numel_.find(name);
    STRATA_CHECK(it != numel_.end(), "synthetic model has no tensor ", name);
    const size_t n = static_cast<size_t>(it->second);
    const bool norm = name.find("layer_norm") != std::string::npos ||
                      name.find("layernorm") != std::string::npos || name == "norm.weight";
    const bool bias = ends_with(name, ".bias");
    const float centre = norm && !bias ? 1.0f : 0.0f;
    const float half_width = norm ? 0.2f : (bias ? 0.02f : 0.0346f);  // 0.0346 = 0.02 * sqrt(3)
    const uint64_t key = hash_name(name, seed_);
    constexpr size_t kChunk = 4096;
    std::vector<float> chunk(kChunk);
    for (size_t base = 0; base < n; base += kChunk) {
      const size_t m = std::min(kChunk, n - base);
      for (size_t i = 0; i < m; i += 2) {
        const uint64_t r = splitmix64(key + base + i);
        const float u0 = static_cast<float>(r >> 40) * (1.0f / 16777216.0f);
        const float u1 = static_cast<float>((r >> 8) & 0xffffff) * (1.0f / 16777216.0f);
        chunk[i] = centre + half_width * (2.0f * u0 - 1.0f);
        if (i + 1 < m) chunk[i + 1] = centre + half_width * (2.0f * u1 - 1.0f);
      }
      // Values are those the stored dtype can hold, so a written checkpoint reads back the same.
      if (config_.dtype != DType::kF32) {
        std::vector<uint16_t> stored(m);
        convert_from_f32(config_.dtype, chunk.data(), stored.data(), m);
        convert_to_f32(config_.dtype, stored.data(), chunk.data(), m);
      }
      convert_from_f32(dtype, chunk.data(), static_cast<uint8_t*>(dst) + base * dtype_size(dtype),
                       m);
    }
  }

 private:
  ModelConfig config_;
  uint64_t seed_;
  std::string description_;
  std::map<std::string, int64_t> numel_;
};

}  // namespace

std::unique_ptr<WeightSource> make_synthetic_source(const ModelConfig& config, uint64_t seed,
                                                    std::string description) {
  return std::make_unique<SyntheticSource>(config, seed, std::move(description));
}

void write_checkpoint(const WeightSource& source, const nlohmann::json& config_json,
                      const std::string& dir, uint64_t max_shard_bytes) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  STRATA_INPUT_CHECK(!ec && fs::is_directory(dir), dir, ": cannot create directory");
  const ModelConfig& c = source.config();
  // The dtype written is the one config_json names, so a checkpoint can be re-saved in another.
  const DType dtype = parse_model_config(config_json, dir + "/config.json").dtype;
  auto write_json = [&](const std::string& name, const nlohmann::json& j) {
    std::ofstream out(fs::path(dir) / name);
    out << j.dump(2) << "\n";
    STRATA_INPUT_CHECK(out.good(), dir, "/", name, ": write failed");
  };
  write_json("config.json", config_json);
  nlohmann::json eos = c.eos_token_ids;
  if (c.eos_token_ids.size() == 1) eos = c.eos_token_ids[0];
  nlohmann::json generation = {
      {"_from_model_config", true}, {"bos_token_id", c.bos_token_id}, {"eos_token_id", eos}};
  if (c.pad_token_id >= 0) generation["pad_token_id"] = c.pad_token_id;
  write_json("generation_config.json", generation);

  // Group tensors into shards in order; HF names shards model-0000i-of-0000n.safetensors.
  std::vector<std::vector<TensorToWrite>> shards(1);
  uint64_t shard_bytes = 0;
  for (const auto& spec : model_tensor_specs(c)) {
    const uint64_t size = static_cast<uint64_t>(shape_numel(spec.shape)) * dtype_size(dtype);
    if (shard_bytes > 0 && shard_bytes + size > max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shard_bytes += size;
    const std::string name = spec.name;
    const std::string stored = name == "lm_head.weight" ? name : checkpoint_prefix(c) + name;
    shards.back().push_back({stored, dtype, spec.shape,
                             [&source, name, dtype](void* dst) { source.read(name, dtype, dst); }});
  }
  if (shards.size() == 1) {
    write_safetensors((fs::path(dir) / "model.safetensors").string(), shards[0]);
    return;
  }
  nlohmann::json weight_map = nlohmann::json::object();
  char file[64];
  for (size_t i = 0; i < shards.size(); ++i) {
    std::snprintf(file, sizeof(file), "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
    write_safetensors((fs::path(dir) / file).string(), shards[i]);
    for (const auto& t : shards[i]) weight_map[t.name] = file;
  }
  write_json("model.safetensors.index.json",
             {{"metadata", nlohmann::json::object()}, {"weight_map", weight_map}});
}

}  // namespace strata
