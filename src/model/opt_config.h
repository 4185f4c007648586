// The OPTConfig fields that change the math, read from a Hugging Face config.json.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "model/safetensors.h"

namespace strata {

enum class Activation { kRelu, kGelu };

struct OptConfig {
  int64_t hidden_size = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t ffn_dim = 0;
  int64_t vocab_size = 0;
  int64_t max_positions = 0;
  int64_t word_embed_proj_dim = 0;  // != hidden_size: project_in / project_out exist
  bool pre_layer_norm = true;       // do_layer_norm_before
  bool final_layer_norm = true;     // pre-LN and not _remove_final_layer_norm
  bool enable_bias = true;
  bool layer_norm_affine = true;
  Activation activation = Activation::kRelu;
  int32_t pad_token_id = 1;
  int32_t bos_token_id = 2;
  int32_t eos_token_id = 2;
  DType dtype = DType::kF16;

  int64_t head_dim() const { return hidden_size / n_heads; }
  bool has_projection() const { return word_embed_proj_dim != hidden_size; }
  // Total parameters (lm_head tied, so counted once).
  int64_t n_params() const;
};

// `source` names the file in error messages.
OptConfig parse_opt_config(const nlohmann::json& json, const std::string& source);
OptConfig load_opt_config(const std::string& path);

// The tensors an OPT checkpoint must hold for `config`, with their shapes; names without the
// "model.decoder." prefix (e.g. "layers.0.fc1.weight", "embed_tokens.weight").
struct TensorSpec {
  std::string name;
  Shape shape;
};
std::vector<TensorSpec> opt_tensor_specs(const OptConfig& config);
std::vector<TensorSpec> opt_layer_tensor_specs(const OptConfig& config, int64_t layer);

// The OPT family built into the binary (configs/models/*.json): "opt-125m" ... "opt-175b".
std::vector<std::string> opt_family_names();
// The config.json of a family member; input error listing the names when unknown.
nlohmann::json opt_family_config_json(const std::string& arch);

}  // namespace strata
