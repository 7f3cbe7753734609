#!/usr/bin/env bash
# Configures and builds Solo into build/ (or $SOLO_BUILD_DIR) with warnings as errors.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${SOLO_BUILD_DIR:-build}"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="${SOLO_BUILD_TYPE:-Release}" \
  -DSOLO_WERROR=ON "$@" >/dev/null
ninja -C "$build_dir"
