// The decoder-only architectures strata runs, read from a Hugging Face config.json into one
// description of a decoder layer: OPT (LayerNorm, learned positions, ReLU / GELU MLP) and the
// Llama family (Llama 2/3, Mistral, Qwen2: RMSNorm, rotary positions, GQA, SwiGLU MLP).
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "model/safetensors.h"

namespace strata {

enum class Family { kOpt, kLlama, kMistral, kQwen2 };
enum class Activation { kRelu, kGelu, kSilu };
enum class RopeScaling { kNone, kLinear, kLlama3 };

// Rotary positions as Hugging Face computes them (rotate_half layout).
struct Rope {
  double theta = 10000.0;
  RopeScaling scaling = RopeScaling::kNone;
  double factor = 1.0;  // linear: positions / factor; llama3: long wavelengths / factor
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_positions = 8192;
};

// Tensor names within a decoder layer ("layers.N." + name + ".weight"); empty when absent.
struct LayerNames {
  std::string attn_norm, q, k, v, o, mlp_norm, gate, up, down;
};

struct ModelConfig {
  Family family = Family::kOpt;
  int64_t hidden_size = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;  // 0: n_heads (no GQA); read through kv_heads()
  int64_t head_size = 0;   // config's head_dim; 0: hidden_size / n_heads; read through head_dim()
  int64_t ffn_dim = 0;     // OPT ffn_dim, Llama intermediate_size
  int64_t vocab_size = 0;
  int64_t max_positions = 0;
  int64_t word_embed_proj_dim = 0;  // OPT only: != hidden_size when project_in / out exist
  bool pre_layer_norm = true;       // OPT's do_layer_norm_before
  bool final_layer_norm = true;     // a norm before the head
  bool layer_norm_affine = true;
  bool rms_norm = false;  // RMSNorm (weight only) instead of LayerNorm
  double norm_eps = 1e-5;
  bool rotary = false;  // rotary positions instead of learned ones
  Rope rope;
  bool qkv_bias = true;  // biases of q / k / v, of the attention output, of the MLP linears
  bool o_bias = true;
  bool mlp_bias = true;
  bool gated_mlp = false;  // SwiGLU: down(act(gate(x)) * up(x))
  Activation activation = Activation::kRelu;
  bool tie_word_embeddings = true;
  int64_t sliding_window = 0;  // 0: none
  int32_t pad_token_id = 1;
  int32_t bos_token_id = 2;
  std::vector<int32_t> eos_token_ids = {2};  // any of them ends a sequence
  DType dtype = DType::kF16;

  int64_t head_dim() const { return head_size > 0 ? head_size : hidden_size / n_heads; }
  int64_t kv_heads() const { return n_kv_heads > 0 ? n_kv_heads : n_heads; }
  int64_t q_dim() const { return n_heads * head_dim(); }
  int64_t kv_dim() const { return kv_heads() * head_dim(); }  // cache width per token and layer
  bool has_projection() const { return word_embed_proj_dim != hidden_size; }
  bool is_eos(int32_t token) const;
  LayerNames layer_names() const;
  std::string final_norm_name() const { return rotary ? "norm" : "final_layer_norm"; }
  // Width of the MLP's intermediate buffer: gate and up side by side when gated.
  int64_t mlp_width() const { return gated_mlp ? 2 * ffn_dim : ffn_dim; }
  // Total parameters (a tied lm_head counted once).
  int64_t n_params() const;
};

const char* family_name(Family family);

// The rotary frequency of each pair (head_dim / 2 of them), with rope_scaling applied as
// Hugging Face's rope initialisation does.
std::vector<float> rope_inv_freq(const ModelConfig& config);

// `source` names the file in error messages.
ModelConfig parse_model_config(const nlohmann::json& json, const std::string& source);
ModelConfig load_model_config(const std::string& path);
// Applies generation_config.json's bos / eos (eos may be a list) over config.json's.
void apply_generation_config(const nlohmann::json& json, const std::string& source,
                             ModelConfig& config);

// The tensors a checkpoint must hold for `config`, with their shapes; names without the family's
// prefix ("model.decoder." for OPT, "model." for Llama), e.g. "layers.0.fc1.weight",
// "embed_tokens.weight"; "lm_head.weight" last when the head is not tied.
struct TensorSpec {
  std::string name;
  Shape shape;
};
std::vector<TensorSpec> model_tensor_specs(const ModelConfig& config);
std::vector<TensorSpec> layer_tensor_specs(const ModelConfig& config, int64_t layer);
// The prefix of every tensor name but lm_head's in a checkpoint saved by *ForCausalLM.
std::string checkpoint_prefix(const ModelConfig& config);

// The models built into the binary (configs/models/*.json): "opt-125m" ... "llama-3.1-405b".
std::vector<std::string> builtin_model_names();
// The config.json of a built-in model; input error listing the names when unknown.
nlohmann::json builtin_config_json(const std::string& arch);

}  // namespace strata
