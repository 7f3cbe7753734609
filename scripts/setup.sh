#!/usr/bin/env bash
# Installs the Debian packages Solo builds and runs with. Idempotent and non-interactive:
# does nothing when everything is present.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libopenblas-openmp-dev     # CPU GEMM (the OpenMP build)
  libopenmpi-dev openmpi-bin # process launch and CPU collectives
  libsentencepiece-dev sentencepiece
  libpcre2-dev               # tokenizer.json's regex pre-tokenizers
  nlohmann-json3-dev libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  fortunes                   # a small plain-English corpus for the example
  clang-format
  clang libclang-rt-dev libomp-dev  # scripts/fuzz.sh: libFuzzer, and OpenMP under clang
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[setup] installing: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
