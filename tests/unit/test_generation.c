// seq_request / gen_batch_step on a golden tiny Falcon (CPU backend): greedy tokens, logprobs
// and prompt logprobs match HF's reference; requests joining a running batch at different steps
// produce what they produce alone; TGI's stopping order; KV reservation and release.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json_util.h"
#include "shard/engine/generation.h"

#define MAX_PROMPTS 4
#define MAX_IDS     64
#define N_NEW       8

typedef struct ref_prompt {
    int32_t ids[MAX_IDS];
    int n_ids;
    int32_t tokens[N_NEW];
    double logprobs[N_NEW];
    double prompt_logprobs[MAX_IDS]; // [n_ids - 1]: logprob of prompt token t + 1
    int has_prompt_logprobs;
} ref_prompt;

typedef struct fixture {
    backend *be;
    model *m;
    kv_cache *kv;
    ref_prompt p[MAX_PROMPTS];
    int n_prompts;
} fixture;

static int read_ints(const cJSON *a, int32_t *out, int max) {
    int n = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, a) {
        if (n == max) break; // tokens: only the first N_NEW are compared
        out[n++] = (int32_t)x->valuedouble;
    }
    return n;
}

static void read_doubles(const cJSON *a, double *out, int max) {
    int n = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, a) if (n < max) out[n++] = cJSON_IsNumber(x) ? x->valuedouble : NAN;
}

static int setup(void **state) {
    const char *data = getenv("FL_TEST_DATA");
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/golden/data/models/falcon40b_gqa_fp32", data ? data : "tests");
    snprintf(path, sizeof path, "%s/reference.json", dir);
    fixture *f = calloc(1, sizeof *f);
    fl_error err = {0};
    cJSON *ref = NULL;
    if (json_load_file(path, &ref, &err)) {
        print_message("fixture missing: %s\n", err.msg);
        free(f);
        *state = NULL;
        return 0;
    }
    const cJSON *ps = cJSON_GetObjectItem(ref, "prompts"), *p;
    cJSON_ArrayForEach(p, ps) {
        if (f->n_prompts == MAX_PROMPTS) break;
        ref_prompt *r = &f->p[f->n_prompts++];
        r->n_ids = read_ints(cJSON_GetObjectItem(p, "ids"), r->ids, MAX_IDS);
        if (cJSON_GetArraySize(cJSON_GetObjectItem(p, "ids")) > MAX_IDS)
            fail_msg("reference prompt longer than %d ids: raise MAX_IDS", MAX_IDS);
        read_ints(cJSON_GetObjectItem(p, "tokens"), r->tokens, N_NEW);
        read_doubles(cJSON_GetObjectItem(p, "logprobs"), r->logprobs, N_NEW);
        const cJSON *pl = cJSON_GetObjectItem(p, "prompt_logprobs");
        r->has_prompt_logprobs = cJSON_IsArray(pl);
        if (r->has_prompt_logprobs) read_doubles(pl, r->prompt_logprobs, MAX_IDS);
    }
    cJSON_Delete(ref);
    f->be = backend_cpu_create(2, &err);
    assert_non_null(f->be);
    if (model_load(dir, NULL, f->be, &f->m, &err)) fail_msg("model_load: %s", err.msg);
    if (model_kv_cache_create(f->m, 64, &f->kv, &err)) fail_msg("kv cache: %s", err.msg);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    if (!f) return 0;
    kv_cache_free(f->kv);
    model_free(f->m);
    f->be->free(f->be);
    free(f);
    return 0;
}

static fixture *get(void **state) {
    if (!*state) skip();
    return *state;
}

static seq_params greedy_params(int max_new) {
    seq_params p = {.max_new_tokens = max_new, .eos_id = 11, .ignore_eos = 1};
    sampling_params_default(&p.sampling);
    return p;
}

static seq_request *start(fixture *f, int i, const seq_params *p) {
    seq_request *r = NULL;
    fl_error err = {0};
    if (seq_request_create(f->m, f->kv, (uint64_t)i, f->p[i].ids, f->p[i].n_ids, p, &r, &err))
        fail_msg("seq_request_create: %s", err.msg);
    return r;
}

static void step(fixture *f, seq_request **reqs, int n) {
    fl_error err = {0};
    if (gen_batch_step(f->m, f->kv, reqs, n, &err)) fail_msg("gen_batch_step: %s", err.msg);
}

static void test_matches_reference(void **state) {
    fixture *f = get(state);
    int free0 = kv_cache_free_blocks(f->kv);
    for (int i = 0; i < f->n_prompts; i++) {
        seq_params p = greedy_params(N_NEW);
        p.prompt_logprobs = f->p[i].has_prompt_logprobs;
        seq_request *r = start(f, i, &p);
        while (r->finish == GEN_RUNNING)
            step(f, &r, 1);
        assert_int_equal(r->finish, GEN_FINISH_LENGTH);
        assert_int_equal(r->n_generated, N_NEW);
        assert_memory_equal(r->tokens + r->n_prompt, f->p[i].tokens, sizeof(int32_t) * N_NEW);
        for (int t = 0; t < N_NEW; t++)
            assert_float_equal(r->logprobs[t], f->p[i].logprobs[t], 2e-3);
        if (p.prompt_logprobs) {
            assert_true(isnan(r->prompt_logprobs[0]));
            for (int j = 1; j < r->n_prompt; j++)
                assert_float_equal(r->prompt_logprobs[j], f->p[i].prompt_logprobs[j - 1], 2e-3);
        }
        seq_request_free(f->kv, r);
    }
    assert_int_equal(kv_cache_free_blocks(f->kv), free0);
}

// Requests join a running batch at different steps (ragged prefill + decode in one forward) and
// must produce exactly their solo tokens.
static void test_staggered_batch(void **state) {
    fixture *f = get(state);
    int n = f->n_prompts < 3 ? f->n_prompts : 3;
    seq_params p = greedy_params(N_NEW);
    seq_request *reqs[3];
    int live = 0;
    for (int s = 0; live > 0 || s == 0; s++) {
        if (s < n) reqs[live++] = start(f, s, &p); // one newcomer per step
        step(f, reqs, live);
        for (int i = 0; i < live; i++) {
            if (reqs[i]->finish == GEN_RUNNING) continue;
            seq_request *r = reqs[i];
            int id = (int)r->id;
            assert_memory_equal(r->tokens + r->n_prompt, f->p[id].tokens, sizeof(int32_t) * N_NEW);
            seq_request_free(f->kv, r);
            reqs[i--] = reqs[--live];
        }
    }
}

static void test_stopping(void **state) {
    fixture *f = get(state);
    const ref_prompt *rp = &f->p[0];
    // EOS: the first token, unless ignored
    seq_params p = greedy_params(N_NEW);
    p.ignore_eos = 0;
    p.eos_id = rp->tokens[0];
    seq_request *r = start(f, 0, &p);
    step(f, &r, 1);
    assert_int_equal(r->finish, GEN_FINISH_EOS);
    assert_int_equal(r->n_generated, 1);
    // a finished request may not step again
    fl_error err = {0};
    assert_int_equal(gen_batch_step(f->m, f->kv, &r, 1, &err), FL_EINVAL);
    seq_request_free(f->kv, r);
    // stop token ids: the third token stops it
    int32_t stop = rp->tokens[2];
    p = greedy_params(N_NEW);
    p.stop_ids = &stop;
    p.n_stop_ids = 1;
    r = start(f, 0, &p);
    int first = 0;
    while (rp->tokens[first] != stop)
        first++;
    while (r->finish == GEN_RUNNING)
        step(f, &r, 1);
    assert_int_equal(r->finish, GEN_FINISH_STOP);
    assert_int_equal(r->n_generated, first + 1);
    seq_request_free(f->kv, r);
    // length wins over EOS on the last token (TGI's order)
    p = greedy_params(1);
    p.ignore_eos = 0;
    p.eos_id = rp->tokens[0];
    r = start(f, 0, &p);
    step(f, &r, 1);
    assert_int_equal(r->finish, GEN_FINISH_LENGTH);
    seq_request_free(f->kv, r);
}

static void test_kv_capacity(void **state) {
    fixture *f = get(state);
    int free0 = kv_cache_free_blocks(f->kv);
    seq_params p = greedy_params(free0 * KV_BLOCK_SIZE); // more than the pool holds
    seq_request *r = NULL;
    fl_error err = {0};
    assert_int_equal(seq_request_create(f->m, f->kv, 9, f->p[0].ids, f->p[0].n_ids, &p, &r, &err),
                     FL_ECAPACITY);
    assert_null(r);
    assert_int_equal(kv_cache_free_blocks(f->kv), free0);
    // prompt + max_new_tokens - 1 tokens are reserved (the last token is never fed back)
    p = greedy_params(KV_BLOCK_SIZE + 1);
    r = start(f, 0, &p);
    int need = (f->p[0].n_ids + KV_BLOCK_SIZE + KV_BLOCK_SIZE - 1) / KV_BLOCK_SIZE;
    assert_int_equal(free0 - kv_cache_free_blocks(f->kv), need);
    seq_request_free(f->kv, r);
    assert_int_equal(kv_cache_free_blocks(f->kv), free0);
    // bad requests
    p = greedy_params(0);
    assert_int_equal(seq_request_create(f->m, f->kv, 1, f->p[0].ids, f->p[0].n_ids, &p, &r, &err),
                     FL_EINVAL);
    p = greedy_params(4);
    int32_t bad = 1 << 20;
    assert_int_equal(seq_request_create(f->m, f->kv, 1, &bad, 1, &p, &r, &err), FL_EINVAL);
    assert_int_equal(seq_request_create(f->m, f->kv, 1, &bad, 0, &p, &r, &err), FL_EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_reference),
        cmocka_unit_test(test_staggered_batch),
        cmocka_unit_test(test_stopping),
        cmocka_unit_test(test_kv_capacity),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
