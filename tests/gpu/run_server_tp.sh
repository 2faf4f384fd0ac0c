#!/usr/bin/env bash
# Tensor parallelism through the real server on a GPU machine: a FalconLite-shaped GPTQ checkpoint
# (falcon-40b per-layer shapes, random weights; LAYERS layers so it is written quickly) served by
# falconlite-router with 1 and with 2 shards (NCCL): greedy outputs of TP=2 must equal TP=1, and
# the model card's protocol (bench-server) runs through both, next to the local engine's bench
# (the difference per token is the router + gRPC overhead).
# Usage: tests/gpu/run_server_tp.sh BUNDLE_DIR   (an unpacked deploy/bundle.sh tarball: bin/, lib/)
# Env: OUT (logs), LAYERS (12), LENGTHS (20,3300,5500,10000), NEW_TOKENS (256), REQUESTS (2),
#      TP_LIST ("1 2"), BACKEND (cuda; cpu checks TP equality without benchmarks: f32 activations
#      make TP=2 equal TP=1 to ~1e-4, while fp16 partial sums on GPUs can flip near-tied argmaxes
#      of a random-weight model), THREADS (cpu: per shard).
set -uo pipefail
B=${1:?bundle dir}/bin
OUT=${OUT:-/tmp/falconlite-tp}
LAYERS=${LAYERS:-12}
LENGTHS=${LENGTHS:-20,3300,5500,10000}
NEW=${NEW_TOKENS:-256}
REQ=${REQUESTS:-2}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export NCCL_NVLS_ENABLE=0 # never NVLink multicast on shared hosts
M=/tmp/falconlite-40b-${LAYERS}l
BACKEND=${BACKEND:-cuda}
[ "$BACKEND" = cuda ] && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
[ -f "$M/config.json" ] || "$B/falconlite" mkmodel --preset falcon-40b --gptq --layers "$LAYERS" \
    --out "$M" >"$OUT/mkmodel.log" 2>&1 || { tail "$OUT/mkmodel.log"; exit 1; }

[ "$BACKEND" = cuda ] && echo "== local engine (TP=1, no server)" &&
timeout 300 "$B/falconlite" bench --model "$M" --backend cuda --input-lengths "$LENGTHS" \
    --new-tokens "$NEW" --ignore-eos --json >"$OUT/bench_local.json" 2>"$OUT/bench_local.log"
[ "$BACKEND" = cuda ] && tail -1 "$OUT/bench_local.json"

# Warmup prefills max-batch-prefill-tokens: keep it small on the CPU backend.
if [ "$BACKEND" = cuda ]; then
    limits="--max-input-length 10100 --max-total-tokens 10400 --max-batch-prefill-tokens 10400 --max-batch-total-tokens 65536"
else
    limits="--max-input-length 64 --max-total-tokens 128 --max-batch-prefill-tokens 128 --max-batch-total-tokens 256"
fi
prompts=("The capital of France is" "Once upon a time, in a land far away," "1 2 3 4 5 6 7 8")
for tp in ${TP_LIST:-1 2}; do
    echo "== router TP=$tp"
    port=$((3100 + tp)) gport=$((50100 + tp))
    "$B/falconlite-router" --model-id "$M" --num-shard "$tp" --backend "$BACKEND" \
        ${THREADS:+--threads $THREADS} --port $port --grpc-port $gport $limits \
        --shard-uds-path /tmp/fl-tp$tp >"$OUT/router_tp$tp.log" 2>&1 &
    router=$!
    for _ in $(seq 1 600); do
        "$B/falconlite" client --addr localhost:$gport health >/dev/null 2>&1 && break
        kill -0 $router 2>/dev/null || break
        sleep 0.5
    done
    : >"$OUT/greedy_tp$tp.jsonl"
    for p in "${prompts[@]}"; do
        "$B/falconlite" client --addr localhost:$gport generate --prompt "$p" --greedy \
            --max-new-tokens 32 --json >>"$OUT/greedy_tp$tp.jsonl" 2>>"$OUT/client_tp$tp.log"
    done
    [ "$BACKEND" = cuda ] && timeout 400 "$B/falconlite" bench-server --addr localhost:$gport --input-lengths "$LENGTHS" \
        --new-tokens "$NEW" --ignore-eos --concurrency 1 --requests "$REQ" --json \
        >"$OUT/bench_server_tp$tp.json" 2>"$OUT/bench_server_tp$tp.log"
    [ "$BACKEND" = cuda ] && tail -3 "$OUT/bench_server_tp$tp.json"
    kill -TERM $router; wait $router
    tail -3 "$OUT/router_tp$tp.log"
done
echo "== TP=1 vs TP=2 greedy (token ids)"
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
def load(tp):
    try:
        return [json.loads(l) for l in open(f"{out}/greedy_tp{tp}.jsonl") if l.strip()]
    except OSError:
        return []
a, b = load(1), load(2)
for i, (x, y) in enumerate(zip(a, b)):
    same = x["tokens"] == y["tokens"]
    dl = max(abs(p - q) for p, q in zip(x["logprobs"], y["logprobs"])) if same else float("nan")
    print(f"prompt {i}: tokens {'EQUAL' if same else 'DIFFER'} ({len(x['tokens'])}), max |dlogprob| {dl:.3g}")
print(f"{len(a)} / {len(b)} results")
for tp, r in ((1, a), (2, b)):
    for x in r:
        print(f"tp{tp}", json.dumps({"tokens": x["tokens"], "logprobs": [round(v, 4) for v in x["logprobs"]]}))
PY
