// eval_target on the local engine (--model DIR): the model loaded once with the chosen rotary
// scaling, one sequence at a time in a KV cache grown on demand.
#include <math.h>
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
    model_options mo = {.rank = 0, .world = 1, .rope_override = o->rope_override, .gptq = o->gptq};
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

fl_code eval_prompt_logprobs(eval_engine *e, const int32_t *ids, int n, float *lp, fl_error *err) {
    seq_params gp = {.max_new_tokens = 1, .eos_id = -1, .prompt_logprobs = 1};
    sampling_params_default(&gp.sampling);
    seq_request *r = NULL;
    fl_code rc = run_request(e, ids, n, &gp, &r, err);
    if (!rc) {
        memcpy(lp, r->prompt_logprobs, sizeof *lp * n);
        lp[0] = NAN;
    }
    if (r) seq_request_free(e->kv, r);
    return rc;
}

typedef struct local_target {
    eval_target base;
    eval_engine engine;
    const char *dir;
    cJSON *rope; // the rotary scaling in effect, for the report
} local_target;

static fl_code local_encode(local_target *l, const char *text, int32_t **ids, int *n,
                            fl_error *err) {
    fl_code rc = tokenizer_encode(l->engine.tok, text, strlen(text), ids, n, err);
    if (!rc && *n == 0) {
        free(*ids);
        *ids = NULL;
        rc = fl_error_set(err, FL_EINVAL, "eval: a prompt encodes to no tokens");
    }
    return rc;
}

static fl_code local_generate(eval_target *t, const char *prompt, int max_new, char **text,
                              int *n_prompt, fl_error *err) {
    local_target *l = (local_target *)t;
    int32_t *ids = NULL;
    fl_code rc = local_encode(l, prompt, &ids, n_prompt, err);
    if (!rc) rc = eval_generate(&l->engine, ids, *n_prompt, max_new, text, err);
    free(ids);
    return rc;
}

static fl_code local_prompt_logprobs(eval_target *t, const char *prompt, float **lp, int *n,
                                     fl_error *err) {
    local_target *l = (local_target *)t;
    int32_t *ids = NULL;
    *lp = NULL;
    fl_code rc = local_encode(l, prompt, &ids, n, err);
    if (!rc && !(*lp = malloc(sizeof **lp * *n))) rc = fl_error_set(err, FL_ENOMEM, "out of memory");
    if (!rc) rc = eval_prompt_logprobs(&l->engine, ids, *n, *lp, err);
    if (rc) {
        free(*lp);
        *lp = NULL;
    }
    free(ids);
    return rc;
}

static fl_code local_count_tokens(eval_target *t, const char *text, int *n, fl_error *err) {
    local_target *l = (local_target *)t;
    int32_t *ids = NULL;
    fl_code rc = tokenizer_encode(l->engine.tok, text, strlen(text), &ids, n, err);
    free(ids);
    return rc;
}

static void local_describe(eval_target *t, cJSON *report) {
    local_target *l = (local_target *)t;
    cJSON *d = cJSON_AddObjectToObject(report, "target");
    cJSON_AddStringToObject(d, "kind", "model");
    cJSON_AddStringToObject(d, "model", l->dir);
    cJSON_AddItemToObject(d, "rope", cJSON_Duplicate(l->rope, 1));
}

static void local_free(eval_target *t) {
    local_target *l = (local_target *)t;
    eval_engine_close(&l->engine);
    cJSON_Delete(l->rope);
    free(l);
}

static cJSON *rope_json(const rope_config *rc) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "mode", rope_mode_name(rc->mode));
    cJSON_AddNumberToObject(r, "theta", rc->theta);
    if (rc->mode != ROPE_NONE) cJSON_AddNumberToObject(r, "threshold", rc->threshold);
    if (rc->mode == ROPE_FALCONLITE) cJSON_AddNumberToObject(r, "alpha", rc->alpha);
    if (rc->mode == ROPE_DYNAMIC || rc->mode == ROPE_LINEAR)
        cJSON_AddNumberToObject(r, "factor", rc->factor);
    return r;
}

fl_code eval_target_local_create(const eval_opts *o, eval_target **out, fl_error *err) {
    *out = NULL;
    local_target *l = calloc(1, sizeof *l);
    if (!l) return fl_error_set(err, FL_ENOMEM, "out of memory");
    l->base = (eval_target){local_generate, local_prompt_logprobs, local_count_tokens,
                            local_describe, local_free, &l->engine};
    l->dir = o->dir;
    fl_code rc = eval_engine_open(o, &l->engine, err);
    if (rc) {
        local_free(&l->base);
        return rc;
    }
    l->rope = rope_json(&model_get_config(l->engine.m)->rope); // config.json + overrides
    *out = &l->base;
    return FL_OK;
}

void eval_target_free(eval_target *t) {
    if (t) t->free(t);
}
