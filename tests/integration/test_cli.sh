#!/usr/bin/env bash
# The falconlite CLI end to end: mkmodel (tiny, fp16 and GPTQ act-order) -> inspect ->
# generate --json (shape, token count, determinism per seed) -> tokenize/detokenize round trip,
# and bad inputs -> non-zero exit with one "falconlite: error:" line.
set -uo pipefail
. "$(dirname "$0")/common.sh"

# Runs a command that must fail with exit status != 0 and a "falconlite: error:" line.
expect_error() {
    local what="$1"; shift
    "$@" >"$TMP/out" 2>"$TMP/err"
    local rc=$?
    if [ $rc -eq 0 ]; then fail "$what: exit 0"; return; fi
    if [ $rc -gt 2 ]; then fail "$what: exit $rc (crash?)"; return; fi
    grep -q "^falconlite: error: " "$TMP/err" || fail "$what: no 'falconlite: error:' line: $(cat "$TMP/err")"
}

# Prints the value of a JSON path expression (Python syntax on `d`) from a file.
json() { "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print(($2))" "$1"; }

for variant in fp16 gptq; do
    M="$TMP/tiny-$variant"
    extra=()
    [ $variant = gptq ] && extra=(--gptq --act-order)
    "$BIN" mkmodel --preset tiny "${extra[@]}" --seed 5 --out "$M" 2>"$TMP/err" \
        || { fail "mkmodel $variant: $(cat "$TMP/err")"; continue; }
    for f in config.json model.safetensors tokenizer.json; do
        [ -s "$M/$f" ] || fail "mkmodel $variant: $f missing"
    done

    "$BIN" inspect --model "$M" --json >"$TMP/inspect.json" || fail "inspect $variant"
    [ "$(json "$TMP/inspect.json" "d['config']['d_model'], d['config']['n_layer'], d['config']['n_head_kv']")" = "(256, 4, 2)" ] \
        || fail "inspect $variant: dims"
    if [ $variant = gptq ]; then
        [ "$(json "$TMP/inspect.json" "d['quantization']['gptq'], d['quantization']['act_order']")" = "(True, True)" ] \
            || fail "inspect gptq: act-order not detected"
        [ -s "$M/quantize_config.json" ] || fail "mkmodel gptq: quantize_config.json missing"
    fi
    "$BIN" inspect --model "$M" >"$TMP/inspect.txt" || fail "inspect $variant text"
    grep -q "KV cache" "$TMP/inspect.txt" || fail "inspect $variant: no KV cache line"

    gen=("$BIN" generate --model "$M" --prompt "Hello world, this is" --max-new-tokens 6
         --ignore-eos --backend cpu --threads 2 --json)
    "${gen[@]}" --seed 7 --typical-p 0.2 >"$TMP/a.json" 2>"$TMP/err" || fail "generate $variant: $(cat "$TMP/err")"
    "${gen[@]}" --seed 7 --typical-p 0.2 >"$TMP/b.json" || fail "generate $variant (repeat)"
    "${gen[@]}" --seed 8 --temperature 5 >"$TMP/c.json" || fail "generate $variant (seed 8)"
    "${gen[@]}" --seed 9 --temperature 5 >"$TMP/d.json" || fail "generate $variant (seed 9)"
    [ "$(json "$TMP/a.json" "sorted(d.keys())")" = "['finish_reason', 'input_ids', 'logprobs', 'text', 'tokens']" ] \
        || fail "generate $variant: JSON keys $(cat "$TMP/a.json")"
    [ "$(json "$TMP/a.json" "len(d['tokens']), len(d['logprobs']), d['finish_reason']")" = "(6, 6, 'length')" ] \
        || fail "generate $variant: tokens/logprobs/finish $(cat "$TMP/a.json")"
    [ "$(json "$TMP/a.json" "all(x <= 0 for x in d['logprobs']) and len(d['input_ids']) > 0")" = "True" ] \
        || fail "generate $variant: logprobs > 0 or no input ids"
    cmp -s "$TMP/a.json" "$TMP/b.json" || fail "generate $variant: same seed, different output"
    [ "$(json "$TMP/c.json" "d['tokens']")" != "$(json "$TMP/d.json" "d['tokens']")" ] \
        || fail "generate $variant: seeds 8 and 9 gave the same tokens at temperature 5"
    # plain mode streams the same text as --json reports
    "$BIN" generate --model "$M" --prompt "Hello world, this is" --max-new-tokens 6 --ignore-eos \
        --backend cpu --seed 7 --typical-p 0.2 >"$TMP/plain.txt" || fail "generate $variant plain"
    [ "$(cat "$TMP/plain.txt")" = "$(json "$TMP/a.json" "d['text']")" ] \
        || fail "generate $variant: streamed text differs from --json text"
done

M="$TMP/tiny-fp16"
# --stats reports on stderr (values are not checked: tests never time things)
"$BIN" generate --model "$M" --prompt "Hello" --max-new-tokens 3 --ignore-eos --backend cpu \
    --stats >/dev/null 2>"$TMP/stats" || fail "generate --stats"
for key in "prompt tokens:" "prefill:" "decode:" "weight bytes per decode token:" \
    "machine copy bandwidth" "fraction of copy bandwidth:"; do
    grep -q "$key" "$TMP/stats" || fail "generate --stats: no '$key' line"
done
"$BIN" --help >/dev/null || fail "falconlite --help"
"$BIN" mkmodel --help | grep -q RANDOM || fail "mkmodel --help does not say the weights are random"

text="Hello world, FalconLite serves 11,000-token prompts!"
"$BIN" tokenize --model "$M" --text "$text" --json >"$TMP/ids.json" || fail "tokenize"
ids=$(json "$TMP/ids.json" "','.join(map(str, d['ids']))")
[ -n "$ids" ] || fail "tokenize: no ids"
"$BIN" detokenize --model "$M" --ids "$ids" --json >"$TMP/text.json" || fail "detokenize"
[ "$(json "$TMP/text.json" "d['text']")" = "$text" ] || fail "tokenize/detokenize round trip: $(cat "$TMP/text.json")"
[ "$("$BIN" tokenize --model "$M" --text "$text")" = "$ids" ] || fail "tokenize plain output"

# bad inputs
expect_error "missing model dir" "$BIN" generate --model "$TMP/nope" --prompt hi
expect_error "missing --prompt" "$BIN" generate --model "$M"
expect_error "unknown option" "$BIN" generate --model "$M" --prompt hi --bogus
expect_error "bad number" "$BIN" generate --model "$M" --prompt hi --max-new-tokens abc
expect_error "greedy + sampling" "$BIN" generate --model "$M" --prompt hi --greedy --top-k 3
expect_error "bad temperature" "$BIN" generate --model "$M" --prompt hi --temperature 0
expect_error "bad rope mode" "$BIN" generate --model "$M" --prompt hi --rope-scaling wild
expect_error "unknown command" "$BIN" frobnicate
expect_error "unknown preset" "$BIN" mkmodel --preset huge --out "$TMP/x"
expect_error "bad group size" "$BIN" mkmodel --preset falcon-7b --gptq --group-size 128 --out "$TMP/x"
expect_error "bad id list" "$BIN" detokenize --model "$M" --ids 1,x,3
expect_error "id out of range" "$BIN" detokenize --model "$M" --ids 999999
BAD="$TMP/bad"
cp -r "$M" "$BAD"
echo '{"model_type": "falcon", "hidden_size": ' >"$BAD/config.json"
expect_error "corrupt config.json (generate)" "$BIN" generate --model "$BAD" --prompt hi
expect_error "corrupt config.json (inspect)" "$BIN" inspect --model "$BAD"
cp "$M/config.json" "$BAD/config.json"
head -c 1000 "$M/model.safetensors" >"$BAD/model.safetensors"
expect_error "truncated safetensors" "$BIN" generate --model "$BAD" --prompt hi
echo '{"model": ' >"$BAD/tokenizer.json"
expect_error "corrupt tokenizer.json" "$BIN" tokenize --model "$BAD" --text hi

if [ $fails -ne 0 ]; then echo "$fails failure(s)"; exit 1; fi
echo "test_cli: all checks passed"
