#!/usr/bin/env bash
# Installs what is needed, builds, and runs every test. With SOLO_SANITIZE=1 it builds a
# second tree with ASan + UBSan and runs the suite there too.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
(cd build && ctest --output-on-failure -j2)
if [ "${SOLO_SANITIZE:-0}" = "1" ]; then
  # CUDA code cannot run without a GPU, so the sanitizer tree leaves it out.
  SOLO_BUILD_DIR=build-asan SOLO_BUILD_TYPE=RelWithDebInfo bash scripts/build.sh -DSOLO_SANITIZE=ON -DSOLO_CUDA=OFF
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j2)
fi
