#!/usr/bin/env bash
# `falconlite bench-server`'s load mode against a real falconlite-router (CPU backend, one shard,
# the tiny golden GQA checkpoint): a two-rate sweep of 6 requests each completes every request,
# writes the JSON and CSV rows with vLLM benchmark_serving's metric set and goodput, a --prompts
# file drives the requests, and --plot draws a PNG when gnuplot is installed (skipped otherwise).
set -uo pipefail
source "$(dirname "$0")/router_cpu.sh"

PLOT=()
HAVE_GNUPLOT=0
if command -v gnuplot >/dev/null; then HAVE_GNUPLOT=1; PLOT=(--plot "$TMP/sweep.png"); fi

# A sweep at two rates, 6 requests each: inputs 16..24 tokens, outputs 6..10 tokens.
"$FL" bench-server --addr "$ADDR" --sweep 4,inf --num-prompts 6 --input-len 20 \
    --input-len-range 0.2 --output-len 8 --output-len-range 0.25 --seed 7 --max-concurrency 4 \
    --goodput "ttft:600000 e2e:600000" --json "$TMP/sweep.json" --csv "$TMP/sweep.csv" "${PLOT[@]}" \
    >"$TMP/table" 2>"$TMP/err" || fail "sweep: $(cat "$TMP/err")"
cat "$TMP/table"
KEYS="['request_rate', 'burstiness', 'max_concurrency', 'num_prompts', 'completed', 'failed', 'duration_s', 'total_input_tokens', 'total_output_tokens', 'request_throughput', 'output_throughput', 'total_token_throughput', 'request_goodput', 'ttft_ms_mean', 'ttft_ms_p50', 'ttft_ms_p90', 'ttft_ms_p99', 'tpot_ms_mean', 'tpot_ms_p50', 'tpot_ms_p90', 'tpot_ms_p99', 'itl_ms_mean', 'itl_ms_p50', 'itl_ms_p90', 'itl_ms_p99', 'e2e_ms_mean', 'e2e_ms_p50', 'e2e_ms_p90', 'e2e_ms_p99']"
[ "$(json "$TMP/sweep.json" "[list(r.keys()) for r in d['results']] == [$KEYS] * 2")" = True ] \
    || fail "sweep JSON keys: $(cat "$TMP/sweep.json")"
[ "$(json "$TMP/sweep.json" "[(r['request_rate'], r['num_prompts'], r['completed'], r['failed']) for r in d['results']]")" = \
  "[(4, 6, 6, 0), ('inf', 6, 6, 0)]" ] || fail "sweep counts: $(cat "$TMP/sweep.json")"
# Every output is forced to its drawn length; all rates see the same requests (same seed).
[ "$(json "$TMP/sweep.json" "[16 <= r['total_input_tokens'] / 6 <= 24 and 6 <= r['total_output_tokens'] / 6 <= 10 for r in d['results']]")" = "[True, True]" ] \
    || fail "sweep token totals: $(cat "$TMP/sweep.json")"
[ "$(json "$TMP/sweep.json" "len({(r['total_input_tokens'], r['total_output_tokens']) for r in d['results']})")" = 1 ] \
    || fail "sweep rates saw different requests: $(cat "$TMP/sweep.json")"
[ "$(json "$TMP/sweep.json" "all(r['request_goodput'] == r['request_throughput'] > 0 and 0 < r['ttft_ms_p50'] <= r['ttft_ms_p90'] <= r['ttft_ms_p99'] and 0 < r['itl_ms_p50'] <= r['itl_ms_p99'] and r['tpot_ms_mean'] > 0 and r['e2e_ms_p50'] >= r['ttft_ms_p50'] and abs(r['output_throughput'] * r['duration_s'] - r['total_output_tokens']) < 1e-6 * r['total_output_tokens'] for r in d['results'])")" = True ] \
    || fail "sweep metric values: $(cat "$TMP/sweep.json")"
[ "$(json "$TMP/sweep.json" "d['mode'], d['seed'], d['goodput_slo_ms']")" = "('load', 7, {'ttft': 600000, 'e2e': 600000})" ] \
    || fail "sweep JSON header: $(cat "$TMP/sweep.json")"
"$PY" - "$TMP/sweep.csv" "$TMP/sweep.json" <<'PY' || fail "sweep CSV: $(cat "$TMP/sweep.csv")"
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1])))
want = json.load(open(sys.argv[2]))["results"]
assert [list(r.keys()) for r in rows] == [list(w.keys()) for w in want], rows
for r, w in zip(rows, want):
    for k, v in w.items():
        assert (r[k] == str(v)) if isinstance(v, str) else abs(float(r[k]) - v) <= 1e-8 * abs(v), (k, r[k], v)
PY
grep -q "^ *inf *6 *0 " "$TMP/table" || fail "sweep table: $(cat "$TMP/table")"
if [ $HAVE_GNUPLOT = 1 ]; then
    [ "$(head -c 8 "$TMP/sweep.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] \
        || fail "plot: no PNG at $TMP/sweep.png: $(cat "$TMP/err")"
else
    echo "skip: gnuplot not installed, --plot not exercised"
fi

# A --prompts file (3 lines, max_new_tokens on two, 4 for the third), 5 requests at 8 req/s: the file repeats.
cat >"$TMP/prompts.jsonl" <<'EOF'
{"prompt": "Hello world, this is", "max_new_tokens": 3}
{"prompt": "The lighthouse keeper climbed the stairs", "max_new_tokens": 5}

{"prompt": "One two three"}
EOF
"$FL" bench-server --addr "$ADDR" --prompts "$TMP/prompts.jsonl" --request-rate 8 --num-prompts 5 \
    --output-len 4 --json >"$TMP/prompts.json" 2>"$TMP/err" || fail "prompts: $(cat "$TMP/err")"
[ "$(json "$TMP/prompts.json" "[(r['completed'], r['total_output_tokens'], r['request_goodput']) for r in d['results']]")" = \
  "[(5, 20, None)]" ] || fail "prompts: $(cat "$TMP/prompts.json")"

# Bad input: one error line, non-zero exit.
"$FL" bench-server --addr "$ADDR" --sweep 1,fast >"$TMP/out" 2>"$TMP/err" && fail "bad sweep: exit 0"
grep -q "^falconlite: error: bench-server: --sweep" "$TMP/err" || fail "bad sweep: $(cat "$TMP/err")"
"$FL" bench-server --addr "$ADDR" --request-rate 1 --goodput "itl:5" >"$TMP/out" 2>"$TMP/err" \
    && fail "bad goodput: exit 0"
grep -q "^falconlite: error: bench-server: --goodput: 'itl:5'" "$TMP/err" || fail "bad goodput: $(cat "$TMP/err")"
"$FL" bench-server --addr "$ADDR" --request-rate 1 --input-len 300 >"$TMP/out" 2>"$TMP/err" \
    && fail "too long: exit 0"
grep -q "exceeds the router's limits" "$TMP/err" || fail "too long: $(cat "$TMP/err")"

stop_router
[ $fails -eq 0 ] && echo "all bench-server load checks passed"
exit $((fails > 0))
