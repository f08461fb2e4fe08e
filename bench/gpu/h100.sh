#!/usr/bin/env bash
# bench/gpu/h100.sh — the GPU checks of the CUDA backend in one device call (no Node needed there).
#
# Here, once:   npm run build:ts && node bench/gpu/make-tokens.mjs .device/data      (the token file)
# On the GPU:   run with carry [".device/data/tokens.bin"]:
#               bash bench/gpu/h100.sh [all|build|test|kernels|prep|train]      (default all)
#               (carry .device/data/libreoffice-help-{ko,en}.jsonl too, copied from ../shared/data, for
#               the prep bench on real text; without them it uses synthetic text)
# Writes everything under $RESULTS (default bench/results/<date>-h100/) and prints a short table last:
#   build.log, ctest.log          every kernel against its CPU twin (ctest group cuda) + the CPU suites
#   kernels.txt                   ko_bench --cuda: GEMM BF16/FP8 TFLOP/s, attention, fused kernels' GB/s
#   prep.txt                      ko_bench --prep: rules, MinHash CPU beside the CUDA kernel (GB/s), LSH, LM
#   train.txt, metrics-*.jsonl    200 steps of the Qwen3-0.6B shape at seq 2048, BF16 and FP8, same data
#   loss-compare.txt              FP8 loss within 1% of BF16 at every logged step after step 50
set -uo pipefail
what=${1:-all}
cd "$(dirname "$0")/../.."
RESULTS=${RESULTS:-bench/results/$(date +%F)-h100}
mkdir -p "$RESULTS"
BUILD=${BUILD:-build-gpu}
STEPS=${STEPS:-200}
BATCH=${BATCH:-4}
SEQ=${SEQ:-2048}

# cuBLASLt: the toolkit's, else the one in PyTorch's pip wheels.
if [ -z "${KO_CUBLASLT_PATH:-}" ]; then
  for f in /usr/local/cuda/lib64/libcublasLt.so.13 /usr/local/cuda/lib64/libcublasLt.so.12; do
    [ -e "$f" ] && export KO_CUBLASLT_PATH=$f && break
  done
fi
if [ -z "${KO_CUBLASLT_PATH:-}" ]; then
  f=$(python3 -c "import site,glob;print(next(iter(sorted(sum([glob.glob(p+'/nvidia/**/libcublasLt.so.1[23]',recursive=True) for p in site.getsitepackages()],[]))),''))" 2>/dev/null)
  [ -n "$f" ] && export KO_CUBLASLT_PATH=$f
fi
echo "cuBLASLt: ${KO_CUBLASLT_PATH:-not found (the loader will search the default paths)}" | tee "$RESULTS/env.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv >> "$RESULTS/env.txt" 2>&1
nvcc --version | tail -2 >> "$RESULTS/env.txt"

status() { printf '%-28s %s\n' "$1" "$2" >> "$RESULTS/summary.txt"; }
: > "$RESULTS/summary.txt"

if [ "$what" = all ] || [ "$what" = build ]; then
  t0=$SECONDS
  { cmake -S . -B "$BUILD" -DKO_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_TYPE=Release &&
    cmake --build "$BUILD" -j"$(nproc)"; } > "$RESULTS/build.log" 2>&1
  rc=$?; status build "rc=$rc in $((SECONDS - t0)) s"
  [ $rc -ne 0 ] && { tail -40 "$RESULTS/build.log"; cat "$RESULTS/summary.txt"; exit 1; }
fi
if [ "$what" = all ] || [ "$what" = test ]; then
  (cd "$BUILD" && ctest --output-on-failure) > "$RESULTS/ctest.log" 2>&1; rc=$?
  "$BUILD/ko_tests" cuda > "$RESULTS/ctest-cuda-verbose.log" 2>&1
  status "ctest (all groups)" "rc=$rc; cuda: $(grep -cE '^PASS' "$RESULTS/ctest-cuda-verbose.log") pass, $(grep -cE '^FAIL' "$RESULTS/ctest-cuda-verbose.log") fail, $(grep -cE '^SKIP' "$RESULTS/ctest-cuda-verbose.log") skip"
  grep -E '^FAIL' -A3 "$RESULTS/ctest-cuda-verbose.log" | head -40
fi
if [ "$what" = all ] || [ "$what" = kernels ]; then
  timeout 300 "$BUILD/ko_bench" --cuda > "$RESULTS/kernels.txt" 2>&1
  status "ko_bench --cuda" "rc=$? ($(wc -l < "$RESULTS/kernels.txt") lines)"
fi
if [ "$what" = all ] || [ "$what" = prep ]; then
  KO_BENCH_DATA=.device/data timeout 240 "$BUILD/ko_bench" --prep > "$RESULTS/prep.txt" 2>&1
  status "ko_bench --prep" "rc=$? ($(grep -A3 'MinHash signatures (CUDA)' "$RESULTS/prep.txt" | tail -1))"
fi
if [ "$what" = all ] || [ "$what" = train ]; then
  tokens=.device/data/tokens.bin
  if [ ! -f "$tokens" ]; then
    status train "no $tokens (make it with bench/gpu/make-tokens.mjs and carry it)"
  else
    timeout 420 "$BUILD/ko_bench" --train-cuda "$tokens" --steps "$STEPS" --batch "$BATCH" --seq "$SEQ" \
      --out "$RESULTS" > "$RESULTS/train.txt" 2>&1
    status "train ${STEPS} steps" "rc=$?"
    python3 bench/gpu/compare_losses.py "$RESULTS/metrics-bf16.jsonl" "$RESULTS/metrics-fp8.jsonl" \
      > "$RESULTS/loss-compare.txt" 2>&1
    status "FP8 vs BF16 loss" "$(tail -1 "$RESULTS/loss-compare.txt")"
  fi
fi
echo "==== $RESULTS"
for f in kernels.txt prep.txt train.txt; do [ -f "$RESULTS/$f" ] && { echo "---- $f"; tail -25 "$RESULTS/$f"; }; done
echo "---- summary"; cat "$RESULTS/summary.txt"
