// Where a --model value's files are: a directory as given, or a Hugging Face repository name
// ("org/name") found in the local Hugging Face cache, without network.
#pragma once

#include <string>

namespace strata {

// The local Hugging Face hub cache: $HF_HUB_CACHE, else $HF_HOME/hub, else
// ~/.cache/huggingface/hub.
std::string hf_hub_cache();

// `spec` itself when it is synthetic:ARCH or names an existing path; for "org/name", the cache's
// models--org--name/snapshots/<refs/main>; for a missing bare name, an input error. An input
// error says where it looked and that synthetic: names exist.
std::string resolve_model_dir(const std::string& spec);

}  // namespace strata
