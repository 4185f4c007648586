#include "model/opt_config.h"

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_file.h"

namespace strata {

const std::map<std::string, std::string>& embedded_model_configs();  // generated

namespace {

int64_t positive_int(const nlohmann::json& j, const std::string& field, const std::string& src) {
  auto it = j.find(field);
  STRATA_INPUT_CHECK(it != j.end(), src, ": missing field '", field, "'");
  STRATA_INPUT_CHECK(it->is_number_integer() && it->get<int64_t>() > 0, src, ": field '", field,
                     "' must be a positive integer");
  return it->get<int64_t>();
}

template <typename T>
T optional_field(const nlohmann::json& j, const std::string& field, T fallback,
                 const std::string& src) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return fallback;
  try {
    return it->get<T>();
  } catch (const nlohmann::json::exception&) {
    throw_input(src + ": field '" + field + "' has the wrong type");
  }
}

}  // namespace

int64_t OptConfig::n_params() const {
  const int64_t h = hidden_size;
  const int64_t per_layer = 4 * h * h + 2 * h * ffn_dim + (enable_bias ? 4 * h + ffn_dim + h : 0) +
                            (layer_norm_affine ? 4 * h : 0);
  int64_t total = n_layers * per_layer + vocab_size * word_embed_proj_dim + (max_positions + 2) * h;
  if (has_projection()) total += 2 * h * word_embed_proj_dim;
  if (final_layer_norm && layer_norm_affine) total += 2 * h;
  return total;
}

OptConfig parse_opt_config(const nlohmann::json& j, const std::string& src) {
  STRATA_INPUT_CHECK(j.is_object(), src, ": not a JSON object");
  const std::string model_type = optional_field<std::string>(j, "model_type", "opt", src);
  STRATA_INPUT_CHECK(model_type == "opt", src, ": model_type '", model_type,
                     "' is not supported (only 'opt')");
  OptConfig c;
  c.hidden_size = positive_int(j, "hidden_size", src);
  c.n_layers = positive_int(j, "num_hidden_layers", src);
  c.n_heads = positive_int(j, "num_attention_heads", src);
  c.ffn_dim = positive_int(j, "ffn_dim", src);
  c.vocab_size = positive_int(j, "vocab_size", src);
  c.max_positions = positive_int(j, "max_position_embeddings", src);
  c.word_embed_proj_dim = j.contains("word_embed_proj_dim")
                              ? positive_int(j, "word_embed_proj_dim", src)
                              : c.hidden_size;
  STRATA_INPUT_CHECK(c.hidden_size % c.n_heads == 0, src, ": hidden_size ", c.hidden_size,
                     " is not a multiple of num_attention_heads ", c.n_heads);
  c.pre_layer_norm = optional_field<bool>(j, "do_layer_norm_before", true, src);
  c.final_layer_norm =
      c.pre_layer_norm && !optional_field<bool>(j, "_remove_final_layer_norm", false, src);
  c.enable_bias = optional_field<bool>(j, "enable_bias", true, src);
  c.layer_norm_affine = optional_field<bool>(j, "layer_norm_elementwise_affine", true, src);
  const auto act = optional_field<std::string>(j, "activation_function", "relu", src);
  if (act == "relu") {
    c.activation = Activation::kRelu;
  } else if (act == "gelu") {
    c.activation = Activation::kGelu;
  } else {
    throw_input(src + ": activation_function '" + act + "' is not supported (relu, gelu are)");
  }
  c.pad_token_id = optional_field<int32_t>(j, "pad_token_id", 1, src);
  c.bos_token_id = optional_field<int32_t>(j, "bos_token_id", 2, src);
  c.eos_token_id = optional_field<int32_t>(j, "eos_token_id", 2, src);
  const auto dtype = optional_field<std::string>(j, "torch_dtype", "float16", src);
  auto parsed = dtype_from_torch(dtype);
  STRATA_INPUT_CHECK(parsed.has_value(), src, ": torch_dtype '", dtype,
                     "' is not supported (float16, bfloat16, float32 are)");
  c.dtype = *parsed;
  return c;
}

OptConfig load_opt_config(const std::string& path) {
  return parse_opt_config(read_json_file(path, "config.json"), path);
}

std::vector<TensorSpec> opt_layer_tensor_specs(const OptConfig& c, int64_t layer) {
  const std::string p = "layers." + std::to_string(layer) + ".";
  const int64_t h = c.hidden_size;
  std::vector<TensorSpec> specs;
  auto linear = [&](const std::string& name, int64_t out, int64_t in) {
    specs.push_back({p + name + ".weight", {out, in}});
    if (c.enable_bias) specs.push_back({p + name + ".bias", {out}});
  };
  auto norm = [&](const std::string& name) {
    if (!c.layer_norm_affine) return;
    specs.push_back({p + name + ".weight", {h}});
    specs.push_back({p + name + ".bias", {h}});
  };
  norm("self_attn_layer_norm");
  linear("self_attn.q_proj", h, h);
  linear("self_attn.k_proj", h, h);
  linear("self_attn.v_proj", h, h);
  linear("self_attn.out_proj", h, h);
  norm("final_layer_norm");
  linear("fc1", c.ffn_dim, h);
  linear("fc2", h, c.ffn_dim);
  return specs;
}

std::vector<TensorSpec> opt_tensor_specs(const OptConfig& c) {
  std::vector<TensorSpec> specs = {
      {"embed_tokens.weight", {c.vocab_size, c.word_embed_proj_dim}},
      {"embed_positions.weight", {c.max_positions + 2, c.hidden_size}},
  };
  if (c.has_projection()) {
    specs.push_back({"project_in.weight", {c.hidden_size, c.word_embed_proj_dim}});
    specs.push_back({"project_out.weight", {c.word_embed_proj_dim, c.hidden_size}});
  }
  if (c.final_layer_norm && c.layer_norm_affine) {
    specs.push_back({"final_layer_norm.weight", {c.hidden_size}});
    specs.push_back({"final_layer_norm.bias", {c.hidden_size}});
  }
  for (int64_t l = 0; l < c.n_layers; ++l) {
    auto layer = opt_layer_tensor_specs(c, l);
    specs.insert(specs.end(), layer.begin(), layer.end());
  }
  return specs;
}

std::vector<std::string> opt_family_names() {
  std::vector<std::pair<int64_t, std::string>> sized;
  for (const auto& [name, text] : embedded_model_configs()) {
    sized.emplace_back(parse_opt_config(nlohmann::json::parse(text), name).n_params(), name);
  }
  std::sort(sized.begin(), sized.end());
  std::vector<std::string> names;
  for (auto& [size, name] : sized) names.push_back(name);
  return names;
}

nlohmann::json opt_family_config_json(const std::string& arch) {
  const auto& configs = embedded_model_configs();
  auto it = configs.find(arch);
  if (it == configs.end()) {
    std::string known;
    for (const auto& name : opt_family_names()) known += (known.empty() ? "" : ", ") + name;
    throw_input("unknown model architecture '" + arch + "' (known: " + known + ")");
  }
  return nlohmann::json::parse(it->second);
}

}  // namespace strata
