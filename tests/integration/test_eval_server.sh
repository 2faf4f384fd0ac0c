#!/usr/bin/env bash
# `falconlite eval --server` against a real falconlite-router (CPU backend, one shard, the tiny
# golden Falcon GQA checkpoint) over the TGI HTTP API: passkey, lines, topics and quality each run
# with --limit 2 and print JSON with the expected fields (random weights: accuracy is whatever it
# is, within [0, 1]); the server path measures the same prompt lengths and reaches the same
# scores as the local engine (--model) on the same model; the table layout is printed; a server
# that is not there is one clear error line.
set -uo pipefail
. "$(dirname "$0")/common.sh"
ROUTER="$(dirname "$BIN")/falconlite-router"
MODEL="$DATA/models/falcon40b_gqa_fp32"
[ -x "$ROUTER" ] || { echo "skip: falconlite-router not built"; exit 77; }
[ -x "$(dirname "$BIN")/falconlite-shard" ] || { echo "skip: falconlite-shard not built"; exit 77; }
[ -f "$MODEL/config.json" ] || { echo "skip: golden model missing: $MODEL"; exit 77; }
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
check() { # json-file python-expression-on-d what
    "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); assert ($2), d" "$1" 2>"$TMP/pyerr" \
        || fail "$3: $(tail -1 "$TMP/pyerr")"
}
free_port() { "$PY" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }

# Small fixtures in the released formats (the tiny model's router takes 512 tokens at most).
"$PY" - "$TMP" <<'PYEOF'
import json, os, sys
d = sys.argv[1]
os.makedirs(f"{d}/topics")
for n in (2, 3):
    with open(f"{d}/topics/{n}_topics.jsonl", "w") as f:
        for i in range(3):
            names = [f"topic {chr(97 + i)}{k}" for k in range(n)]
            conv = " ".join(f"USER: I would like to discuss the topic of {t}. ASSISTANT: Sure." for t in names)
            f.write(json.dumps({"test_id": i, "prompt": conv + " What is the first topic we discussed?",
                                "topics": names, "prompt_length": -1}) + "\n")
with open(f"{d}/lines.jsonl", "w") as f:
    for i in range(3):
        lines = "".join(f"line a-{j}: REGISTER_CONTENT is <{100 + j}>\n" for j in range(6))
        f.write(json.dumps({"random_idx": [f"a-{i}", i], "expected_number": 100 + i, "num_lines": 6,
                            "prompt": lines + f"Tell me the <REGISTER_CONTENT> in line a-{i}?"}) + "\n")
# One record in QuALITY's raw example format (HTML article lines, questionN fields) and one in
# the released format (questions list with `difficult`).
raw = {"article_id": 1, "title": "T", "article": ["<html><body>\n", "<p>\n", "  Ann has a red boat.\n", "</p>\n", "</body></html>\n"]}
for q in (1, 2):
    raw[f"question{q}"] = "What colour is the boat?" if q == 1 else "Who owns it?"
    for k in range(1, 5):
        raw[f"question{q}option{k}"] = ["red", "blue", "Ann", "Bob"][(k + q) % 4] + " "
    raw[f"question{q}_gold_label"] = 1
    raw[f"question{q}_annotator_speed_answers"] = [1, 2, 3, 1, 1] if q == 1 else [2, 2, 3, 4, 1]
released = {"article": "Bob rides a green bike.", "questions": [
    {"question": "What does Bob ride?", "options": ["a car", "a bike", "a bus", "a boat"], "gold_label": 2, "difficult": 1}]}
with open(f"{d}/quality.jsonl", "w") as f:
    f.write(json.dumps(raw) + "\n" + json.dumps(released) + "\n")
PYEOF

HTTP_PORT=$(free_port)
GRPC_PORT=$(free_port)
URL="http://127.0.0.1:$HTTP_PORT"
"$ROUTER" --model-id "$MODEL" --backend cpu --num-shard 1 --hostname 127.0.0.1 \
    --port "$HTTP_PORT" --grpc-port "$GRPC_PORT" --shard-uds-path "$TMP/sock/shard" \
    --max-input-length 448 --max-total-tokens 512 --max-batch-prefill-tokens 512 \
    --max-batch-total-tokens 2048 --threads 1 >"$TMP/router.log" 2>&1 &
ROUTER_PID=$!
healthy() { "$PY" -c "import sys, urllib.request; sys.exit(urllib.request.urlopen(sys.argv[1] + '/health', timeout=5).status != 200)" "$URL" 2>/dev/null; }
ready=0
for _ in $(seq 1 120); do
    kill -0 "$ROUTER_PID" 2>/dev/null || break
    if healthy; then ready=1; break; fi
    sleep 0.5
done
if [ $ready = 0 ]; then
    echo "FAIL: the router did not become healthy:"; tail -n 40 "$TMP/router.log"
    exit 1
fi

SRV=(--server "$URL")
LOC=(--model "$MODEL" --backend cpu --threads 1)
COMMON_FIELDS="d['target']['kind'] in ('server', 'model') and d['limit'] == 2 and 'template' in d and 'seed' in d and 0 <= d['accuracy'] <= 1 and all({'label', 'items', 'tokens', 'accuracy', 'correct'} <= set(b) and {'min', 'max', 'mean'} == set(b['tokens']) for b in d['buckets'])"
run_both() { # task args...: the same run over --server and --model, JSON in $TMP/<task>.{srv,loc}.json
    local task="$1"; shift
    "$BIN" eval "$task" "${SRV[@]}" "$@" --limit 2 --json >"$TMP/$task.srv.json" 2>"$TMP/$task.srv.err" \
        || fail "eval $task --server: $(tail -3 "$TMP/$task.srv.err")"
    "$BIN" eval "$task" "${LOC[@]}" "$@" --limit 2 --json >"$TMP/$task.loc.json" 2>"$TMP/$task.loc.err" \
        || fail "eval $task --model: $(tail -3 "$TMP/$task.loc.err")"
    check "$TMP/$task.srv.json" "$COMMON_FIELDS and d['suite'] == '$task' and d['target'] == {'kind': 'server', 'url': '$URL', 'token_counts': '/tokenize'}" "$task --server fields"
    # The same prompts, token counts and scores on both paths.
    "$PY" - "$TMP/$task.srv.json" "$TMP/$task.loc.json" <<'PYEOF' || fail "$task: --server and --model differ: $(cat "$TMP/$task.srv.json") vs $(cat "$TMP/$task.loc.json")"
import json, sys
s, l = (json.load(open(p)) for p in sys.argv[1:])
key = lambda d: [(b["label"], b["items"], b["tokens"], b["correct"]) for b in d["buckets"]]
sys.exit(key(s) != key(l))
PYEOF
    # Stderr is not a terminal here: one plain progress line per item.
    [ "$(grep -c "^eval $task: [0-9]*/[0-9]*: " "$TMP/$task.srv.err")" -eq "$(json_items "$TMP/$task.srv.json")" ] \
        || fail "$task: progress lines: $(cat "$TMP/$task.srv.err")"
}
json_items() { "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['items'] if d['suite'] != 'quality' else d['buckets'][0]['items'])" "$1"; }

run_both passkey --lengths 100,160 --seed 7
check "$TMP/passkey.srv.json" "[b['target_tokens'] for b in d['buckets']] == [100, 160] and d['seed'] == 7 and d['max_new_tokens'] == 10 and all(b['items'] == 2 and abs(b['tokens']['mean'] - b['target_tokens']) <= 8 for b in d['buckets'])" "passkey buckets"

run_both lines --data "$TMP/lines.jsonl"
check "$TMP/lines.srv.json" "[b['label'] for b in d['buckets']] == ['lines'] and d['items'] == 2 and d['template'] == 'chatml' and d['max_new_tokens'] == 100" "lines buckets"

run_both topics --data "$TMP/topics" --max-new-tokens 8
check "$TMP/topics.srv.json" "[b['label'] for b in d['buckets']] == ['2_topics', '3_topics'] and d['items'] == 4 and 'graded these answers by hand' in d['note']" "topics buckets"

run_both quality --data "$TMP/quality.jsonl"
check "$TMP/quality.srv.json" "[b['label'] for b in d['buckets']] == ['all', 'hard'] and d['buckets'][0]['items'] == 2 and d['buckets'][1]['items'] == 1 and set(d['buckets'][0]['accuracy']) == {'QuALITY (option sum logprob)', 'QuALITY (option mean logprob)'} and 'max_new_tokens' not in d" "quality buckets"
# All three questions with a seeded order.
"$BIN" eval quality "${SRV[@]}" --data "$TMP/quality.jsonl" --limit 9 --seed 3 --json >"$TMP/q3.json" 2>/dev/null || fail "quality --limit 9"
check "$TMP/q3.json" "d['buckets'][0]['items'] == 3 and d['buckets'][1]['items'] == 2 and d['seed'] == 3" "quality all questions"

# The table: the model card's layout, measured lengths in the header, the topics note.
"$BIN" eval topics "${SRV[@]}" --data "$TMP/topics" --limit 2 --max-new-tokens 8 >"$TMP/table.md" 2>/dev/null || fail "topics table"
grep -q '^| Task | [0-9,]*\(-[0-9,]*\)\? tokens (2_topics) | [0-9,]*\(-[0-9,]*\)\? tokens (3_topics) |$' "$TMP/table.md" || fail "table header: $(cat "$TMP/table.md")"
grep -q '^| Topic Retrieval | [0-9.]*% ([0-2]/2) | [0-9.]*% ([0-2]/2) |$' "$TMP/table.md" || fail "table row: $(cat "$TMP/table.md")"
grep -q 'graded these answers by hand' "$TMP/table.md" || fail "table: no grading note"
"$BIN" eval passkey "${SRV[@]}" --lengths 100,160 --limit 2 --buckets 50-130,131-200 >"$TMP/pk_table.md" 2>/dev/null || fail "passkey --buckets"
grep -q '^| Task | [0-9,-]* tokens (50-130) | [0-9,-]* tokens (131-200) |$' "$TMP/pk_table.md" || fail "bucket table: $(cat "$TMP/pk_table.md")"
echo "--- sample table (eval passkey --server) ---"; cat "$TMP/pk_table.md"; cat "$TMP/table.md"

# A prompt longer than the server allows: the server's own validation message.
"$BIN" eval passkey "${SRV[@]}" --lengths 600 --limit 1 >/dev/null 2>"$TMP/err" && fail "over-long prompt: exit 0"
grep -q '^falconlite: error: .*HTTP 422 (validation)' "$TMP/err" || fail "over-long prompt: $(cat "$TMP/err")"

stop_router
# No server: one clear error line, no hang.
"$BIN" eval passkey "${SRV[@]}" --limit 1 --timeout 5 >/dev/null 2>"$TMP/err" && fail "no server: exit 0"
grep -q "^falconlite: error: eval --server: $URL: cannot connect" "$TMP/err" || fail "no server: $(cat "$TMP/err")"
"$BIN" eval ppl "${SRV[@]}" --data x >/dev/null 2>"$TMP/err"; grep -q "needs the local engine" "$TMP/err" || fail "ppl --server: $(cat "$TMP/err")"

[ $fails -eq 0 ] && echo "eval --server: all checks passed"
exit $((fails > 0))
