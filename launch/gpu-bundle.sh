#!/usr/bin/env bash
# Packs strata's GPU binaries and every non-system shared library they load into one folder, for
# a GPU machine with the NVIDIA driver but none of the Debian packages (OpenBLAS, GLPK, Open MPI,
# ICU, liburing, ...). glibc and the driver's libcuda come from that machine.
#
# Usage: launch/gpu-bundle.sh [--no-cuda-libs] [BUILD_DIR [BUNDLE_DIR]]
#   BUILD_DIR   a build configured with the CUDA toolkit present (default: build)
#   BUNDLE_DIR  where the bundle goes (default: BUILD_DIR/gpu-bundle, git-ignored); replaced
#   --no-cuda-libs  leave out the CUDA toolkit's own libraries (cudart, cuBLAS ~600 MB, NCCL)
#                   when the GPU machine has the same CUDA major version installed
#   --kernels-only  only strata_cuda_tests and strata_cuda_bench (a few MB with --no-cuda-libs)
# Then on the GPU machine: BUNDLE_DIR/gpu-check.sh (tests + kernel bench), BUNDLE_DIR/gpu-figures.sh
# (engine figures, needs the CLI), or BUNDLE_DIR/run
# strata ... for the CLI.
set -euo pipefail
cd "$(dirname "$0")/.."

cuda_libs=1
cli=1
while [ $# -gt 0 ]; do
  case "$1" in
    --no-cuda-libs) cuda_libs=0 ;;
    --kernels-only) cli=0 ;;
    -*) echo "gpu-bundle: unknown flag $1" >&2; exit 2 ;;
    *) break ;;
  esac
  shift
done
build=${1:-${BUILD_DIR:-build}}
bundle=${2:-$build/gpu-bundle}

bins=("$build/strata_cuda_bench" "$build/tests/strata_cuda_tests")
if [ "$cli" = 1 ]; then bins=("$build/strata" "${bins[@]}"); fi
for b in "${bins[@]}"; do
  if [ ! -x "$b" ]; then
    echo "gpu-bundle: $b is missing; build with the CUDA toolkit present (launch/build.sh)" >&2
    exit 1
  fi
done

# Parts of glibc (they must match the machine's libc) and the driver (it must match the kernel).
is_system() {
  case "$1" in
    linux-vdso.so* | ld-linux*.so* | libc.so* | libm.so* | libpthread.so* | libdl.so* | \
      librt.so* | libutil.so* | libresolv.so* | libcuda.so* | libnvidia-*.so*) return 0 ;;
  esac
  return 1
}
is_cuda_toolkit() {
  case "$1" in
    libcudart.so* | libcublas.so* | libcublasLt.so* | libnccl.so*) return 0 ;;
  esac
  return 1
}

rm -rf "$bundle"
mkdir -p "$bundle/bin" "$bundle/lib"
cp "${bins[@]}" "$bundle/bin/"

declare -A copied=()
skipped=()
for b in "${bins[@]}"; do
  # ldd lists the whole closure; "not found" here means the build machine itself is broken.
  while read -r name arrow path _; do
    [ "$arrow" = "=>" ] || continue
    if [ "$path" = "not" ]; then
      echo "gpu-bundle: $b needs $name, which is not found on this machine" >&2
      exit 1
    fi
    if is_system "$name"; then continue; fi
    if [ "$cuda_libs" = 0 ] && is_cuda_toolkit "$name"; then
      skipped+=("$name")
      continue
    fi
    if [ -z "${copied[$name]:-}" ]; then
      cp -L "$path" "$bundle/lib/$name"
      copied[$name]=$path
    fi
  done < <(ldd "$b")
done

cp launch/gpu-check.sh "$bundle/gpu-check.sh"
cp launch/gpu-figures.sh "$bundle/gpu-figures.sh"
# The reference models (under 1 MB) the stage-runner test compares against.
rm -rf "$bundle/data" && cp -r tests/data "$bundle/data"
cat > "$bundle/run" <<'WRAP'
#!/usr/bin/env bash
# Runs a bundled binary with the bundle's libraries first: run strata | strata_cuda_tests |
# strata_cuda_bench [args...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
name=${1:?usage: run strata|strata_cuda_tests|strata_cuda_bench [args...]}
shift
exec "$here/bin/$name" "$@"
WRAP
chmod +x "$bundle/run" "$bundle/gpu-check.sh" "$bundle/gpu-figures.sh"

# What the target machine must provide: glibc at least this version, the driver, and (with
# --no-cuda-libs) the CUDA libraries listed.
glibc_needed=$(objdump -T "${bins[@]}" "$bundle"/lib/* 2>/dev/null | grep -o 'GLIBC_[0-9.]*' |
  sort -t. -k1,1 -k2,2n -k3,3n -u | tail -1)
{
  echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty tree)')"
  echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
  echo "needs ${glibc_needed:-glibc} or newer, the NVIDIA driver (libcuda.so.1) for CUDA $(
    nvcc --version 2>/dev/null | grep -o 'release [0-9.]*' | cut -d' ' -f2)"
  if [ "${#skipped[@]}" -gt 0 ]; then
    echo "expects on the machine: $(printf '%s\n' "${skipped[@]}" | sort -u | tr '\n' ' ')"
  fi
  echo "libraries:"
  for name in $(printf '%s\n' "${!copied[@]}" | sort); do echo "  $name <- ${copied[$name]}"; done
} > "$bundle/MANIFEST"

echo "gpu-bundle: $bundle ($(du -sh "$bundle" | cut -f1)), ${#copied[@]} libraries"
