#include "model/model_config.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_file.h"

namespace strata {

const std::map<std::string, std::string>& embedded_model_configs();  // generated

namespace {

// Bounds far above any released model, so a corrupt config fails here and not in an allocation.
constexpr int64_t kMaxDim = int64_t{1} << 22;
constexpr int64_t kMaxLayers = 4096;

int64_t positive_int(const nlohmann::json& j, const std::string& field, const std::string& src,
                     int64_t max = kMaxDim) {
  auto it = j.find(field);
  STRATA_INPUT_CHECK(it != j.end() && !it->is_null(), src, ": missing field '", field, "'");
  STRATA_INPUT_CHECK(it->is_number_integer() && it->get<int64_t>() > 0, src, ": field '", field,
                     "' must be a positive integer");
  STRATA_INPUT_CHECK(it->get<int64_t>() <= max, src, ": field '", field, "' is ",
                     it->get<int64_t>(), ", past the largest supported (", max, ")");
  return it->get<int64_t>();
}

int64_t optional_positive(const nlohmann::json& j, const std::string& field, int64_t fallback,
                          const std::string& src) {
  auto it = j.find(field);
  return it == j.end() || it->is_null() ? fallback : positive_int(j, field, src);
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

// An integer field within [lo, hi]: nlohmann's get<int32_t> would narrow 2^40 or 2.5 silently.
int64_t optional_int(const nlohmann::json& j, const std::string& field, int64_t fallback,
                     int64_t lo, int64_t hi, const std::string& src) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return fallback;
  const bool integer = it->is_number_integer() &&
                       !(it->is_number_unsigned() && it->get<uint64_t>() > uint64_t{INT64_MAX});
  const int64_t v = integer ? it->get<int64_t>() : 0;
  STRATA_INPUT_CHECK(integer && v >= lo && v <= hi, src, ": field '", field,
                     "' must be an integer from ", lo, " to ", hi);
  return v;
}

// The token a prompt starts with, so it indexes the embedding.
int32_t bos_token(const nlohmann::json& j, int32_t fallback, const ModelConfig& c,
                  const std::string& src) {
  return static_cast<int32_t>(optional_int(j, "bos_token_id", fallback, 0, c.vocab_size - 1, src));
}

// Padding is never embedded; any int32 (HF writes -1 or leaves it out for none).
int32_t pad_token(const nlohmann::json& j, int32_t fallback, const std::string& src) {
  return static_cast<int32_t>(optional_int(j, "pad_token_id", fallback, -1, INT32_MAX, src));
}

double positive_number(const nlohmann::json& j, const std::string& field, double fallback,
                       const std::string& src) {
  const double v = optional_field<double>(j, field, fallback, src);
  STRATA_INPUT_CHECK(v > 0 && v < 1e300, src, ": field '", field, "' must be a positive number");
  return v;
}

// A token id, or (eos in newer configs) a list of them.
std::vector<int32_t> token_ids(const nlohmann::json& j, const std::string& field,
                               std::vector<int32_t> fallback, const std::string& src) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return fallback;
  std::vector<int32_t> ids;
  const auto one = [&](const nlohmann::json& v) {
    STRATA_INPUT_CHECK(
        v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() < (int64_t{1} << 31),
        src, ": field '", field, "' must be a token id or a list of them");
    ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
  };
  if (it->is_array()) {
    for (const auto& v : *it) one(v);
  } else {
    one(*it);
  }
  STRATA_INPUT_CHECK(!ids.empty(), src, ": field '", field, "' is an empty list");
  return ids;
}

DType torch_dtype(const nlohmann::json& j, const std::string& src) {
  const auto name = optional_field<std::string>(j, "torch_dtype", "float16", src);
  const auto parsed = dtype_from_torch(name);
  STRATA_INPUT_CHECK(parsed.has_value(), src, ": torch_dtype '", name,
                     "' is not supported (float16, bfloat16, float32 are)");
  return *parsed;
}

void parse_opt(const nlohmann::json& j, const std::string& src, ModelConfig& c) {
  c.ffn_dim = positive_int(j, "ffn_dim", src);
  c.word_embed_proj_dim = optional_positive(j, "word_embed_proj_dim", c.hidden_size, src);
  STRATA_INPUT_CHECK(c.hidden_size % c.n_heads == 0, src, ": hidden_size ", c.hidden_size,
                     " is not a multiple of num_attention_heads ", c.n_heads);
  c.n_kv_heads = c.n_heads;
  c.head_size = c.hidden_size / c.n_heads;
  c.pre_layer_norm = optional_field<bool>(j, "do_layer_norm_before", true, src);
  c.final_layer_norm =
      c.pre_layer_norm && !optional_field<bool>(j, "_remove_final_layer_norm", false, src);
  const bool bias = optional_field<bool>(j, "enable_bias", true, src);
  c.qkv_bias = c.o_bias = c.mlp_bias = bias;
  c.layer_norm_affine = optional_field<bool>(j, "layer_norm_elementwise_affine", true, src);
  const auto act = optional_field<std::string>(j, "activation_function", "relu", src);
  STRATA_INPUT_CHECK(act == "relu" || act == "gelu", src, ": activation_function '", act,
                     "' is not supported (relu, gelu are)");
  c.activation = act == "relu" ? Activation::kRelu : Activation::kGelu;
  c.pad_token_id = pad_token(j, 1, src);
  c.bos_token_id = bos_token(j, std::min<int64_t>(2, c.vocab_size - 1), c, src);
  c.eos_token_ids = token_ids(j, "eos_token_id", {2}, src);
}

Rope parse_rope(const nlohmann::json& j, const std::string& src) {
  Rope r;
  r.theta = positive_number(j, "rope_theta", 10000.0, src);
  auto it = j.find("rope_scaling");
  if (it == j.end() || it->is_null()) return r;
  STRATA_INPUT_CHECK(it->is_object(), src, ": field 'rope_scaling' must be an object or null");
  const auto& s = *it;
  const std::string type = s.contains("rope_type")
                               ? optional_field<std::string>(s, "rope_type", "", src)
                               : optional_field<std::string>(s, "type", "", src);
  if (type == "default") return r;
  STRATA_INPUT_CHECK(type == "linear" || type == "llama3", src, ": rope_scaling type '", type,
                     "' is not supported (linear, llama3 are)");
  r.factor = positive_number(s, "factor", 0, src + " rope_scaling");
  if (type == "linear") {
    r.scaling = RopeScaling::kLinear;
    return r;
  }
  r.scaling = RopeScaling::kLlama3;
  r.low_freq_factor = positive_number(s, "low_freq_factor", 1.0, src + " rope_scaling");
  r.high_freq_factor = positive_number(s, "high_freq_factor", 4.0, src + " rope_scaling");
  STRATA_INPUT_CHECK(r.high_freq_factor > r.low_freq_factor, src,
                     ": rope_scaling high_freq_factor must exceed low_freq_factor");
  r.original_max_positions =
      positive_int(s, "original_max_position_embeddings", src + " rope_scaling");
  return r;
}

void parse_llama(const nlohmann::json& j, const std::string& src, ModelConfig& c) {
  c.ffn_dim = positive_int(j, "intermediate_size", src);
  c.word_embed_proj_dim = c.hidden_size;
  c.n_kv_heads = optional_positive(j, "num_key_value_heads", c.n_heads, src);
  STRATA_INPUT_CHECK(c.n_heads % c.n_kv_heads == 0, src, ": num_key_value_heads ", c.n_kv_heads,
                     " does not divide num_attention_heads ", c.n_heads);
  const bool explicit_head = j.contains("head_dim") && !j["head_dim"].is_null();
  STRATA_INPUT_CHECK(explicit_head || c.hidden_size % c.n_heads == 0, src, ": hidden_size ",
                     c.hidden_size, " is not a multiple of num_attention_heads ", c.n_heads);
  c.head_size = explicit_head ? positive_int(j, "head_dim", src) : c.hidden_size / c.n_heads;
  STRATA_INPUT_CHECK(c.head_size % 2 == 0, src, ": head_dim ", c.head_size,
                     " must be even for rotary positions");
  c.rms_norm = true;
  c.rotary = true;
  c.norm_eps = positive_number(j, "rms_norm_eps", 1e-6, src);
  c.rope = parse_rope(j, src);
  c.gated_mlp = true;
  const auto act = optional_field<std::string>(j, "hidden_act", "silu", src);
  STRATA_INPUT_CHECK(act == "silu", src, ": hidden_act '", act, "' is not supported (silu is)");
  c.activation = Activation::kSilu;
  const bool qwen2 = c.family == Family::kQwen2;
  const bool attention_bias = optional_field<bool>(j, "attention_bias", false, src);
  c.qkv_bias = qwen2 || attention_bias;
  c.o_bias = !qwen2 && attention_bias;
  c.mlp_bias = optional_field<bool>(j, "mlp_bias", false, src);
  c.tie_word_embeddings = optional_field<bool>(j, "tie_word_embeddings", false, src);
  // Qwen2 applies its window only with use_sliding_window.
  if (!qwen2 || optional_field<bool>(j, "use_sliding_window", false, src)) {
    c.sliding_window = optional_int(j, "sliding_window", 0, 0, INT64_MAX, src);
  }
  c.pad_token_id = pad_token(j, -1, src);
  c.bos_token_id = bos_token(j, std::min<int64_t>(1, c.vocab_size - 1), c, src);
  c.eos_token_ids = token_ids(j, "eos_token_id", {2}, src);
}

}  // namespace

const char* family_name(Family family) {
  switch (family) {
    case Family::kOpt:
      return "opt";
    case Family::kLlama:
      return "llama";
    case Family::kMistral:
      return "mistral";
    case Family::kQwen2:
      return "qwen2";
  }
  return "?";
}

std::vector<float> rope_inv_freq(const ModelConfig& c) {
  const Rope& r = c.rope;
  const int64_t half = c.head_dim() / 2;
  std::vector<float> inv(static_cast<size_t>(half));
  const double low_wavelen = static_cast<double>(r.original_max_positions) / r.low_freq_factor;
  const double high_wavelen = static_cast<double>(r.original_max_positions) / r.high_freq_factor;
  for (int64_t i = 0; i < half; ++i) {
    double f =
        1.0 / std::pow(r.theta, 2.0 * static_cast<double>(i) / static_cast<double>(c.head_dim()));
    if (r.scaling == RopeScaling::kLinear) f /= r.factor;
    if (r.scaling == RopeScaling::kLlama3) {
      // Long wavelengths are slowed by factor, short ones kept, the band between blended.
      const double wavelen = 2.0 * M_PI / f;
      if (wavelen > low_wavelen) {
        f /= r.factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth =
            (static_cast<double>(r.original_max_positions) / wavelen - r.low_freq_factor) /
            (r.high_freq_factor - r.low_freq_factor);
        f = (1.0 - smooth) * f / r.factor + smooth * f;
      }
    }
    inv[static_cast<size_t>(i)] = static_cast<float>(f);
  }
  return inv;
}

bool ModelConfig::is_eos(int32_t token) const {
  return std::find(eos_token_ids.begin(), eos_token_ids.end(), token) != eos_token_ids.end();
}

LayerNames ModelConfig::layer_names() const {
  if (!rotary) {
    return {"self_attn_layer_norm",
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.out_proj",
            "final_layer_norm",
            "",
            "fc1",
            "fc2"};
  }
  return {"input_layernorm",  "self_attn.q_proj", "self_attn.k_proj",
          "self_attn.v_proj", "self_attn.o_proj", "post_attention_layernorm",
          "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
}

int64_t ModelConfig::n_params() const {
  int64_t total = 0;
  for (const auto& spec : model_tensor_specs(*this)) total += shape_numel(spec.shape);
  return total;
}

ModelConfig parse_model_config(const nlohmann::json& j, const std::string& src) {
  STRATA_INPUT_CHECK(j.is_object(), src, ": not a JSON object");
  const std::string model_type = optional_field<std::string>(j, "model_type", "opt", src);
  const std::map<std::string, Family> families = {{"opt", Family::kOpt},
                                                  {"llama", Family::kLlama},
                                                  {"mistral", Family::kMistral},
                                                  {"qwen2", Family::kQwen2}};
  const auto family = families.find(model_type);
  STRATA_INPUT_CHECK(family != families.end(), src, ": model_type '", model_type,
                     "' is not supported (opt, llama, mistral, qwen2 are)");
  ModelConfig c;
  c.family = family->second;
  c.hidden_size = positive_int(j, "hidden_size", src);
  c.n_layers = positive_int(j, "num_hidden_layers", src, kMaxLayers);
  c.n_heads = positive_int(j, "num_attention_heads", src);
  c.vocab_size = positive_int(j, "vocab_size", src);
  c.max_positions = positive_int(j, "max_position_embeddings", src);
  c.dtype = torch_dtype(j, src);
  if (c.family == Family::kOpt) {
    parse_opt(j, src, c);
  } else {
    parse_llama(j, src, c);
  }
  return c;
}

ModelConfig load_model_config(const std::string& path) {
  return parse_model_config(read_json_file(path, "config.json"), path);
}

void apply_generation_config(const nlohmann::json& j, const std::string& src, ModelConfig& c) {
  STRATA_INPUT_CHECK(j.is_object(), src, ": not a JSON object");
  c.bos_token_id = bos_token(j, c.bos_token_id, c, src);
  c.eos_token_ids = token_ids(j, "eos_token_id", c.eos_token_ids, src);
}

std::string checkpoint_prefix(const ModelConfig& c) {
  return c.family == Family::kOpt ? "model.decoder." : "model.";
}

std::vector<TensorSpec> layer_tensor_specs(const ModelConfig& c, int64_t layer) {
  const std::string p = "layers." + std::to_string(layer) + ".";
  const int64_t h = c.hidden_size;
  const LayerNames n = c.layer_names();
  std::vector<TensorSpec> specs;
  auto linear = [&](const std::string& name, int64_t out, int64_t in, bool bias) {
    specs.push_back({p + name + ".weight", {out, in}});
    if (bias) specs.push_back({p + name + ".bias", {out}});
  };
  auto norm = [&](const std::string& name) {
    if (!c.layer_norm_affine) return;
    specs.push_back({p + name + ".weight", {h}});
    if (!c.rms_norm) specs.push_back({p + name + ".bias", {h}});
  };
  norm(n.attn_norm);
  linear(n.q, c.q_dim(), h, c.qkv_bias);
  linear(n.k, c.kv_dim(), h, c.qkv_bias);
  linear(n.v, c.kv_dim(), h, c.qkv_bias);
  linear(n.o, h, c.q_dim(), c.o_bias);
  norm(n.mlp_norm);
  if (c.gated_mlp) linear(n.gate, c.ffn_dim, h, c.mlp_bias);
  linear(n.up, c.ffn_dim, h, c.mlp_bias);
  linear(n.down, h, c.ffn_dim, c.mlp_bias);
  return specs;
}

std::vector<TensorSpec> model_tensor_specs(const ModelConfig& c) {
  std::vector<TensorSpec> specs = {{"embed_tokens.weight", {c.vocab_size, c.word_embed_proj_dim}}};
  if (!c.rotary) specs.push_back({"embed_positions.weight", {c.max_positions + 2, c.hidden_size}});
  if (c.has_projection()) {
    specs.push_back({"project_in.weight", {c.hidden_size, c.word_embed_proj_dim}});
    specs.push_back({"project_out.weight", {c.word_embed_proj_dim, c.hidden_size}});
  }
  if (c.final_layer_norm && c.layer_norm_affine) {
    specs.push_back({c.final_norm_name() + ".weight", {c.hidden_size}});
    if (!c.rms_norm) specs.push_back({c.final_norm_name() + ".bias", {c.hidden_size}});
  }
  for (int64_t l = 0; l < c.n_layers; ++l) {
    auto layer = layer_tensor_specs(c, l);
    specs.insert(specs.end(), layer.begin(), layer.end());
  }
  if (!c.tie_word_embeddings) {
    specs.push_back({"lm_head.weight", {c.vocab_size, c.word_embed_proj_dim}});
  }
  return specs;
}

std::vector<std::string> builtin_model_names() {
  std::vector<std::tuple<int, int64_t, std::string>> sized;
  for (const auto& [name, text] : embedded_model_configs()) {
    const ModelConfig c = parse_model_config(nlohmann::json::parse(text), name);
    sized.emplace_back(static_cast<int>(c.family), c.n_params(), name);
  }
  std::sort(sized.begin(), sized.end());
  std::vector<std::string> names;
  for (auto& [family, size, name] : sized) names.push_back(name);
  return names;
}

nlohmann::json builtin_config_json(const std::string& arch) {
  const auto& configs = embedded_model_configs();
  auto it = configs.find(arch);
  if (it == configs.end()) {
    std::string known;
    for (const auto& name : builtin_model_names()) known += (known.empty() ? "" : ", ") + name;
    throw_input("unknown model architecture '" + arch + "' (known: " + known + ")");
  }
  return nlohmann::json::parse(it->second);
}

}  // namespace strata
