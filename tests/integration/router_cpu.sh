# Sourced by the scripts that test a client against a real falconlite-router: starts one on the
# CPU backend (one shard, the tiny golden GQA checkpoint, free ports, small limits) and stops it
# at exit; skips (exit 77) when a binary or the checkpoint is missing.
#   FL     the falconlite CLI       MODEL  the checkpoint     PY  Python for JSON checks
#   ADDR   the router's gRPC host:port                        TMP scratch folder, removed at exit
#   fail MESSAGE   records a failure (count in $fails)        json FILE EXPR   prints EXPR over d
#   stop_router    stops it before the end (idempotent)
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
