#!/usr/bin/env bash
# GPU checks in two halves, because the GPU machine has no package registry:
#   bash scripts/gpu-check.sh prepare   # here: build the CUDA tests and benchmarks into
#                                       # build-gpu/ and bundle the shared libraries they need
#   bash scripts/gpu-check.sh run       # there (with build-gpu/ carried over): every CUDA
#                                       # test, the golden models on CUDA, and the 1B Llama
#                                       # step benchmark beside PyTorch eager. Logs go to
#                                       # $OUT (or ./gpu-check-out). Under 8 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-run}"
targets=(test_cuda_elementwise test_cuda_layout test_cuda_nn test_cuda_attention test_golden_models bench_llama_step)

if [ "$mode" = prepare ]; then
  bash scripts/setup.sh
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DSOLO_WERROR=ON >/dev/null
  ninja -C build-gpu "${targets[@]}"
  mkdir -p build-gpu/lib build-gpu/bin
  for t in "${targets[@]}"; do
    f=$(find build-gpu -name "$t" -type f -perm -u+x | head -1)
    strip -o "build-gpu/bin/$t" "$f"
  done
  # Shared libraries outside glibc and the CUDA driver/toolkit (those are on the GPU machine).
  ldd build-gpu/bin/* | awk '/=> \// {print $3}' | sort -u |
    grep -vE '/(libc|libm|libdl|libpthread|librt|ld-linux|libcuda|libcublas|libcudart)[.-]' |
    while read -r lib; do cp -L "$lib" build-gpu/lib/; done
  du -sh build-gpu/bin build-gpu/lib
  exit 0
fi

out="${OUT:-$PWD/gpu-check-out}"
mkdir -p "$out"
cublas=$(dirname "$(find /usr/local /opt /usr/lib -name 'libcublasLt.so.13*' 2>/dev/null | head -1)")
export LD_LIBRARY_PATH="$PWD/build-gpu/lib:$cublas:${LD_LIBRARY_PATH:-}"
export SOLO_SOURCE_DIR="$PWD"
nvidia-smi -L | tee "$out/device.txt"
status=0
for t in test_cuda_elementwise test_cuda_layout test_cuda_nn test_cuda_attention test_golden_models; do
  echo "== $t"
  timeout 180 "build-gpu/bin/$t" --gtest_brief=1 >"$out/$t.log" 2>&1 || status=1
  grep -E "PASSED|FAILED|SKIPPED|Failure|error" "$out/$t.log" | head -40
done
# A ~1B-parameter Llama (hidden 2048, 16 layers, 16 heads, FFN 5632, vocab 32000), seq 2048,
# bf16 mixed precision, AdamW; MFU against the dense bf16 peak of the card.
peak=989
model=(--hidden 2048 --ffn 5632 --layers 16 --heads 16 --kv-heads 16 --seq 2048 --batch "${BATCH:-4}" --steps 5)
echo "== bench (solo)"
timeout 240 build-gpu/bin/bench_llama_step --device cuda --bf16 --peak-tflops "$peak" "${model[@]}" 2>&1 | tee "$out/bench_solo.txt" || status=1
echo "== bench (pytorch eager)"
timeout 240 python3 bench/pytorch_llama_step.py --device cuda --bf16 "${model[@]}" 2>&1 | tail -3 | tee "$out/bench_torch.txt" || status=1
exit $status
