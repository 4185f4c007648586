// Where a model's weights come from: a Hugging Face checkpoint directory, or random weights made
// on the fly for a family member ("synthetic:opt-30b", FlexGen's dummy mode).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "model/model_config.h"

namespace strata {

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual const ModelConfig& config() const = 0;
  virtual const std::string& description() const = 0;
  // Writes tensor `name` (e.g. "layers.3.fc1.weight", "lm_head.weight"), converted to `dtype`,
  // into dst, which holds the spec's number of elements.
  virtual void read(const std::string& name, DType dtype, void* dst) const = 0;
  // False when lm_head is tied to embed_tokens (the file has no lm_head.weight).
  virtual bool has_separate_lm_head() const { return false; }
};

// "DIR" (config.json + model.safetensors or model.safetensors.index.json) or "synthetic:ARCH".
// Every tensor is checked against config.json here, before any weight is read.
std::unique_ptr<WeightSource> open_weight_source(const std::string& spec);

// Random weights for `config`, deterministic in `seed` and each tensor's name.
std::unique_ptr<WeightSource> make_synthetic_source(const ModelConfig& config, uint64_t seed,
                                                    std::string description);

// Writes a Hugging Face model directory (config.json, generation_config.json and safetensors
// shards of at most max_shard_bytes, with an index when there is more than one).
void write_checkpoint(const WeightSource& source, const nlohmann::json& config_json,
                      const std::string& dir, uint64_t max_shard_bytes);

}  // namespace strata
