#!/usr/bin/env bash
# `falconlite client` and `falconlite bench-server` against a real falconlite-router (CPU backend,
# one shard, the tiny golden GQA checkpoint): greedy generate / stream / tokenize agree with the
# local engine (`falconlite generate|tokenize`), info and health answer, a validation error exits
# non-zero with TGI's message and the gRPC status, and bench-server prints its JSON summary.
set -uo pipefail
BIN_DIR="${FL_BIN_DIR:?FL_BIN_DIR not set}"
DATA="${FL_TEST_DATA:-$(cd "$(dirname "$0")/.." && pwd)}"
MODEL="$DATA/golden/data/models/falcon40b_gqa_fp32"
FL="$BIN_DIR/falconlite"
PY="${FL_PYTHON:-python3}"
command -v "$PY" >/dev/null || PY=python3
for exe in falconlite falconlite-router falconlite-shard; do
    [ -x "$BIN_DIR/$exe" ] || { echo "skip: $exe not built in $BIN_DIR"; exit 77; }
done
[ -f "$MODEL/config.json" ] || { echo "skip: golden model missing: $MODEL"; exit 77; }
command -v "$PY" >/dev/null || { echo "skip: no python3 to read JSON"; exit 77; }

TMP=$(mktemp -d)
ROUTER_PID=""
stop_router() {
    [ -n "$ROUTER_PID" ] || return 0
    kill -TERM "$ROUTER_PID" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$ROUTER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$ROUTER_PID" 2>/dev/null
    wait "$ROUTER_PID" 2>/dev/null
    ROUTER_PID=""
}
trap 'stop_router; rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# Prints a Python expression over the JSON file $1 (bound to d).
json() { "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print(($2))" "$1"; }
free_port() { "$PY" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }

HTTP_PORT=$(free_port)
GRPC_PORT=$(free_port)
ADDR="127.0.0.1:$GRPC_PORT"
"$BIN_DIR/falconlite-router" --model-id "$MODEL" --backend cpu --num-shard 1 --hostname 127.0.0.1 \
    --port "$HTTP_PORT" --grpc-port "$GRPC_PORT" --shard-uds-path "$TMP/sock/shard" \
    --max-input-length 256 --max-total-tokens 512 --max-batch-prefill-tokens 512 \
    --max-batch-total-tokens 2048 --threads 1 >"$TMP/router.log" 2>&1 &
ROUTER_PID=$!
ready=0
for _ in $(seq 1 120); do
    kill -0 "$ROUTER_PID" 2>/dev/null || break
    if "$FL" client --addr "$ADDR" health --timeout 5 >/dev/null 2>&1; then ready=1; break; fi
    sleep 0.5
done
if [ $ready = 0 ]; then
    echo "FAIL: the router did not become healthy:"; tail -n 40 "$TMP/router.log"
    exit 1
fi

PROMPT="Hello world, this is"
CLIENT=("$FL" client --addr "$ADDR")
"${CLIENT[@]}" health >"$TMP/health" 2>"$TMP/err" || fail "health: $(cat "$TMP/err")"
[ "$(cat "$TMP/health")" = "SERVING" ] || fail "health: $(cat "$TMP/health")"

"${CLIENT[@]}" info --json >"$TMP/info.json" 2>"$TMP/err" || fail "info: $(cat "$TMP/err")"
[ "$(json "$TMP/info.json" "d['model_id'].endswith('falcon40b_gqa_fp32'), d['num_shard'], d['max_input_length']")" = "(True, 1, 256)" ] \
    || fail "info: $(cat "$TMP/info.json")"

"$FL" generate --model "$MODEL" --prompt "$PROMPT" --max-new-tokens 12 --greedy --backend cpu \
    --threads 1 --json >"$TMP/local.json" 2>"$TMP/err" || fail "local generate: $(cat "$TMP/err")"
"${CLIENT[@]}" generate --prompt "$PROMPT" --max-new-tokens 12 --greedy --json >"$TMP/remote.json" \
    2>"$TMP/err" || fail "client generate: $(cat "$TMP/err")"
[ "$(json "$TMP/remote.json" "d['tokens']")" = "$(json "$TMP/local.json" "d['tokens']")" ] \
    || fail "client generate tokens differ: $(cat "$TMP/remote.json") vs $(cat "$TMP/local.json")"
[ "$(json "$TMP/remote.json" "d['text'], d['finish_reason'], len(d['logprobs'])")" = \
  "$(json "$TMP/local.json" "d['text'], d['finish_reason'], len(d['logprobs'])")" ] \
    || fail "client generate text/finish_reason differ"

"${CLIENT[@]}" stream --prompt "$PROMPT" --max-new-tokens 12 >"$TMP/stream.txt" 2>"$TMP/err" \
    || fail "client stream: $(cat "$TMP/err")"
"$PY" -c "import json,sys; t=json.load(open(sys.argv[1]))['text']; s=open(sys.argv[2]).read(); sys.exit(s != t + '\n')" \
    "$TMP/local.json" "$TMP/stream.txt" || fail "client stream text differs: '$(cat "$TMP/stream.txt")'"
"${CLIENT[@]}" stream --prompt "$PROMPT" --max-new-tokens 12 --json >"$TMP/stream.json" 2>"$TMP/err" \
    || fail "client stream --json: $(cat "$TMP/err")"
[ "$(json "$TMP/stream.json" "d['tokens'], d['text']")" = "$(json "$TMP/local.json" "d['tokens'], d['text']")" ] \
    || fail "client stream --json differs: $(cat "$TMP/stream.json")"

"${CLIENT[@]}" tokenize --prompt "$PROMPT" >"$TMP/ids.remote" 2>"$TMP/err" || fail "client tokenize: $(cat "$TMP/err")"
"$FL" tokenize --model "$MODEL" --text "$PROMPT" >"$TMP/ids.local" || fail "local tokenize"
cmp -s "$TMP/ids.remote" "$TMP/ids.local" \
    || fail "tokenize ids differ: $(cat "$TMP/ids.remote") vs $(cat "$TMP/ids.local")"

# A validation error: TGI's message and the gRPC status on one error line, non-zero exit.
"${CLIENT[@]}" generate --prompt "$PROMPT" --max-new-tokens 0 >"$TMP/out" 2>"$TMP/err"
rc=$?
[ $rc -ne 0 ] && [ $rc -le 2 ] || fail "max-new-tokens 0: exit $rc"
grep -q '^falconlite: error: .*INVALID_ARGUMENT.*`max_new_tokens` must be strictly positive' "$TMP/err" \
    || fail "max-new-tokens 0: message $(cat "$TMP/err")"
"${CLIENT[@]}" frobnicate >"$TMP/out" 2>"$TMP/err" && fail "unknown action: exit 0"
grep -q "^falconlite: error: client: unknown action" "$TMP/err" || fail "unknown action: $(cat "$TMP/err")"

"$FL" bench-server --addr "$ADDR" --input-lengths 20 --new-tokens 8 --requests 2 --json \
    >"$TMP/bench.json" 2>"$TMP/err" || fail "bench-server: $(cat "$TMP/err")"
[ "$(json "$TMP/bench.json" "sorted(d['results'][0].keys())")" = \
  "['concurrency', 'e2e_ms_p50', 'eos_stops', 'generated_tokens', 'input_length', 'input_tokens', 'itl_ms_p50', 'itl_ms_p99', 'requests', 'throughput_tokens_per_s', 'tps_median', 'ttft_ms_p50', 'ttft_ms_p99', 'wall_s']" ] \
    || fail "bench-server keys: $(cat "$TMP/bench.json")"
[ "$(json "$TMP/bench.json" "[(r['input_tokens'], r['requests'], r['generated_tokens'] >= 2, r['tps_median'] > 0) for r in d['results']]")" = "[(20, 2, True, True)]" ] \
    || fail "bench-server values: $(cat "$TMP/bench.json")"

stop_router
[ $fails -eq 0 ] && echo "all client checks passed"
exit $((fails > 0))
