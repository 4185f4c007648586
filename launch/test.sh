#!/usr/bin/env bash
# Installs dependencies, builds, fetches test fixtures and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
./launch/install-deps.sh
./launch/build.sh
if [ -x tests/fetch_fixtures.sh ]; then tests/fetch_fixtures.sh; fi
cd "${BUILD_DIR:-build}"
ctest --output-on-failure -j "${JOBS:-$(nproc)}" "$@"
