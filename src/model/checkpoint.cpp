#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "core/error.h"
#include "core/json_file.h"
#include "model/model_dir.h"
#include "model/weight_source.h"

namespace strata {
namespace {

namespace fs = std::filesystem;

struct Located {
  const SafetensorsFile* file;
  const TensorInfo* info;
};

class CheckpointSource : public WeightSource {
 public:
  explicit CheckpointSource(const std::string& dir) : description_(dir) {
    const fs::path root(dir);
    STRATA_INPUT_CHECK(fs::is_directory(root), dir, ": not a model directory");
    config_ = load_model_config((root / "config.json").string());
    const fs::path generation = root / "generation_config.json";
    if (fs::exists(generation)) {
      apply_generation_config(read_json_file(generation.string(), "generation config"),
                              generation.string(), config_);
    }
    const fs::path single = root / "model.safetensors";
    const fs::path index = root / "model.safetensors.index.json";
    if (fs::exists(index)) {
      open_index(root, index.string());
    } else {
      STRATA_INPUT_CHECK(fs::exists(single), dir,
                         ": has neither model.safetensors nor model.safetensors.index.json");
      files_.push_back(std::make_unique<SafetensorsFile>(single.string()));
      for (const auto& [name, info] : files_.back()->tensors()) {
        names_[name] = files_.back().get();
      }
    }
    validate();
  }

  const ModelConfig& config() const override { return config_; }
  const std::string& description() const override { return description_; }
  bool has_separate_lm_head() const override { return has_lm_head_; }

  void read(const std::string& name, DType dtype, void* dst) const override {
    const Located t =
        locate(name == "lm_head.weight" && !has_lm_head_ ? "embed_tokens.weight" : name);
    const size_t n = static_cast<size_t>(shape_numel(t.info->shape));
    const void* src = t.file->data(*t.info);
    // A NaN or Inf in a weight poisons every logit downstream; found here, on bytes being read
    // anyway, it is named rather than returned as null logprobs.
    const size_t bad = first_non_finite(t.info->dtype, src, n);
    STRATA_INPUT_CHECK(bad == n, t.file->path(), ": tensor '", name, "' holds a ",
                       "non-finite value (NaN or Inf) at element ", bad, " of ", n,
                       ": the checkpoint is corrupt or was saved after an overflow");
    if (t.info->dtype == dtype) {
      std::memcpy(dst, src, n * dtype_size(dtype));
    } else if (dtype == DType::kF32) {
      convert_to_f32(t.info->dtype, src, static_cast<float*>(dst), n);
    } else {
      std::vector<float> tmp(n);
      convert_to_f32(t.info->dtype, src, tmp.data(), n);
      convert_from_f32(dtype, tmp.data(), dst, n);
    }
  }

 private:
  void open_index(const fs::path& root, const std::string& index_path) {
    const nlohmann::json j = read_json_file(index_path, "safetensors index");
    STRATA_INPUT_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(),
                       index_path, ": missing field 'weight_map'");
    std::map<std::string, const SafetensorsFile*> by_file;
    for (const auto& [name, file] : j["weight_map"].items()) {
      STRATA_INPUT_CHECK(file.is_string(), index_path, ": weight_map['", name,
                         "'] is not a file name");
      const std::string shard = file.get<std::string>();
      STRATA_INPUT_CHECK(shard.find('/') == std::string::npos, index_path, ": weight_map['", name,
                         "'] names a file outside the directory");
      auto it = by_file.find(shard);
      if (it == by_file.end()) {
        files_.push_back(std::make_unique<SafetensorsFile>((root / shard).string()));
        it = by_file.emplace(shard, files_.back().get()).first;
      }
      STRATA_INPUT_CHECK(it->second->find(name) != nullptr, index_path, ": tensor '", name,
                         "' is mapped to ", shard, " which does not hold it");
      names_[name] = it->second;
    }
  }

  // Checkpoints saved from *ForCausalLM say "model.decoder.X" (OPT) or "model.X" (Llama), from
  // OPTModel "decoder.X", from LlamaModel "X".
  std::optional<Located> try_locate(const std::string& name) const {
    const std::string candidates[] = {
        name == "lm_head.weight" ? name : checkpoint_prefix(config_) + name, "decoder." + name,
        name};
    for (const auto& full : candidates) {
      auto it = names_.find(full);
      if (it != names_.end()) return Located{it->second, it->second->find(full)};
    }
    return std::nullopt;
  }

  Located locate(const std::string& name) const {
    auto t = try_locate(name);
    STRATA_INPUT_CHECK(t.has_value(), description_, ": missing tensor '",
                       name == "lm_head.weight" ? "" : checkpoint_prefix(config_), name,
                       "' (model_type ", family_name(config_.family), ")");
    return *t;
  }

  void check(const std::string& name, const Shape& shape) const {
    const Located t = locate(name);
    STRATA_INPUT_CHECK(t.info->shape == shape, t.file->path(), ": tensor '", name, "' has shape ",
                       shape_string(t.info->shape), " but config.json implies ",
                       shape_string(shape));
  }

  // Each tensor is read in the dtype its header gives (as Hugging Face loads it), whatever
  // torch_dtype says; an untied head must be in the files, a tied one is used when present.
  void validate() {
    for (const auto& spec : model_tensor_specs(config_)) check(spec.name, spec.shape);
    has_lm_head_ = try_locate("lm_head.weight").has_value();
    if (has_lm_head_ && config_.tie_word_embeddings) {
      check("lm_head.weight", {config_.vocab_size, config_.word_embed_proj_dim});
    }
  }

  std::string description_;
  ModelConfig config_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile*> names_;
  bool has_lm_head_ = false;
};

}  // namespace

std::unique_ptr<WeightSource> open_weight_source(const std::string& spec) {
  const std::string prefix = "synthetic:";
  if (spec.rfind(prefix, 0) == 0) {
    const std::string arch = spec.substr(prefix.size());
    const auto json = builtin_config_json(arch);
    return make_synthetic_source(parse_model_config(json, arch), 0, spec);
  }
  return std::make_unique<CheckpointSource>(resolve_model_dir(spec));
}

}  // namespace strata
