#!/usr/bin/env bash
# The layers: core <- model / tokenizer / kernels <- runtime <- planner / parallel <- cli. Every
# project include must point down that arrow (the per-folder libraries make a wrong-way call a
# link error; this catches header-only uses too).
set -euo pipefail
root=${1:-$(dirname "$0")/..}
cd "$root"
allowed() {
  case "$1" in
    src/core) echo "core" ;;
    src/model) echo "core model" ;;
    src/tokenizer) echo "core tokenizer" ;;
    kernels) echo "core kernels" ;;
    src/runtime) echo "core model tokenizer kernels runtime" ;;
    src/planner) echo "core model tokenizer kernels runtime planner" ;;
    parallel) echo "core model tokenizer kernels runtime parallel" ;;
    src/cli) echo "core model tokenizer kernels runtime planner parallel cli" ;;
  esac
}
bad=0
for layer in src/core src/model src/tokenizer kernels src/runtime src/planner parallel src/cli; do
  ok=" $(allowed "$layer") "
  while IFS=: read -r file line text; do
    target=$(sed -E 's/.*#include "([a-z_]+)\/.*/\1/' <<<"$text")
    if [[ "$ok" != *" $target "* ]]; then
      echo "$file:$line: $layer must not include $target/ ($text)"
      bad=1
    fi
  done < <(grep -rnE '^#include "[a-z_]+/' "$layer" --include='*.h' --include='*.cpp' \
             --include='*.cu' --include='*.cuh' || true)
done
exit $bad
