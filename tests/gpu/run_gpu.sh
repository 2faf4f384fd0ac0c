#!/usr/bin/env bash
# Builds (or reuses a carried build), tests and benchmarks the CUDA backend on a GPU machine:
#   1. tests/unit/test_backend_ops (every op, CUDA vs the CPU reference) and
#      tests/unit/test_golden_forward (its CUDA cases: whole forward vs HF)
#   2. tests/gpu/kernel_bench (GPTQ GEMV per Falcon-40B shape, LM head, attention; vs copy BW)
#   3. falconlite mkmodel --preset falcon-40b --gptq into /tmp + falconlite bench (model card
#      protocol: input 20/3300/5500/10000, 256 new tokens, EOS ignored)
# Usage: tests/gpu/run_gpu.sh [BUILD_DIR]      (default build-gpu)
# Env: OUT (log folder, default /tmp/falconlite-gpu), STEPS ("test kernels e2e"),
#      BENCH_LENGTHS, BENCH_NEW_TOKENS, BENCH_BATCH, MODEL_DIR (reuse a checkpoint),
#      T_TEST, T_KERNELS, T_MKMODEL, T_BENCH (per-step time limits in seconds),
#      GEMV_SWEEP (e.g. "FALCONLITE_GEMV_BLOCKS_PER_SM=8 FALCONLITE_PDL=0": also time the M=1
#      GEMV under each setting), BENCH_AB (e.g. FALCONLITE_PDL=0: bench again under it).
# A machine without cJSON / Oniguruma / cmocka packages can run a build made elsewhere: build
# with -DCMAKE_CUDA_ARCHITECTURES=90a, copy libcjson/libonig/libcmocka .so files into
# BUILD_DIR/lib (the binaries' rpath is $ORIGIN/../lib), and carry BUILD_DIR/{bin,lib}.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build-gpu}
OUT=${OUT:-/tmp/falconlite-gpu}
STEPS=${STEPS:-"test kernels e2e"}
MODEL_DIR=${MODEL_DIR:-/tmp/falconlite-40b-gptq}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export NCCL_NVLS_ENABLE=0
summary=()

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit \
    --format=csv

if [ ! -x "$BUILD/bin/falconlite" ]; then
    echo "== building in $BUILD"
    cmake -S . -B "$BUILD" -G Ninja -DFALCONLITE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a \
        -DCMAKE_BUILD_TYPE=Release >"$OUT/cmake.log" 2>&1 &&
        ninja -C "$BUILD" falconlite test_backend_ops test_golden_forward >"$OUT/build.log" 2>&1 ||
        { echo "build failed: see $OUT/build.log"; tail -20 "$OUT/build.log"; exit 1; }
fi
if [ ! -x "$BUILD/bin/kernel_bench" ]; then
    gcc -std=gnu11 -O2 -I. tests/gpu/kernel_bench.c -o "$BUILD/bin/kernel_bench" \
        "$BUILD/libfl_kernels.a" "$BUILD/libfl_kernels_cuda.a" "$BUILD/libfl_common.a" \
        -L/usr/local/cuda/lib64 -Wl,-rpath,'$ORIGIN/../lib' -lcublas -lcudart -lcjson -lonig \
        -lstdc++ -lm -lpthread || exit 1
fi

# The random checkpoint is written (CPU + disk) while the GPU steps run.
if [[ " $STEPS " == *" e2e "* && ! -f "$MODEL_DIR/config.json" ]]; then
    echo "== mkmodel falcon-40b GPTQ -> $MODEL_DIR (background)"
    mk_t0=$(date +%s)
    timeout "${T_MKMODEL:-600}" "$BUILD/bin/falconlite" mkmodel --preset falcon-40b --gptq \
        --out "$MODEL_DIR" >/tmp/falconlite-mkmodel.log 2>&1 &
    mk_pid=$!
fi

if [[ " $STEPS " == *" test "* ]]; then
    echo "== test_backend_ops"
    timeout "${T_TEST:-300}" "$BUILD/bin/test_backend_ops" >"$OUT/test_backend_ops.log" 2>&1
    rc=$?
    grep -E "^\[  (FAILED|SKIPPED|  PASSED) \]|ERROR|nmse|error" "$OUT/test_backend_ops.log" | head -30
    summary+=("test_backend_ops: rc=$rc ($(grep -c '^\[       OK \]' "$OUT/test_backend_ops.log") ok)")
    if [ -x "$BUILD/bin/test_golden_forward" ]; then # HF parity of the whole forward on CUDA
        echo "== test_golden_forward"
        FL_TEST_DATA=$PWD/tests timeout "${T_TEST:-300}" "$BUILD/bin/test_golden_forward" \
            >"$OUT/test_golden.log" 2>&1
        rc=$?
        grep -E "cuda|FAILED|PASSED" "$OUT/test_golden.log" | head -30
        summary+=("test_golden_forward: rc=$rc")
    fi
fi

if [[ " $STEPS " == *" kernels "* ]]; then
    echo "== kernel_bench"
    timeout "${T_KERNELS:-240}" "$BUILD/bin/kernel_bench" 2>&1 | tee "$OUT/kernel_bench.txt"
    summary+=("kernel_bench: rc=${PIPESTATUS[0]}")
    for setting in ${GEMV_SWEEP:-}; do # GEMV variants to compare, as VAR=value
        echo "== kernel_bench gemv with $setting"
        env "$setting" timeout 120 "$BUILD/bin/kernel_bench" gemv 2>&1 | tee -a "$OUT/gemv_sweep.txt"
    done
fi

if [[ " $STEPS " == *" e2e "* ]]; then
    if [ -n "${mk_pid:-}" ]; then
        wait "$mk_pid" || { echo "mkmodel failed:"; tail -3 /tmp/falconlite-mkmodel.log; exit 1; }
        echo "mkmodel: $(( $(date +%s) - mk_t0 )) s (ran beside the tests)"
    fi
    echo "== falconlite bench"
    args=(--model "$MODEL_DIR" --backend cuda --input-lengths "${BENCH_LENGTHS:-20,3300,5500,10000}"
          --new-tokens "${BENCH_NEW_TOKENS:-256}" --batch "${BENCH_BATCH:-1}" --ignore-eos)
    echo "falconlite bench ${args[*]}"
    timeout "${T_BENCH:-600}" "$BUILD/bin/falconlite" bench "${args[@]}" --json >"$OUT/bench.json" 2>"$OUT/bench.err"
    rc=$?
    tail -3 "$OUT/bench.err"
    summary+=("bench: rc=$rc")
    if [ -n "${BENCH_AB:-}" ]; then
        echo "== falconlite bench with $BENCH_AB"
        env "$BENCH_AB" timeout "${T_BENCH:-600}" "$BUILD/bin/falconlite" bench "${args[@]}" \
            2>/dev/null | tail -6
    fi
    python3 tests/gpu/bench_table.py bench "$OUT/bench.json"
fi
echo "== summary"
printf '%s\n' "${summary[@]}"
