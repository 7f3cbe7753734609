#!/usr/bin/env bash
# GPU checks in two halves, because the GPU machine has no package registry:
#   bash scripts/gpu-check.sh prepare   # here: build the CUDA tests and benchmarks into
#                                       # build-gpu/ and bundle the shared libraries they need
#   bash scripts/gpu-check.sh run       # there (with build-gpu/bundle.tar.xz carried): every CUDA
#                                       # test (the attention ones with both kernel
#                                       # families), the NCCL communicator on one rank, the
#                                       # golden models on CUDA, attention alone timed with
#                                       # both kernels, a small Llama with and without CUDA
#                                       # graphs, and the 1B Llama step benchmark beside
#                                       # PyTorch eager with each attention kernel. Logs go to
#                                       # $OUT (or ./gpu-check-out). Under 8 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-run}"
targets=(test_cuda_elementwise test_cuda_layout test_cuda_nn test_cuda_attention test_golden_models mpi_test_nccl bench_llama_step bench_attention)

if [ "$mode" = prepare ]; then
  bash scripts/setup.sh
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DSOLO_WERROR=ON >/dev/null
  # mpi_test_nccl exists only when CMake found NCCL.
  if ! ninja -C build-gpu -t targets all | grep -q '^mpi_test_nccl:'; then
    kept=()
    for t in "${targets[@]}"; do [ "$t" = mpi_test_nccl ] || kept+=("$t"); done
    targets=("${kept[@]}")
  fi
  ninja -C build-gpu "${targets[@]}"
  mkdir -p build-gpu/lib build-gpu/bin
  for t in "${targets[@]}"; do
    f=$(find build-gpu -name "$t" -type f -perm -u+x | head -1)
    strip -o "build-gpu/bin/$t" "$f"
  done
  # Shared libraries outside glibc and the CUDA driver/toolkit (those are on the GPU machine).
  # libnccl (200+ MB) stays too: the run half uses the GPU machine's (PyTorch's wheel).
  ldd build-gpu/bin/* | awk '/=> \// {print $3}' | sort -u |
    grep -vE '/(libc|libm|libdl|libpthread|librt|ld-linux|libstdc\+\+|libgcc_s|libcuda|libcublas[A-Za-z]*|libcudart|libnccl)[.-]' |
    while read -r lib; do cp -L "$lib" build-gpu/lib/; done
  # One compressed bundle travels (the GPU machine's carry limit is 64 MiB).
  tar -C build-gpu -cf - bin lib | xz -T2 -6 >build-gpu/bundle.tar.xz
  du -sh build-gpu/bundle.tar.xz
  exit 0
fi

out="${OUT:-$PWD/gpu-check-out}"
mkdir -p "$out"
if [ ! -d build-gpu/bin ]; then  # python's lzma needs no xz binary on the GPU machine
  python3 -c "import tarfile; tarfile.open('build-gpu/bundle.tar.xz').extractall('build-gpu')"
fi
cublas=$(dirname "$(find /usr/local /opt /usr/lib -name 'libcublasLt.so.13*' 2>/dev/null | head -1)")
# Every binary links NCCL (the data-parallel path): PyTorch's nvidia-nccl wheel, else any
# libnccl.so.2 on the machine.
nccl=$(python3 -c 'import os, nvidia.nccl as m; print(os.path.join(list(m.__path__)[0], "lib"))' 2>/dev/null || true)
if [ ! -f "$nccl/libnccl.so.2" ]; then
  nccl=$(dirname "$( (find /usr /opt -name 'libnccl.so.2*' 2>/dev/null || true) | head -1)")
fi
if [ -f "$nccl/libnccl.so.2" ]; then
  echo "libnccl: $nccl" | tee "$out/nccl.txt"
else
  echo "libnccl.so.2 not found (pip install nvidia-nccl-cu13): the binaries will not start" | tee "$out/nccl.txt"
fi
# Only our binaries see the bundled libraries (python keeps its own).
solo_env=(env "LD_LIBRARY_PATH=$PWD/build-gpu/lib:$cublas:$nccl:${LD_LIBRARY_PATH:-}" "SOLO_SOURCE_DIR=$PWD")
nvidia-smi -L | tee "$out/device.txt"
status=0
# Steps run most valuable first; each has a timeout, and the optional ones at the end start
# only while the whole run is under its budget (a device command may run 10 minutes).
budget=${BUDGET_S:-480}
have_time() { [ "$SECONDS" -lt "$1" ]; }
run_test() {  # name, log, then the command
  local name=$1 log=$2
  shift 2
  echo "== $name"
  local rc=0
  "$@" >"$out/$log" 2>&1 || rc=$?
  grep -E "PASSED|FAILED|SKIPPED|Failure|error|NCCL WARN" "$out/$log" | head -40
  return $rc
}
for t in test_cuda_elementwise test_cuda_layout test_cuda_nn test_cuda_attention test_golden_models; do
  run_test "$t" "$t.log" timeout 90 "${solo_env[@]}" "build-gpu/bin/$t" --gtest_brief=1 || status=1
done
# NCCL as one process (no mpirun there): one rank, bootstrapped over the local communicator.
if [ -x build-gpu/bin/mpi_test_nccl ]; then
  run_test mpi_test_nccl mpi_test_nccl.log \
    timeout 60 "${solo_env[@]}" NCCL_DEBUG=WARN build-gpu/bin/mpi_test_nccl --gtest_brief=1 || status=1
fi
# The attention tests again with the tensor-core kernels as the default (the bf16 tests also
# pick each family themselves); the later mma runs only if these pass.
mma=1
run_test "test_cuda_attention (SOLO_CUDA_ATTENTION=mma)" test_cuda_attention_mma.log \
  timeout 90 "${solo_env[@]}" SOLO_CUDA_ATTENTION=mma build-gpu/bin/test_cuda_attention \
  --gtest_brief=1 || { status=1; mma=0; }
echo "== attention alone (B 4, T 2048, H 16, D 128, bf16, causal)"
timeout 60 "${solo_env[@]}" build-gpu/bin/bench_attention 2>&1 | tee "$out/bench_attention.txt" || status=1
# A ~1B-parameter Llama (hidden 2048, 16 layers, 16 heads, FFN 5632, vocab 32000), seq 2048,
# bf16 mixed precision, AdamW; MFU against the dense bf16 peak of the card.
peak=989
shape=(--hidden 2048 --ffn 5632 --layers 16 --heads 16 --kv-heads 16 --seq 2048 --batch "${BATCH:-4}")
model=("${shape[@]}" --steps "${STEPS:-3}")
attention=simt
[ "$mma" = 1 ] && attention=mma
echo "== bench (pytorch eager)"
timeout 150 python3 bench/pytorch_llama_step.py --device cuda --bf16 "${model[@]}" 2>&1 | tail -3 | tee "$out/bench_torch.txt" || status=1
for a in $attention $([ "$attention" = mma ] && echo simt); do
  if [ "$a" = simt ] && [ "$attention" = mma ] && ! have_time $((budget - 150)); then continue; fi
  echo "== bench (solo, SOLO_CUDA_ATTENTION=$a)"
  timeout 150 "${solo_env[@]}" SOLO_CUDA_ATTENTION=$a build-gpu/bin/bench_llama_step --device cuda --bf16 \
    --peak-tflops "$peak" "${model[@]}" 2>&1 | tee "$out/bench_solo_$a.txt" || status=1
done
if have_time $((budget - 90)); then
  echo "== time per op kind (SOLO_PROFILE=1, $attention attention, 1 step)"
  timeout 90 "${solo_env[@]}" SOLO_PROFILE=1 SOLO_CUDA_ATTENTION=$attention build-gpu/bin/bench_llama_step \
    --device cuda --bf16 "${shape[@]}" --steps 1 >"$out/profile_1b.txt" 2>&1 || status=1
  grep -A14 "time per op" "$out/profile_1b.txt" || true
fi
# A small Llama (hidden 512, 8 layers, seq 256, batch 8, bf16): short kernels, where replaying
# the recorded step as a CUDA graph should pay; then the same without graphs, then PyTorch.
small=(--hidden 512 --ffn 1376 --layers 8 --heads 8 --kv-heads 8 --seq 256 --batch 8 --steps 20)
if have_time $((budget - 120)); then
  echo "== small Llama (CUDA graphs on, off; PyTorch eager)"
  small_env=("${solo_env[@]}" SOLO_CUDA_ATTENTION=$attention)
  timeout 40 "${small_env[@]}" build-gpu/bin/bench_llama_step --device cuda --bf16 "${small[@]}" 2>&1 | tee "$out/bench_small_graphs.txt" || status=1
  timeout 40 "${small_env[@]}" SOLO_CUDA_GRAPHS=0 build-gpu/bin/bench_llama_step --device cuda --bf16 "${small[@]}" 2>&1 | tee "$out/bench_small_eager.txt" || status=1
  timeout 40 python3 bench/pytorch_llama_step.py --device cuda --bf16 "${small[@]}" 2>&1 | tail -1 | tee "$out/bench_small_torch.txt" || status=1
fi
# Races and out-of-bounds accesses in the tensor-core attention (needs a runtime where
# compute-sanitizer works; on others it says so).
if command -v compute-sanitizer >/dev/null && have_time $((budget - 120)); then
  echo "== compute-sanitizer (racecheck, memcheck) on the tensor-core attention"
  for tool in racecheck memcheck; do
    rc=0
    timeout 60 "${solo_env[@]}" compute-sanitizer --tool "$tool" --error-exitcode 9 \
      build-gpu/bin/test_cuda_attention --gtest_filter='*MmaFullyMasked*:*MmaForward*' \
      >"$out/sanitizer_$tool.log" 2>&1 || rc=$?
    echo "$tool: exit $rc; $(grep -E 'ERROR SUMMARY' "$out/sanitizer_$tool.log" | tail -1)"
  done
fi
echo "== done in ${SECONDS}s"
exit $status
