#!/usr/bin/env bash
# `falconlite client` and `falconlite bench-server` against a real falconlite-router (CPU backend,
# one shard, the tiny golden GQA checkpoint): greedy generate / stream / tokenize agree with the
# local engine (`falconlite generate|tokenize`), info and health answer, a validation error exits
# non-zero with TGI's message and the gRPC status, and bench-server prints its JSON summary.
set -uo pipefail
source "$(dirname "$0")/router_cpu.sh"

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
