#!/usr/bin/env bash
# Tensor parallelism on a multi-GPU machine, in one call (about 9 minutes on 8x H200; every step
# writes its log under $OUT as it goes and the summary table comes last):
#   comm    test_comm --gpu: NCCL on 2 GPUs, stream path (default) and host-synchronised path
#   golden  greedy TP=2 vs TP=1 through falconlite-router on the golden fixtures (real logit
#           margins, HF references; 2 KV heads, so TP<=2), --nccl-stream on and off; and
#           test_shard_rpc.py on CUDA (TP=2 over NCCL against HF) when grpcio is importable
#   server  a FalconLite-shaped GPTQ checkpoint (mkmodel --preset falcon-40b --gptq, random
#           weights, LAYERS layers, written once to RAM-backed /dev/shm while comm and golden run)
#           served with --num-shard N for N in TP_LIST: greedy TP=N vs TP=1 (3 prompts, 32
#           tokens; random weights have near-flat logits, so fp16 rounding may flip argmaxes),
#           bench-server batch 1 at LENGTHS (the model card's protocol; TTFT at 10000 is the 10K
#           prefill) and a batch-BATCH aggregate at input 20; TP>1 runs with --nccl-stream on, then
#           off (A/B, at AB_LENGTHS and the batch)
# Usage: tests/gpu/run_server_tp.sh DIR   (a build or deploy/bundle.sh folder with bin/ and lib/)
# Env: OUT (/tmp/falconlite-tp), STEPS ("comm golden server"), TP_LIST ("1 2 4"; values above
#      the GPU count are dropped), LAYERS (60), PRESET (falcon-40b), MODEL_DIR, LENGTHS
#      (20,3300,5500,10000), AB_LENGTHS (20,10000), NEW_TOKENS (256), REQUESTS (1 per cell),
#      BATCH (32), MKMODEL_ARGS (more mkmodel flags), BACKEND (cuda; cpu checks the script
#      itself: BACKEND=cpu PRESET=tiny-tp MKMODEL_ARGS="--group-size 32"
#      LAYERS=2 LENGTHS=20 AB_LENGTHS=20 NEW_TOKENS=16 BATCH=4 THREADS=1), THREADS (cpu: per shard).
set -uo pipefail
cd "$(dirname "$0")/../.."
B=$(cd "${1:?build or bundle dir}" && pwd)/bin
OUT=${OUT:-/tmp/falconlite-tp}
STEPS=${STEPS:-"comm golden server"}
BACKEND=${BACKEND:-cuda}
PRESET=${PRESET:-falcon-40b}
LAYERS=${LAYERS:-60}
LENGTHS=${LENGTHS:-20,3300,5500,10000}
AB_LENGTHS=${AB_LENGTHS:-20,10000}
NEW=${NEW_TOKENS:-256}
REQ=${REQUESTS:-1}
BATCH=${BATCH:-32}
TP_LIST=${TP_LIST:-"1 2 4"}
mkdir -p "$OUT"
rm -f "$OUT"/server_*.json "$OUT"/greedy_*
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export NCCL_NVLS_ENABLE=0 # never NVLink multicast on shared hosts
has() { [[ " $STEPS " == *" $1 "* ]]; }
t0=$(date +%s)
stamp() { echo "== [$(($(date +%s) - t0)) s] $*"; }
report() { python3 tests/gpu/tp_report.py "$@"; }

if [ "$BACKEND" = cuda ]; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    n_gpu=$(nvidia-smi -L | grep -c '^GPU')
    keep=""
    for tp in $TP_LIST; do
        if [ "$tp" -le "$n_gpu" ]; then keep="$keep $tp"; else echo "TP=$tp dropped: $n_gpu GPUs"; fi
    done
    TP_LIST=$keep
fi
# The checkpoint goes to RAM-backed /dev/shm when it has room (22.3 GB at 60 layers), else /tmp.
shm_free=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 {print $4}')
M=${MODEL_DIR:-$([ "${shm_free:-0}" -gt 25000000 ] && echo /dev/shm || echo /tmp)/falconlite-$PRESET-${LAYERS}l}
if has server && [ ! -f "$M/config.json" ]; then
    stamp "mkmodel $PRESET GPTQ, $LAYERS layers -> $M (background)"
    "$B/falconlite" mkmodel --preset "$PRESET" --gptq --layers "$LAYERS" ${MKMODEL_ARGS:-} --out "$M" \
        >"$OUT/mkmodel.log" 2>&1 &
    mk_pid=$!
fi

# router_start TAG MODEL TP MODE MAX_INPUT: starts falconlite-router in the background (pid in
# $router, gRPC on $gport) and waits until it answers.
router_start() {
    local tag=$1 model=$2 tp=$3 mode=$4 max_in=$5
    local max_total=$((max_in + NEW + 64))
    local total=$([ "$BACKEND" = cuda ] && echo 65536 || echo $((BATCH * max_total)))
    port=$((3100 + tp)) gport=$((50100 + tp))
    "$B/falconlite-router" --model-id "$model" --num-shard "$tp" --backend "$BACKEND" \
        ${THREADS:+--threads $THREADS} --port $port --grpc-port $gport --nccl-stream "$mode" \
        --max-input-length "$max_in" --max-total-tokens "$max_total" \
        --max-batch-prefill-tokens "$max_total" --max-batch-total-tokens "$total" \
        --max-concurrent-requests 256 --prefix-cache off \
        --shard-uds-path "/tmp/fl-tp-$tag" >"$OUT/router_$tag.log" 2>&1 &
    router=$!
    for _ in $(seq 1 900); do
        "$B/falconlite" client --addr localhost:$gport health >/dev/null 2>&1 && return 0
        kill -0 $router 2>/dev/null || break
        sleep 0.2
    done
    echo "router $tag did not come up:"
    tail -5 "$OUT/router_$tag.log"
    return 1
}
router_stop() {
    kill -TERM "$router" 2>/dev/null
    wait "$router"
}
# TP>1 runs: --nccl-stream on (what auto means), then off; TP=1 has no collectives (auto).
modes_of() { [ "$1" = 1 ] && echo auto || echo "on off"; }

if has comm && [ "$BACKEND" = cuda ]; then
    stamp "test_comm --gpu (NCCL, 2 GPUs)"
    if [ -x "$B/test_comm" ]; then
        timeout 120 "$B/test_comm" --gpu >"$OUT/test_comm_nccl.log" 2>&1
        echo "test_comm --gpu rc=$?"
        grep -E "^\[  (FAILED|  PASSED|SKIPPED) \]|rank|hung" "$OUT/test_comm_nccl.log" | head -10
    else
        echo "skip: $B/test_comm not built"
    fi
fi

if has golden; then
    for case in falcon40b_gqa_fp32 falcon40b_gptq_actorder; do
        dir=tests/golden/data/models/$case
        for tp in $TP_LIST; do
            [ "$tp" -gt 2 ] && continue # 2 KV heads
            for mode in $(modes_of "$tp"); do
                tag=golden_${case}_tp${tp}_$mode
                stamp "golden $case TP=$tp --nccl-stream $mode"
                router_start "$tag" "$dir" "$tp" "$mode" 256 || continue
                report greedy "$B/falconlite" localhost:$gport "$OUT/$tag.jsonl" "$dir/reference.json" 32
                router_stop
                [ "$tp" = 1 ] && continue
                report compare "$OUT/golden_${case}_tp1_auto.jsonl" "$OUT/$tag.jsonl" \
                    "$dir/reference.json" | tee "$OUT/$tag.cmp" | tail -1 |
                    sed "s/^/$case TP=$tp $mode vs TP=1: /" >"$OUT/greedy_$tag.txt"
                cat "$OUT/$tag.cmp"
            done
        done
    done
    if [ "$BACKEND" = cuda ] && python3 -c "import grpc, grpc_tools" 2>/dev/null; then
        for mode in on off; do
            stamp "test_shard_rpc.py on CUDA, --nccl-stream $mode"
            FL_SHARD_BACKEND=cuda FL_NCCL_STREAM=$mode FL_BIN_DIR=$B FL_SOURCE_DIR=$PWD \
                timeout 240 python3 tests/integration/test_shard_rpc.py >"$OUT/shard_rpc_$mode.log" 2>&1
            echo "test_shard_rpc (cuda, $mode) rc=$?"
            grep -E "^ok|^skip|Error" "$OUT/shard_rpc_$mode.log" | head -5
        done
    else
        echo "skip: test_shard_rpc.py (no grpcio here, or not cuda); the router greedy runs above cover TP=2"
    fi
fi

if has server; then
    if [ -n "${mk_pid:-}" ]; then
        wait "$mk_pid" || { echo "mkmodel failed"; tail -3 "$OUT/mkmodel.log"; exit 1; }
        stamp "mkmodel done"
    fi
    max_len=$(echo "$LENGTHS,$AB_LENGTHS" | tr ',' '\n' | sort -n | tail -1)
    echo "The capital of France is" >"$OUT/prompts.txt"
    echo "Once upon a time, in a land far away," >>"$OUT/prompts.txt"
    echo "1 2 3 4 5 6 7 8" >>"$OUT/prompts.txt"
    for tp in $TP_LIST; do
        for mode in $(modes_of "$tp"); do
            tag=tp${tp}_$mode
            stamp "router TP=$tp --nccl-stream $mode"
            router_start "$tag" "$M" "$tp" "$mode" $((max_len + 100)) || continue
            stamp "router TP=$tp up"
            report greedy "$B/falconlite" localhost:$gport "$OUT/server_greedy_$tag.jsonl" \
                "$OUT/prompts.txt" 32
            lengths=$([ "$mode" = off ] && echo "$AB_LENGTHS" || echo "$LENGTHS")
            timeout 300 "$B/falconlite" bench-server --addr localhost:$gport --input-lengths "$lengths" \
                --new-tokens "$NEW" --ignore-eos --concurrency 1 --requests "$REQ" \
                --json "$OUT/server_${tag}_b1.json" >"$OUT/server_${tag}_b1.txt" 2>"$OUT/server_${tag}_b1.err"
            cat "$OUT/server_${tag}_b1.txt"
            timeout 240 "$B/falconlite" bench-server --addr localhost:$gport --input-lengths 20 \
                --new-tokens "$NEW" --ignore-eos --concurrency "$BATCH" --requests "$BATCH" \
                --json "$OUT/server_${tag}_batch.json" >"$OUT/server_${tag}_batch.txt" \
                2>"$OUT/server_${tag}_batch.err"
            cat "$OUT/server_${tag}_batch.txt"
            router_stop
            [ "$tp" = 1 ] && continue
            report compare "$OUT/server_greedy_tp1_auto.jsonl" "$OUT/server_greedy_$tag.jsonl" |
                tail -1 | sed "s/^/random-weight $PRESET TP=$tp $mode vs TP=1: /" >"$OUT/greedy_server_$tag.txt"
        done
    done
fi
stamp done
report summary "$OUT" "$TP_LIST"
