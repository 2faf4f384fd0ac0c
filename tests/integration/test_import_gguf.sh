#!/usr/bin/env bash
# falconlite import-gguf end to end on a committed tiny GGUF: the random Llama golden model
# (golden/data/models/llama_gqa_fp32) converted as llama.cpp does it, Q/K rows permuted
# (golden/make_llama_fixtures.py). The imported directory must tokenize like the original
# tokenizer.json and generate the same greedy tokens (fp16 vs fp32 weights: logprobs close),
# which only holds when the importer undoes the Q/K permutation. Then --gptq, and corrupt files
# -> exit 1 with one "falconlite: error:" line naming the file.
set -uo pipefail
. "$(dirname "$0")/common.sh"
GGUF="$DATA/gguf/tiny_llama.gguf"
ORIG="$DATA/models/llama_gqa_fp32"

"$BIN" import-gguf "$GGUF" --out "$TMP/fp16" >"$TMP/out" 2>"$TMP/err" || fail "import: $(cat "$TMP/err")"
for f in config.json generation_config.json model.safetensors tokenizer.json tokenizer_config.json; do
    [ -s "$TMP/fp16/$f" ] || fail "import: $f missing"
done
[ -e "$TMP/fp16/quantize_config.json" ] && fail "fp16 import wrote quantize_config.json"
grep -q '"chat_template"' "$TMP/fp16/tokenizer_config.json" || fail "chat template not saved"

for text in "Hello, world! 12345 The Falcon" "  spaces   and ünïcode — 2024-11-27" ">>TITLE<< <|assistant|>x"; do
    a=$("$BIN" tokenize --model "$ORIG" --text "$text" 2>&1)
    b=$("$BIN" tokenize --model "$TMP/fp16" --text "$text" 2>&1)
    [ "$a" = "$b" ] || fail "tokenize '$text': original $a, imported $b"
done

compare() { # original.json imported.json logprob-tolerance
    "$PY" - "$@" <<'PYEOF'
import json, sys
a, b, tol = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), float(sys.argv[3])
assert a["input_ids"] == b["input_ids"], "input ids differ"
assert a["tokens"] == b["tokens"], f"tokens differ: {a['tokens']} vs {b['tokens']}"
d = max(abs(x - y) for x, y in zip(a["logprobs"], b["logprobs"]))
assert d <= tol, f"logprobs differ by {d} > {tol}"
PYEOF
}
for prompt in "Hello, world! 12345 The Falcon" "The quick brown fox"; do
    "$BIN" generate --model "$ORIG" --prompt "$prompt" --max-new-tokens 12 --greedy --ignore-eos \
        --json --backend cpu --threads 2 >"$TMP/a.json" 2>"$TMP/err" || fail "generate original: $(cat "$TMP/err")"
    "$BIN" generate --model "$TMP/fp16" --prompt "$prompt" --max-new-tokens 12 --greedy --ignore-eos \
        --json --backend cpu --threads 2 >"$TMP/b.json" 2>"$TMP/err" || fail "generate imported: $(cat "$TMP/err")"
    compare "$TMP/a.json" "$TMP/b.json" 0.05 || fail "imported fp16 differs from the original ('$prompt')"
done

# GPTQ: d_model 64 / d_ff 128 -> group size 64 chosen automatically; it must load and run.
"$BIN" import-gguf "$GGUF" --out "$TMP/gptq" --gptq >"$TMP/out" 2>"$TMP/err" || fail "import --gptq: $(cat "$TMP/err")"
grep -q "GPTQ group size 64" "$TMP/out" || fail "import --gptq: group size not reported: $(cat "$TMP/out")"
grep -q '"group_size":[[:space:]]*64' "$TMP/gptq/quantize_config.json" || fail "quantize_config.json group size"
"$BIN" generate --model "$TMP/gptq" --prompt "Hello" --max-new-tokens 4 --greedy --json --backend cpu \
    --threads 2 >/dev/null 2>"$TMP/err" || fail "generate gptq: $(cat "$TMP/err")"
"$BIN" import-gguf "$GGUF" --out "$TMP/g48" --gptq --group-size 48 >/dev/null 2>"$TMP/err"
[ $? -eq 1 ] && grep -q "group size 48" "$TMP/err" || fail "--group-size 48 not rejected: $(cat "$TMP/err")"

expect_error() { # what, file: import must exit 1 with one error line naming the file
    local what="$1" file="$2"
    "$BIN" import-gguf "$file" --out "$TMP/bad" >/dev/null 2>"$TMP/err"
    local rc=$?
    [ $rc -eq 1 ] || fail "$what: exit $rc (want 1): $(cat "$TMP/err")"
    grep -q "^falconlite: error: .*$(basename "$file")" "$TMP/err" || fail "$what: error does not name the file: $(cat "$TMP/err")"
    [ -e "$TMP/bad/model.safetensors" ] && fail "$what: left a model.safetensors behind"
}
size=$(stat -c %s "$GGUF")
for cut in 3 20 1000 50000 $((size / 2)) $((size - 10)); do
    head -c "$cut" "$GGUF" >"$TMP/cut$cut.gguf"
    expect_error "truncated at $cut" "$TMP/cut$cut.gguf"
done
printf 'not a gguf file' >"$TMP/text.gguf"
expect_error "not GGUF" "$TMP/text.gguf"
expect_error "missing file" "$TMP/missing.gguf"
"$BIN" import-gguf "$GGUF" >/dev/null 2>"$TMP/err"
[ $? -ne 0 ] && grep -q -- "--out" "$TMP/err" || fail "missing --out accepted"

[ $fails -eq 0 ] && echo "import-gguf: all checks passed"
exit $((fails > 0))
