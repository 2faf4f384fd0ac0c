// The engine side of `falconlite eval` (tools/eval.h): one model, greedy generation and prompt
// log-likelihoods on it, answer extraction and the summary every suite prints. The suites
// (tools/eval_*.c) use it; tools/cmd_eval.c parses the command and runs them.
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shard/engine/generation.h"
#include "tools/cli_common.h"
#include "tools/eval.h"

fl_code eval_engine_open(const eval_opts *o, eval_engine *e, fl_error *err) {
    char threads[16];
    memset(e, 0, sizeof *e);
    if (o->threads > 0) { // the CPU backend reads its worker count from here
        snprintf(threads, sizeof threads, "%d", o->threads);
        setenv("FALCONLITE_THREADS", threads, 1);
    }
    if (!(e->be = backend_create(o->backend, err))) return err ? err->code : FL_EBACKEND;
    model_options mo = {.rank = 0, .world = 1, .rope_override = o->rope_override};
    fl_code rc = model_load(o->dir, &mo, e->be, &e->m, err);
    if (!rc) rc = cli_tokenizer_load(o->dir, &e->tok, err);
    if (rc) return rc;
    e->eos = model_get_config(e->m)->eos_token_id;
    return FL_OK;
}

void eval_engine_close(eval_engine *e) {
    kv_cache_free(e->kv);
    model_free(e->m);
    if (e->be) e->be->free(e->be);
    tokenizer_free(e->tok);
    memset(e, 0, sizeof *e);
}

// A KV cache holding at least n tokens (one sequence at a time).
static fl_code kv_ensure(eval_engine *e, int n, fl_error *err) {
    if (e->kv && e->kv_tokens >= n) return FL_OK;
    kv_cache_free(e->kv);
    e->kv = NULL;
    int blocks = (n + KV_BLOCK_SIZE - 1) / KV_BLOCK_SIZE;
    fl_code rc = model_kv_cache_create(e->m, blocks, &e->kv, err);
    e->kv_tokens = rc ? 0 : blocks * KV_BLOCK_SIZE;
    return rc;
}

// Runs one request to its end.
static fl_code run_request(eval_engine *e, const int32_t *ids, int n_ids, const seq_params *gp,
                           seq_request **out, fl_error *err) {
    fl_code rc = kv_ensure(e, n_ids + gp->max_new_tokens, err);
    if (!rc) rc = seq_request_create(e->m, e->kv, 0, ids, n_ids, gp, out, err);
    while (!rc && (*out)->finish == GEN_RUNNING)
        rc = gen_batch_step(e->m, e->kv, out, 1, err);
    return rc;
}

fl_code eval_generate(eval_engine *e, const int32_t *ids, int n_ids, int max_new, char **text,
                      fl_error *err) {
    seq_params gp = {.max_new_tokens = max_new, .eos_id = e->eos};
    sampling_params_default(&gp.sampling);
    seq_request *r = NULL;
    size_t len;
    *text = NULL;
    fl_code rc = run_request(e, ids, n_ids, &gp, &r, err);
    if (!rc)
        rc = tokenizer_decode(e->tok, r->tokens + r->n_prompt, r->n_generated, 1, text, &len, err);
    if (r) seq_request_free(e->kv, r);
    return rc;
}

fl_code eval_prompt_nll(eval_engine *e, const int32_t *ids, int n, double *nll, fl_error *err) {
    seq_params gp = {.max_new_tokens = 1, .eos_id = -1, .prompt_logprobs = 1};
    sampling_params_default(&gp.sampling);
    seq_request *r = NULL;
    fl_code rc = run_request(e, ids, n, &gp, &r, err);
    *nll = 0;
    for (int i = 1; !rc && i < n; i++)
        *nll -= r->prompt_logprobs[i];
    if (r) seq_request_free(e->kv, r);
    return rc;
}

long eval_find_number(const char *text, int last) {
    long found = -1;
    for (const char *p = text; *p;) {
        if (!isdigit((unsigned char)*p)) {
            p++;
            continue;
        }
        long v = 0;
        for (; isdigit((unsigned char)*p); p++)
            v = v < 100000000 ? v * 10 + (*p - '0') : v; // answers are < 50001: no overflow
        if (!last) return v;
        found = v;
    }
    return found;
}

cJSON *eval_summary_create(const eval_opts *o, const char *suite) {
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "suite", suite);
    cJSON_AddStringToObject(s, "model", o->dir);
    cJSON *r = cJSON_AddObjectToObject(s, "rope");
    cJSON_AddStringToObject(r, "mode", rope_mode_name(o->rope.mode));
    cJSON_AddNumberToObject(r, "theta", o->rope.theta);
    if (o->rope.mode != ROPE_NONE) cJSON_AddNumberToObject(r, "threshold", o->rope.threshold);
    if (o->rope.mode == ROPE_FALCONLITE) cJSON_AddNumberToObject(r, "alpha", o->rope.alpha);
    if (o->rope.mode == ROPE_DYNAMIC || o->rope.mode == ROPE_LINEAR)
        cJSON_AddNumberToObject(r, "factor", o->rope.factor);
    cJSON_AddStringToObject(s, "template", o->tmpl_name);
    if (strcmp(suite, "ppl")) { // perplexity scores the whole text: no sampling of cases
        cJSON_AddNumberToObject(s, "samples", o->samples);
        cJSON_AddNumberToObject(s, "seed", (double)o->seed);
    }
    return s;
}
