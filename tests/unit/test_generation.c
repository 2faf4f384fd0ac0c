// seq_request / gen_batch_step on a golden tiny Falcon (CPU backend): greedy tokens, logprobs
// and prompt logprobs match HF's reference; requests joining a running batch at different steps
// produce what they produce alone; TGI's stopping order; KV reservation and release; the prefix
// cache reproduces cold outputs exactly (sequential, batched, evicting, FalconLite's NTK rotary).
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

static void step_kv(fixture *f, kv_cache *kv, seq_request **r) {
    fl_error err = {0};
    if (gen_batch_step(f->m, kv, r, 1, &err)) fail_msg("gen_batch_step: %s", err.msg);
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

// ---- prefix cache: reuse gives exactly the tokens and logprobs of a cold prefill

#define MAX_SET 8
#define MAX_LEN 128

typedef struct prompt_set { // prompts sharing a prefix
    int32_t ids[MAX_SET][MAX_LEN];
    int n[MAX_SET];
    int count;
} prompt_set;

typedef struct run_out {
    int32_t tokens[N_NEW];
    float logprobs[N_NEW];
    int lookup, hit;
} run_out;

// prefix [n_prefix] + suffix [n_suffix] as the set's next prompt.
static void set_add(prompt_set *s, const int32_t *prefix, int n_prefix, const int32_t *suffix,
                    int n_suffix) {
    assert_true(s->count < MAX_SET && n_prefix + n_suffix <= MAX_LEN);
    memcpy(s->ids[s->count], prefix, sizeof(int32_t) * n_prefix);
    memcpy(s->ids[s->count] + n_prefix, suffix, sizeof(int32_t) * n_suffix);
    s->n[s->count++] = n_prefix + n_suffix;
}

// Runs prompts which [n] of s together in one batch (greedy, N_NEW tokens each) to the end.
static void run_batch(model *m, kv_cache *kv, const prompt_set *s, const int *which, int n,
                      run_out *out) {
    seq_request *reqs[MAX_SET];
    seq_params p = greedy_params(N_NEW);
    fl_error err = {0};
    for (int i = 0; i < n; i++) {
        const int32_t *ids = s->ids[which[i]];
        if (seq_request_create(m, kv, (uint64_t)i, ids, s->n[which[i]], &p, &reqs[i], &err))
            fail_msg("seq_request_create: %s", err.msg);
        out[i].lookup = reqs[i]->n_prefix_lookup;
        out[i].hit = reqs[i]->n_prefix_hit;
    }
    while (reqs[0]->finish == GEN_RUNNING) // same length, ignore_eos: all finish together
        if (gen_batch_step(m, kv, reqs, n, &err)) fail_msg("gen_batch_step: %s", err.msg);
    for (int i = 0; i < n; i++) {
        assert_int_equal(reqs[i]->n_generated, N_NEW);
        memcpy(out[i].tokens, reqs[i]->tokens + reqs[i]->n_prompt, sizeof out[i].tokens);
        memcpy(out[i].logprobs, reqs[i]->logprobs, sizeof out[i].logprobs);
        seq_request_free(kv, reqs[i]);
    }
}

static kv_cache *prefix_kv_new(model *m, int n_blocks, int prefix_on) {
    kv_cache *kv = NULL;
    fl_error err = {0};
    if (model_kv_cache_create(m, n_blocks, &kv, &err)) fail_msg("kv cache: %s", err.msg);
    kv_cache_set_prefix_caching(kv, prefix_on);
    return kv;
}

// cold[i]: prompt i alone in a cache without prefix reuse.
static void run_cold(model *m, const prompt_set *s, run_out *cold) {
    kv_cache *kv = prefix_kv_new(m, 64, 0);
    for (int i = 0; i < s->count; i++) {
        run_batch(m, kv, s, &i, 1, &cold[i]);
        assert_int_equal(cold[i].lookup, 0);
        assert_int_equal(cold[i].hit, 0);
    }
    kv_cache_free(kv);
}

// The same computation in the same order of float operations: equal bit for bit.
static void assert_same_output(const run_out *got, const run_out *want, int prompt) {
    for (int t = 0; t < N_NEW; t++) {
        if (got->tokens[t] != want->tokens[t] || got->logprobs[t] != want->logprobs[t])
            fail_msg("prompt %d token %d: %d (%.9g) with the prefix cache, %d (%.9g) cold", prompt,
                     t, got->tokens[t], got->logprobs[t], want->tokens[t], want->logprobs[t]);
    }
}

// Runs the prompts of order [n] one after the other in kv; each must reuse hits[i] tokens.
static void check_sequential(model *m, kv_cache *kv, const prompt_set *s, const run_out *cold,
                             const int *order, const int *hits, int n) {
    for (int i = 0; i < n; i++) {
        run_out o;
        run_batch(m, kv, s, &order[i], 1, &o);
        assert_int_equal(o.lookup, s->n[order[i]]);
        if (hits) assert_int_equal(o.hit, hits[i]);
        assert_same_output(&o, &cold[order[i]], order[i]);
    }
}

// Runs the prompts which [n] of s together in one batch in kv; each must reuse hits[i] tokens.
static void check_batch(model *m, kv_cache *kv, const prompt_set *s, const run_out *cold,
                        const int *which, const int *hits, int n) {
    run_out o[MAX_SET];
    run_batch(m, kv, s, which, n, o);
    for (int i = 0; i < n; i++) {
        assert_int_equal(o[i].hit, hits[i]);
        assert_same_output(&o[i], &cold[which[i]], which[i]);
    }
}

// Questions over one document: 57 shared tokens (3 full blocks), then 14, 9 and 5 of question;
// and one prompt of another document.
static int doc_set(const fixture *f, prompt_set *s) {
    if (f->n_prompts < 4) return 0;
    int32_t doc[MAX_LEN];
    int n_doc = f->p[0].n_ids + f->p[1].n_ids;
    memcpy(doc, f->p[0].ids, sizeof(int32_t) * f->p[0].n_ids);
    memcpy(doc + f->p[0].n_ids, f->p[1].ids, sizeof(int32_t) * f->p[1].n_ids);
    assert_int_equal(n_doc, 57);                        // the expected hits below count on it
    set_add(s, doc, n_doc, f->p[2].ids, f->p[2].n_ids); // 71 tokens: 4 full blocks
    set_add(s, doc, n_doc, f->p[3].ids, f->p[3].n_ids); // 66: 4
    set_add(s, doc, n_doc, f->p[1].ids, 5);             // 62: 3
    // 3: 71 tokens that do not start with the document
    int32_t other[MAX_LEN];
    memcpy(other, f->p[1].ids, sizeof(int32_t) * f->p[1].n_ids);
    memcpy(other + f->p[1].n_ids, f->p[0].ids, sizeof(int32_t) * f->p[0].n_ids);
    set_add(s, other, f->p[1].n_ids + f->p[0].n_ids, f->p[2].ids, f->p[2].n_ids);
    return 1;
}

// The fixture, the document prompts in s and their cold outputs (skips without the fixture).
static fixture *doc_fixture(void **state, prompt_set *s, run_out *cold) {
    fixture *f = get(state);
    if (!doc_set(f, s)) skip();
    run_cold(f->m, s, cold);
    return f;
}

static void test_prefix_sequential(void **state) {
    prompt_set s = {0};
    run_out cold[MAX_SET];
    fixture *f = doc_fixture(state, &s, cold);
    kv_cache *kv = prefix_kv_new(f->m, 64, 1);
    // A lookup takes whole blocks of at most n_prompt - 1 tokens; prompt 1's 4th block holds
    // question tokens, prompt 0 repeated hits all 4 of its blocks.
    int order[] = {0, 1, 2, 0, 1};
    int hits[] = {0, 48, 48, 64, 64};
    check_sequential(f->m, kv, &s, cold, order, hits, 5);
    assert_int_equal(kv_cache_free_blocks(kv), 64);
    // Prompt logprobs need every prompt token computed: no lookup, same output.
    seq_params p = greedy_params(N_NEW);
    p.prompt_logprobs = 1;
    seq_request *r = NULL;
    fl_error err = {0};
    if (seq_request_create(f->m, kv, 7, s.ids[0], s.n[0], &p, &r, &err))
        fail_msg("seq_request_create: %s", err.msg);
    assert_int_equal(r->n_prefix_lookup, 0);
    assert_int_equal(r->n_prefix_hit, 0);
    while (r->finish == GEN_RUNNING)
        step_kv(f, kv, &r);
    assert_memory_equal(r->tokens + r->n_prompt, cold[0].tokens, sizeof cold[0].tokens);
    seq_request_free(kv, r);
    kv_cache_free(kv);
}

static void test_prefix_concurrent(void **state) {
    prompt_set s = {0};
    run_out cold[MAX_SET];
    fixture *f = doc_fixture(state, &s, cold);
    kv_cache *kv = prefix_kv_new(f->m, 64, 1);
    // Cold batch: nothing to reuse; the twins' equal blocks are published once, and prompt 1's
    // 4th block is chained after prompt 0's 3rd.
    int all[] = {0, 1, 2}, none[] = {0, 0, 0}, hits[] = {64, 64, 48};
    check_batch(f->m, kv, &s, cold, all, none, 3);
    check_batch(f->m, kv, &s, cold, all, hits, 3);
    kv_cache_free(kv);
}

// A pool that holds little more than one request: published blocks are evicted all along.
static void test_prefix_eviction(void **state) {
    prompt_set s = {0};
    run_out cold[MAX_SET];
    fixture *f = doc_fixture(state, &s, cold);
    kv_cache *kv = prefix_kv_new(f->m, 6, 1); // a request takes 5 blocks (prompt + 7)
    int order[] = {0, 1, 2, 0, 1, 2, 2, 0};
    check_sequential(f->m, kv, &s, cold, order, NULL, 8);
    assert_true(kv->next_serial - 1 > (uint64_t)kv->n_blocks); // more published than it holds
    assert_int_equal(kv_cache_free_blocks(kv), 6);
    kv_cache_free(kv);
    // One batch under pressure, 9 blocks: prompt 0 and the unrelated prompt 3 leave 8 blocks
    // cached; the batch holds 4 shared blocks and needs 5 more, 4 of them evicted from prompt 3.
    kv = prefix_kv_new(f->m, 9, 1);
    int warm[] = {0, 3}, warm_hits[] = {0, 0};
    check_sequential(f->m, kv, &s, cold, warm, warm_hits, 2);
    int all[] = {0, 1, 2}, hits[] = {64, 48, 48};
    check_batch(f->m, kv, &s, cold, all, hits, 3);
    int again[] = {3}, evicted[] = {0}; // all 4 of its blocks were taken
    check_sequential(f->m, kv, &s, cold, again, evicted, 1);
    assert_int_equal(kv_cache_free_blocks(kv), 9);
    kv_cache_free(kv);
}

// FalconLite's dynamic NTK (threshold 32): a prompt rotates its K with base(n_prompt), so blocks
// are reused only between prompts of equal base; outputs stay those of a cold prefill, also
// when decoding crosses the threshold.
static void test_prefix_falconlite_rotary(void **state) {
    const char *data = getenv("FL_TEST_DATA");
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/golden/data/models/falcon40b_ntk_falconlite",
             data ? data : "tests");
    snprintf(path, sizeof path, "%s/reference.json", dir);
    cJSON *ref = NULL;
    fl_error err = {0};
    if (json_load_file(path, &ref, &err)) skip();
    const cJSON *jr = cJSON_GetObjectItem(ref, "rope");
    rope_mode mode;
    assert_int_equal(rope_mode_parse(cJSON_GetObjectItem(jr, "mode")->valuestring, &mode, &err),
                     FL_OK);
    rope_overrides rope = ROPE_OVERRIDES_NONE; // theta: config.json's, as the reference's
    rope.mode = mode;
    rope.alpha = (float)cJSON_GetObjectItem(jr, "alpha")->valuedouble;
    rope.threshold = cJSON_GetObjectItem(jr, "threshold")->valueint;
    rope.factor = 1.0f;
    assert_int_equal(rope.threshold, 32);
    int32_t ids[4][MAX_IDS];
    int n_ids[4], n = 0;
    const cJSON *jp;
    cJSON_ArrayForEach(jp, cJSON_GetObjectItem(ref, "prompts")) if (n < 4) {
        n_ids[n] = read_ints(cJSON_GetObjectItem(jp, "ids"), ids[n], MAX_IDS);
        n++;
    }
    cJSON_Delete(ref);
    assert_int_equal(n, 4);
    assert_true(n_ids[0] >= 32 && n_ids[1] >= 23 && n_ids[2] >= 10 && n_ids[3] >= 13);

    backend *be = backend_cpu_create(2, &err);
    assert_non_null(be);
    model_options mo = {.rank = 0, .world = 1, .rope_override = &rope};
    model *m = NULL;
    if (model_load(dir, &mo, be, &m, &err)) fail_msg("model_load: %s", err.msg);
    assert_int_equal(model_get_config(m)->rope.mode, ROPE_FALCONLITE);
    assert_int_equal(model_get_config(m)->rope.threshold, 32);
    const int32_t *doc = ids[0]; // 32 shared tokens: 2 blocks
    prompt_set s = {0};
    set_add(&s, doc, 20, ids[1], 10);      // 0: 30 tokens, base theta (below the threshold)
    set_add(&s, doc, 20, ids[2], 10);      // 1: 30, theta
    set_add(&s, doc, 32, ids[1], 8);       // 2: 40, base(40)
    set_add(&s, doc, 32, ids[2], 8);       // 3: 40, base(40)
    set_add(&s, doc, 32, ids[3], 13);      // 4: 45, base(45)
    set_add(&s, doc, 32, ids[1] + 10, 13); // 5: 45, base(45)
    run_out cold[MAX_SET];
    run_cold(m, &s, cold);
    kv_cache *kv = prefix_kv_new(m, 64, 1);
    // 1 reuses 0's theta block; 2 does not (its base is base(40)), 3 reuses 2's two blocks;
    // 4 (base(45)) reuses nothing of 2 and 3, 5 reuses 4's.
    int order[] = {0, 1, 2, 3, 4, 5};
    int hits[] = {0, 16, 0, 32, 0, 32};
    check_sequential(m, kv, &s, cold, order, hits, 6);
    kv_cache_free(kv);
    model_free(m);
    be->free(be);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_reference), cmocka_unit_test(test_staggered_batch),
        cmocka_unit_test(test_stopping),          cmocka_unit_test(test_kv_capacity),
        cmocka_unit_test(test_prefix_sequential), cmocka_unit_test(test_prefix_concurrent),
        cmocka_unit_test(test_prefix_eviction),   cmocka_unit_test(test_prefix_falconlite_rotary),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
