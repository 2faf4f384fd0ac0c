#!/usr/bin/env bash
# Serving performance on one GPU machine, in one call (the device lease is short: every step
# writes its log under $OUT as it goes, and the table of each step is printed at its end):
#   test    CUDA correctness: test_backend_ops (every op, the fused ops and the tensor-core GPTQ
#           matmul at every row count vs the CPU reference) and test_golden_forward (CUDA vs HF)
#   kernels kernel_bench rows: GPTQ GEMV vs tensor-core path per row count on the 4 Falcon-40B
#           shapes, against the copy bandwidth
#   kernels_ab  test_backend_ops and kernel_bench rows under the KERNEL_AB setting (VAR=value)
#   bench   falconlite bench on a FalconLite-shaped GPTQ checkpoint (mkmodel falcon-40b --gptq,
#           written to RAM-backed /dev/shm while the test step runs): batch 1 at input
#           20/3300/5500/10000 (the model card's protocol) and batch 4/16/32 at input 20
#   profile bench --profile (op timeline) at batch 1 and 16, fused step on and off
#   base    the same bench rows with BASE_BUILD (an older build) for an A/B on the same card
#   server  falconlite-router on the checkpoint, 32 streaming clients at input 3300
#           (bench-server), chunked prefill on (default) and off
#   prefix  the prefix cache (tests/gpu/prefix_bench.py through the router): a 10K-token document
#           with 5 questions (TTFT of each), 16 clients on a shared vs distinct 3300-token prefix
# Usage: tests/gpu/run_perf.sh BUILD_DIR [BASE_BUILD_DIR]   (dirs with bin/ and lib/)
# Env: OUT (logs, default /tmp/falconlite-perf), STEPS (default all of the above), MODEL_DIR,
#      NEW_TOKENS (256), SERVER_REQUESTS (32), SERVER_CHUNKS ("1024 0"), PROFILE_FUSED ("1 0"),
#      KERNEL_AB / BENCH_AB (e.g. FALCONLITE_GPTQ_MMA_RS=16: kernels_ab under it; bench repeats its
#      batched rows under it).
set -uo pipefail
cd "$(dirname "$0")/../.."
B=${1:?build dir}/bin
BASE=${2:-}
OUT=${OUT:-/tmp/falconlite-perf}
STEPS=${STEPS:-"test kernels bench profile base server prefix"}
# The checkpoint (22.3 GB) goes to RAM-backed /dev/shm when it has room, else to /tmp.
shm_free=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 {print $4}')
M=${MODEL_DIR:-$([ "${shm_free:-0}" -gt 25000000 ] && echo /dev/shm || echo /tmp)/falconlite-40b-gptq}
NEW=${NEW_TOKENS:-256}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export NCCL_NVLS_ENABLE=0 # never NVLink multicast on shared hosts
has() { [[ " $STEPS " == *" $1 "* ]]; }
t0=$(date +%s)
stamp() { echo "== [$(($(date +%s) - t0)) s] $*"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

if (has bench || has profile || has base || has server) && [ ! -f "$M/config.json" ]; then
    stamp "mkmodel falcon-40b GPTQ -> $M (background)"
    "$B/falconlite" mkmodel --preset falcon-40b --gptq --out "$M" >"$OUT/mkmodel.log" 2>&1 &
    mk_pid=$!
fi

if has test; then
    stamp test_backend_ops
    timeout 240 "$B/test_backend_ops" --gpu >"$OUT/test_backend_ops.log" 2>&1
    echo "test_backend_ops rc=$?"
    grep -E "^\[  (FAILED|  PASSED) \]|^\[  FAILED  \]|Segmentation|error" "$OUT/test_backend_ops.log" | head -20
    stamp test_golden_forward
    FL_TEST_DATA=$PWD/tests timeout 120 "$B/test_golden_forward" --gpu >"$OUT/test_golden.log" 2>&1
    echo "test_golden_forward rc=$?"
    grep -E "^\[  (FAILED|  PASSED) \]|^\[  FAILED  \]" "$OUT/test_golden.log" | head -10
fi

if has kernels && [ -x "$B/kernel_bench" ]; then
    stamp "kernel_bench rows"
    timeout 180 "$B/kernel_bench" rows >"$OUT/kernel_bench_rows.txt" 2>&1
    cat "$OUT/kernel_bench_rows.txt"
fi

if has kernels_ab && [ -n "${KERNEL_AB:-}" ] && [ -x "$B/kernel_bench" ]; then
    stamp "kernels under $KERNEL_AB"
    env "$KERNEL_AB" timeout 240 "$B/test_backend_ops" --gpu >"$OUT/test_backend_ops_ab.log" 2>&1
    echo "test_backend_ops under $KERNEL_AB rc=$?"
    grep -E "^\[  (FAILED|  PASSED) \]|^\[  FAILED  \]" "$OUT/test_backend_ops_ab.log" | head
    env "$KERNEL_AB" timeout 180 "$B/kernel_bench" rows 2>&1 | grep -E "mma|device"
fi

if [ -n "${mk_pid:-}" ]; then
    wait "$mk_pid" || { echo "mkmodel failed"; tail -3 "$OUT/mkmodel.log"; exit 1; }
    stamp "mkmodel done"
fi

# bench BIN TAG ARGS...: one falconlite bench run, JSON kept, table printed
bench() {
    local bin=$1 tag=$2
    shift 2
    timeout 300 "$bin/falconlite" bench --model "$M" --backend cuda --new-tokens "$NEW" \
        --ignore-eos "$@" --json >"$OUT/bench_$tag.json" 2>"$OUT/bench_$tag.err"
    python3 tests/gpu/bench_table.py "$tag" "$OUT/bench_$tag.json"
}
if has bench; then
    stamp "bench (this build)"
    bench "$B" new_b1 --input-lengths 20,3300,5500,10000 --batch 1
    bench "$B" new_batch --input-lengths 20 --batch 4,16,32
    if [ -n "${BENCH_AB:-}" ]; then
        stamp "bench batched rows under $BENCH_AB"
        export "$BENCH_AB"
        bench "$B" new_batch_ab --input-lengths 20 --batch 16,32
        unset "${BENCH_AB%%=*}"
    fi
fi
if has profile; then
    stamp "bench --profile"
    for fused in ${PROFILE_FUSED:-1 0}; do
        FALCONLITE_FUSED=$fused timeout 200 "$B/falconlite" bench --model "$M" --backend cuda \
            --input-lengths 20 --batch 1,16 --new-tokens 16 --ignore-eos --profile \
            >"$OUT/profile_fused$fused.txt" 2>&1
        echo "-- FALCONLITE_FUSED=$fused"
        cat "$OUT/profile_fused$fused.txt"
    done
fi
if has base && [ -n "$BASE" ]; then
    stamp "bench (base build $BASE)"
    bench "$BASE/bin" base_b1 --input-lengths 20,10000 --batch 1
    bench "$BASE/bin" base_batch --input-lengths 20 --batch 4,16,32
fi

# router_start LOG HTTP_PORT ARGS...: starts falconlite-router on the checkpoint (one shard) in the
# background as $router and waits until its HTTP /health answers.
router_start() {
    local log=$1 port=$2
    shift 2
    "$B/falconlite-router" --model-id "$M" --num-shard 1 --backend cuda --port "$port" \
        --max-batch-total-tokens 131072 --max-concurrent-requests 256 "$@" >"$log" 2>&1 &
    router=$!
    for _ in $(seq 1 300); do
        python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/health', timeout=5)" \
            2>/dev/null && break
        kill -0 $router 2>/dev/null || break
        sleep 1
    done
    stamp "router ready"
}

if has server; then
    for chunk in ${SERVER_CHUNKS:-1024 0}; do
        stamp "router, prefill chunk $chunk: 32 streaming clients at input 3300"
        router_start "$OUT/router_chunk$chunk.log" 3300 --grpc-port 50300 \
            --max-input-length 3400 --max-total-tokens 3700 --max-batch-prefill-tokens 4096 \
            --prefill-chunk-tokens "$chunk" --prefix-cache off --shard-uds-path /tmp/fl-perf
        timeout 240 "$B/falconlite" bench-server --addr localhost:50300 --input-lengths 3300 \
            --new-tokens "$NEW" --ignore-eos --concurrency 32 --requests "${SERVER_REQUESTS:-32}" \
            --json >"$OUT/server_chunk$chunk.json" 2>"$OUT/server_chunk$chunk.err"
        python3 - "$OUT/server_chunk$chunk.json" "$chunk" <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    print("no server results:", e); sys.exit(0)
for r in d.get("results", [d]):
    keys = ["concurrency", "requests", "throughput_tokens_per_s", "ttft_ms_p50", "ttft_ms_p99",
            "itl_ms_p50", "itl_ms_p99", "e2e_ms_p50", "wall_s"]
    print(f"chunk {sys.argv[2]}: " + " ".join(f"{k}={r.get(k)}" for k in keys if k in r))
    print(json.dumps(r)[:600])
PY
        kill -TERM $router
        wait $router
    done
fi
if has prefix; then
    stamp "router with the prefix cache: 10K-token document, 5 questions; 16 clients shared prefix"
    router_start "$OUT/router_prefix.log" 3301 --grpc-port 0 --max-input-length 10100 \
        --max-total-tokens 10400 --max-batch-prefill-tokens 10400 --shard-uds-path /tmp/fl-prefix
    timeout 240 python3 tests/gpu/prefix_bench.py --url http://127.0.0.1:3301 --doc-tokens 10000 \
        --shared-tokens 3300 --clients 16 --rounds 2 --new-tokens 64 --json "$OUT/prefix.json"
    kill -TERM $router
    wait $router
fi
stamp done
