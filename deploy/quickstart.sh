#!/usr/bin/env bash
# A newcomer's first run: install dependencies, build, make the default model and generate.
# The default model is `mkmodel --preset tiny`: a small Falcon-shaped checkpoint with RANDOM
# weights (its text is gibberish); it proves the whole path works on any machine, no GPU needed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install_deps.sh
bash deploy/build.sh
model=models/tiny
[ -f "$model/config.json" ] || build/bin/falconlite mkmodel --preset tiny --seed 1 --out "$model"
build/bin/falconlite generate --model "$model" \
    --prompt "${PROMPT:-<|prompter|>What is the capital of France?<|endoftext|><|assistant|>}" \
    --max-new-tokens "${MAX_NEW_TOKENS:-32}" --seed 1 --stats
