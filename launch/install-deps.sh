#!/usr/bin/env bash
# Installs the Debian packages strata builds and tests with. Safe to run again.
set -euo pipefail
packages=(
  build-essential cmake pkg-config git
  # oneDNN's CMake config looks for OpenCL (a Recommends, which --no-install-recommends skips)
  libopenblas-dev libdnnl-dev ocl-icd-opencl-dev libglpk-dev libopenmpi-dev openmpi-bin
  libcxxopts-dev nlohmann-json3-dev liburing-dev libicu-dev
  libgtest-dev libgmock-dev
  # launching: Slurm (the slurm ctest runs real daemons), plots for the scaling study
  slurm-wlm munge gnuplot-nox
)
# The tokenizer tests run node and npm; a machine may carry its own newer ones.
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
