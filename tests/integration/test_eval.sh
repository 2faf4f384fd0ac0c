#!/usr/bin/env bash
# falconlite eval --model end to end on the tiny random Llama (imported from golden/data/gguf/
# tiny_llama.gguf): each suite prints one JSON summary line with the right fields and sane values
# (random weights: accuracies are whatever they are, but within [0, 1]), rotary flags show up in
# the summary, and bad input exits 1 with one "falconlite: error:" line.
set -uo pipefail
. "$(dirname "$0")/common.sh"
check() { # json-file python-expression-on-d what
    "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); assert ($2), d" "$1" 2>"$TMP/pyerr" \
        || fail "$3: $(tail -1 "$TMP/pyerr")"
}
M="$TMP/tiny"
"$BIN" import-gguf "$DATA/gguf/tiny_llama.gguf" --out "$M" >/dev/null || { echo "FAIL: import"; exit 1; }
run=(--model "$M" --backend cpu --threads 2)

# Perplexity of a text with random (and very confident) weights: finite, above 1.
for i in $(seq 1 40); do echo "The Falcon family of language models, line $i: 3.14159 and more text."; done >"$TMP/text.txt"
"$BIN" eval ppl "${run[@]}" --file "$TMP/text.txt" --ctx 256 --json >"$TMP/ppl.json" || fail "eval ppl"
check "$TMP/ppl.json" "d['suite'] == 'ppl' and d['windows'] >= 2 and d['tokens_scored'] > 300 and 1 < d['ppl'] < float('inf') and d['ctx'] == 256" "ppl summary"

# Pass-key: prompts of about the requested length, rope flags recorded.
"$BIN" eval passkey "${run[@]}" --lengths 200,400 --samples 2 --rope-scaling falconlite \
    --rope-alpha 0.25 --rope-threshold 256 --json >"$TMP/pk.json" || fail "eval passkey"
check "$TMP/pk.json" "d['suite'] == 'passkey' and d['target']['rope'] == {'mode': 'falconlite', 'theta': 10000, 'threshold': 256, 'alpha': 0.25} and [c['target_tokens'] for c in d['buckets']] == [200, 400] and all(abs(c['tokens']['mean'] - c['target_tokens']) <= 8 and c['items'] == 2 and 0 <= c['accuracy']['Pass key Retrieval'] <= 1 for c in d['buckets'])" "passkey summary"
# Same seed, same result; the threshold defaults to max_position_embeddings (2048).
"$BIN" eval passkey "${run[@]}" --lengths 200 --samples 2 --rope-scaling dynamic --rope-factor 2 --json >"$TMP/pk2.json" || fail "eval passkey dynamic"
check "$TMP/pk2.json" "d['target']['rope']['threshold'] == 2048 and d['target']['rope']['factor'] == 2" "dynamic defaults"
"$BIN" eval passkey "${run[@]}" --lengths 200 --samples 2 --rope-scaling falconlite --rope-alpha 0.25 \
    --rope-threshold 256 --json >"$TMP/pk3.json" || fail "eval passkey again"
check "$TMP/pk3.json" "d['buckets'][0]['correct'] == $("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['buckets'][0]['correct'])" "$TMP/pk.json") and d['buckets'][0]['tokens'] == $("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['buckets'][0]['tokens'])" "$TMP/pk.json")" "same seed, same result"

# Lines: records in LongEval's format; the number scored is the last one in the answer.
"$PY" - "$TMP/lines.jsonl" <<'PYEOF'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(3):
        lines = "".join(f"line alpha-{j}: REGISTER_CONTENT is <{1000 + j}>\n" for j in range(20))
        f.write(json.dumps({"random_idx": [f"alpha-{i}", i], "expected_number": 1000 + i,
                            "num_lines": 20, "prompt": lines + f"Tell me the <REGISTER_CONTENT> in line alpha-{i}?"}) + "\n")
PYEOF
"$BIN" eval lines "${run[@]}" --file "$TMP/lines.jsonl" --samples 2 --max-new-tokens 8 --json >"$TMP/lines.json" || fail "eval lines"
check "$TMP/lines.json" "d['suite'] == 'lines' and d['limit'] == 2 and d['items'] == 2 and d['template'] == 'chatml' and 0 <= d['accuracy'] <= 1" "lines summary"
# The default output: the model card's table.
"$BIN" eval lines "${run[@]}" --data "$TMP/lines.jsonl" --limit 1 --max-new-tokens 4 >"$TMP/lines.md" 2>/dev/null || fail "eval lines table"
grep -q '^| Line Retrieval | [0-9.]*% ([01]/1) |$' "$TMP/lines.md" || fail "lines table: $(cat "$TMP/lines.md")"

expect_error() { # what, args...
    local what="$1"; shift
    "$BIN" eval "$@" >/dev/null 2>"$TMP/err"
    local rc=$?
    [ $rc -eq 1 ] || [ $rc -eq 2 ] || fail "$what: exit $rc"
    grep -q "^falconlite: error: " "$TMP/err" || fail "$what: no error line: $(cat "$TMP/err")"
}
echo '{"prompt": "no expected number"}' >"$TMP/bad.jsonl"
expect_error "lines record without expected_number" lines "${run[@]}" --file "$TMP/bad.jsonl"
expect_error "missing text file" ppl "${run[@]}" --file "$TMP/none.txt"
expect_error "unknown task" frobnicate "${run[@]}"
expect_error "topics without --data" topics "${run[@]}"
expect_error "both --model and --server" passkey "${run[@]}" --server http://127.0.0.1:1
expect_error "bad buckets" passkey "${run[@]}" --buckets 300-200
expect_error "bad lengths" passkey "${run[@]}" --lengths 10
expect_error "falconlite without alpha > 0" passkey "${run[@]}" --rope-scaling falconlite --rope-alpha 0
expect_error "bad template" passkey "${run[@]}" --template jinja

[ $fails -eq 0 ] && echo "eval: all checks passed"
exit $((fails > 0))
