// Chunked prefill in the engine (gen_batch_step_chunked) on the golden tiny checkpoints, CPU
// backend: prompts ingested in chunks of 1, 7, 16 and 64 tokens, staggered into a batch whose
// other requests are decoding, give exactly the greedy tokens, logprobs and prompt logprobs of
// whole-prompt prefill. The FalconLite NTK fixture's prompts cross its rotary threshold (32), so
// a chunk rotated with the base of its own length instead of the full prompt's would differ.
// Also: the per-step prompt-token budget, and KV blocks of a request freed mid-prefill.
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
#include <sys/stat.h>

#include "common/json_util.h"
#include "shard/engine/generation.h"

#define MAX_PROMPTS 4
#define MAX_IDS     64
#define N_NEW       8

typedef struct fixture {
    backend *be;
    model *m;
    kv_cache *kv;
    int32_t ids[MAX_PROMPTS][MAX_IDS];
    int n_ids[MAX_PROMPTS];
    int n_prompts;
} fixture;

// One request's outcome, for comparison.
typedef struct outcome {
    int32_t tokens[N_NEW];
    float logprobs[N_NEW];
    float prompt_logprobs[MAX_IDS];
} outcome;

// Loads <name> with the rotary override of its reference.json (when it has one); NULL (the
// test skips) when the fixture is missing.
static fixture *fixture_load(const char *name) {
    const char *data = getenv("FL_TEST_DATA");
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/golden/data/models/%s", data ? data : "tests", name);
    snprintf(path, sizeof path, "%s/reference.json", dir);
    struct stat st;
    if (stat(path, &st) != 0) return NULL;
    fixture *f = calloc(1, sizeof *f);
    fl_error err = {0};
    cJSON *ref = NULL;
    if (json_load_file(path, &ref, &err)) fail_msg("%s", err.msg);
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(ref, "prompts")) {
        if (f->n_prompts == MAX_PROMPTS) break;
        const cJSON *ids = cJSON_GetObjectItem(p, "ids"), *x;
        assert_true(cJSON_GetArraySize(ids) <= MAX_IDS);
        int n = 0;
        cJSON_ArrayForEach(x, ids) f->ids[f->n_prompts][n++] = (int32_t)x->valuedouble;
        f->n_ids[f->n_prompts++] = n;
    }
    rope_overrides rope = ROPE_OVERRIDES_NONE;
    const cJSON *r = cJSON_GetObjectItem(ref, "rope");
    if (cJSON_IsObject(r)) {
        rope_mode mode;
        assert_int_equal(rope_mode_parse(cJSON_GetObjectItem(r, "mode")->valuestring, &mode, &err),
                         FL_OK);
        rope.mode = mode;
        rope.alpha = (float)cJSON_GetObjectItem(r, "alpha")->valuedouble;
        rope.threshold = cJSON_GetObjectItem(r, "threshold")->valueint;
        rope.factor = 1.0f;
    }
    model_options opt = {.rank = 0, .world = 1, .rope_override = cJSON_IsObject(r) ? &rope : NULL};
    cJSON_Delete(ref);
    f->be = backend_cpu_create(2, &err);
    assert_non_null(f->be);
    if (model_load(dir, &opt, f->be, &f->m, &err)) fail_msg("model_load: %s", err.msg);
    if (model_kv_cache_create(f->m, 64, &f->kv, &err)) fail_msg("kv cache: %s", err.msg);
    return f;
}

static void fixture_free(fixture *f) {
    kv_cache_free(f->kv);
    model_free(f->m);
    f->be->free(f->be);
    free(f);
}

static seq_request *start(fixture *f, int i) {
    seq_params p = {.max_new_tokens = N_NEW, .eos_id = 11, .ignore_eos = 1, .prompt_logprobs = 1};
    sampling_params_default(&p.sampling);
    seq_request *r = NULL;
    fl_error err = {0};
    if (seq_request_create(f->m, f->kv, (uint64_t)i, f->ids[i], f->n_ids[i], &p, &r, &err))
        fail_msg("seq_request_create: %s", err.msg);
    return r;
}

static void keep(const seq_request *r, outcome *o) {
    memcpy(o->tokens, r->tokens + r->n_prompt, sizeof o->tokens);
    memcpy(o->logprobs, r->logprobs, sizeof o->logprobs);
    memcpy(o->prompt_logprobs, r->prompt_logprobs, sizeof(float) * (size_t)r->n_prompt);
}

// Each prompt alone, prefilled whole.
static void run_whole(fixture *f, outcome *out) {
    fl_error err = {0};
    for (int i = 0; i < f->n_prompts; i++) {
        seq_request *r = start(f, i);
        while (r->finish == GEN_RUNNING)
            if (gen_batch_step(f->m, f->kv, &r, 1, &err)) fail_msg("step: %s", err.msg);
        keep(r, &out[i]);
        seq_request_free(f->kv, r);
    }
}

// The prompts join one batch a step apart, prefilled in chunks of `chunk` tokens per step while
// the earlier ones decode. Checks the step budget and that no token comes before the prompt is in.
static void run_chunked(fixture *f, int chunk, outcome *out) {
    fl_error err = {0};
    seq_request *reqs[MAX_PROMPTS];
    int live = 0, cached[MAX_PROMPTS] = {0};
    for (int s = 0; live > 0 || s == 0; s++) {
        if (s < f->n_prompts) reqs[live++] = start(f, s);
        for (int i = 0; i < live; i++)
            cached[i] = seq_request_prefilling(reqs[i]) ? reqs[i]->kv.n_tokens : -1;
        if (gen_batch_step_chunked(f->m, f->kv, reqs, live, chunk, &err))
            fail_msg("chunk %d step %d: %s", chunk, s, err.msg);
        int taken = 0;
        for (int i = 0; i < live; i++) {
            seq_request *r = reqs[i];
            if (cached[i] < 0) continue;
            taken += r->kv.n_tokens - cached[i];
            // A token comes out exactly when the prompt is all in.
            assert_int_equal(r->n_generated, r->kv.n_tokens == r->n_prompt);
        }
        assert_true(taken <= chunk);
        for (int i = 0; i < live; i++) {
            if (reqs[i]->finish == GEN_RUNNING) continue;
            keep(reqs[i], &out[reqs[i]->id]);
            seq_request_free(f->kv, reqs[i]);
            reqs[i--] = reqs[--live];
        }
    }
}

static void check_case(const char *name) {
    fixture *f = fixture_load(name);
    if (!f) {
        print_message("skipping %s: fixture missing\n", name);
        skip();
    }
    int free0 = kv_cache_free_blocks(f->kv);
    outcome whole[MAX_PROMPTS], chunked[MAX_PROMPTS];
    run_whole(f, whole);
    static const int chunks[] = {1, 7, 16, 64};
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
        memset(chunked, 0, sizeof chunked);
        run_chunked(f, chunks[c], chunked);
        for (int i = 0; i < f->n_prompts; i++) {
            assert_memory_equal(chunked[i].tokens, whole[i].tokens, sizeof whole[i].tokens);
            for (int t = 0; t < N_NEW; t++)
                assert_float_equal(chunked[i].logprobs[t], whole[i].logprobs[t], 1e-5);
            assert_true(isnan(chunked[i].prompt_logprobs[0]));
            for (int j = 1; j < f->n_ids[i]; j++)
                assert_float_equal(chunked[i].prompt_logprobs[j], whole[i].prompt_logprobs[j],
                                   1e-5);
        }
        assert_int_equal(kv_cache_free_blocks(f->kv), free0);
    }
    fixture_free(f);
}

static void test_falcon40b_gqa(void **state) {
    check_case("falcon40b_gqa_fp32");
}
static void test_falcon7b_mqa(void **state) {
    check_case("falcon7b_mqa_fp32");
}
static void test_llama_gqa(void **state) {
    check_case("llama_gqa_fp32");
}
// Prompts of 39 and 34 tokens cross the NTK threshold of 32: their first chunks are shorter than
// the threshold yet must rotate with base(L_prompt).
static void test_falconlite_ntk(void **state) {
    check_case("falcon40b_ntk_falconlite");
}

// A request dropped while its prompt is half in gives its KV blocks back (FilterBatch / cancel),
// and the budget goes to the prefilling requests in batch order.
static void test_free_mid_prefill(void **state) {
    fixture *f = fixture_load("falcon40b_gqa_fp32");
    if (!f) skip();
    fl_error err = {0};
    int free0 = kv_cache_free_blocks(f->kv);
    seq_request *reqs[2] = {start(f, 0), start(f, 1)};
    assert_int_equal(gen_batch_step_chunked(f->m, f->kv, reqs, 2, 10, &err), FL_OK);
    assert_int_equal(reqs[0]->kv.n_tokens, 10); // the first takes the whole budget
    assert_int_equal(reqs[1]->kv.n_tokens, 0);
    assert_int_equal(reqs[0]->n_generated + reqs[1]->n_generated, 0);
    seq_request_free(f->kv, reqs[0]);
    assert_int_equal(gen_batch_step_chunked(f->m, f->kv, &reqs[1], 1, 10, &err), FL_OK);
    assert_int_equal(reqs[1]->kv.n_tokens, 10);
    seq_request_free(f->kv, reqs[1]);
    assert_int_equal(kv_cache_free_blocks(f->kv), free0);
    fixture_free(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_falcon40b_gqa),    cmocka_unit_test(test_falcon7b_mqa),
        cmocka_unit_test(test_llama_gqa),        cmocka_unit_test(test_falconlite_ntk),
        cmocka_unit_test(test_free_mid_prefill),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
