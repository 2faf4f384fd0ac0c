// Golden parity: the CPU backend's greedy generations and logprobs on tiny random Falcon
// checkpoints against HF transformers (tests/golden/make_model_fixtures.py), one prompt at a
// time and all prompts as one ragged batch; with --gpu, the CUDA backend against the same HF
// references (its own ctest entry, test_golden_forward_cuda).
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/json_util.h"
#include "shard/engine/comm.h"
#include "shard/engine/model.h"
#include "tests/unit/helpers/gpu_probe.h"

#define MAX_PROMPTS        8
#define MAX_NEW            64
#define LOGPROB_TOL        1e-4
#define CUDA_LOGPROB_TOL   3e-2 // + CUDA_LOGPROB_REL * |logprob|: f16 errors grow with logits
#define CUDA_LOGPROB_REL   5e-3
#define MIN_MATCHING_STEPS 24

static double max_logprob_diff; // largest |logprob - HF| of the current case, for the log

// How a run is compared with HF. The CPU backend (f32 activations) must follow HF's greedy path
// itself; the CUDA backend (f16 activations) is fed HF's tokens (teacher forcing), since its
// rounding may flip near-ties, and checked with a looser tolerance.
typedef struct parity {
    double tol, rel_tol; // |logprob - HF| <= tol + rel_tol * |HF|
    int teacher_forced;
} parity;

static const parity PARITY_CPU = {LOGPROB_TOL, 0, 0};
static const parity PARITY_CUDA = {CUDA_LOGPROB_TOL, CUDA_LOGPROB_REL, 1};
static parity cur = {LOGPROB_TOL, 0, 0};

static int logprob_off(double lp, double hf) {
    return fabs(lp - hf) > cur.tol + cur.rel_tol * fabs(hf);
}
static int argmax_mismatches; // teacher forcing: steps whose argmax differs from HF's token

typedef struct ref_prompt {
    int32_t *ids;
    int n_ids;
    int32_t tokens[MAX_NEW];
    double logprobs[MAX_NEW];
    double *prompt_logprobs; // [n_ids - 1] or NULL
} ref_prompt;

typedef struct ref_case {
    char dir[512];
    int n_new;
    ref_prompt prompts[MAX_PROMPTS];
    int n_prompts;
    int has_rope;
    rope_overrides rope; // the reference's rotary override (theta: rope_theta, from config.json)
    float rope_theta;
} ref_case;

static int json_ints(const cJSON *arr, int32_t *out, int cap) {
    int n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        if (n < cap) out[n] = (int32_t)it->valuedouble;
        n++;
    }
    return n;
}

static int json_doubles(const cJSON *arr, double *out, int cap) {
    int n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        if (n < cap) out[n] = it->valuedouble;
        n++;
    }
    return n;
}

// Loads <dir>/reference.json; returns 0 when the fixture directory is missing.
static int ref_case_load(const char *name, ref_case *rc) {
    const char *data = getenv("FL_TEST_DATA");
    snprintf(rc->dir, sizeof rc->dir, "%s/golden/data/models/%s", data ? data : "tests", name);
    struct stat st;
    if (stat(rc->dir, &st) != 0) return 0;
    char path[600];
    snprintf(path, sizeof path, "%s/reference.json", rc->dir);
    cJSON *root = NULL;
    fl_error err = {0};
    if (json_load_file(path, &root, &err) != FL_OK) fail_msg("%s", err.msg);
    rc->n_new = cJSON_GetObjectItem(root, "n_new")->valueint;
    assert_true(rc->n_new <= MAX_NEW);
    const cJSON *rope = cJSON_GetObjectItem(root, "rope");
    if (rope && cJSON_IsObject(rope)) {
        rope_mode mode;
        rc->has_rope = 1;
        assert_int_equal(
            rope_mode_parse(cJSON_GetObjectItem(rope, "mode")->valuestring, &mode, &err), FL_OK);
        rc->rope = ROPE_OVERRIDES_NONE;
        rc->rope.mode = mode;
        rc->rope_theta = (float)cJSON_GetObjectItem(rope, "theta")->valuedouble;
        rc->rope.alpha = (float)cJSON_GetObjectItem(rope, "alpha")->valuedouble;
        rc->rope.threshold = cJSON_GetObjectItem(rope, "threshold")->valueint;
        rc->rope.factor = 1.0f;
    }
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(root, "prompts")) {
        assert_true(rc->n_prompts < MAX_PROMPTS);
        ref_prompt *rp = &rc->prompts[rc->n_prompts++];
        const cJSON *ids = cJSON_GetObjectItem(p, "ids");
        rp->n_ids = cJSON_GetArraySize(ids);
        rp->ids = malloc((size_t)rp->n_ids * sizeof *rp->ids);
        json_ints(ids, rp->ids, rp->n_ids);
        assert_int_equal(json_ints(cJSON_GetObjectItem(p, "tokens"), rp->tokens, MAX_NEW),
                         rc->n_new);
        assert_int_equal(json_doubles(cJSON_GetObjectItem(p, "logprobs"), rp->logprobs, MAX_NEW),
                         rc->n_new);
        const cJSON *plp = cJSON_GetObjectItem(p, "prompt_logprobs");
        if (plp) {
            rp->prompt_logprobs = malloc((size_t)rp->n_ids * sizeof(double));
            assert_int_equal(json_doubles(plp, rp->prompt_logprobs, rp->n_ids), rp->n_ids - 1);
        }
    }
    cJSON_Delete(root);
    return 1;
}

static void ref_case_free(ref_case *rc) {
    for (int i = 0; i < rc->n_prompts; i++) {
        free(rc->prompts[i].ids);
        free(rc->prompts[i].prompt_logprobs);
    }
}

static int row_argmax(const float *row, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (row[i] > row[best]) best = i;
    return best;
}

static double row_logprob(const float *row, int n, int tok) {
    double mx = row[0], sum = 0;
    for (int i = 1; i < n; i++)
        mx = row[i] > mx ? row[i] : mx;
    for (int i = 0; i < n; i++)
        sum += exp((double)row[i] - mx);
    return (double)row[tok] - mx - log(sum);
}

// The first failure of a generation run (kept as data so a forked rank can report it too).
typedef struct verdict {
    int failed;
    char msg[1024];
} verdict;

#define VERDICT_FAIL(v, ...)                                                                       \
    do {                                                                                           \
        if (!(v)->failed) {                                                                        \
            (v)->failed = 1;                                                                       \
            snprintf((v)->msg, sizeof(v)->msg, __VA_ARGS__);                                       \
        }                                                                                          \
    } while (0)

// Per-prompt generation state shared by both drivers.
typedef struct gen_state {
    const ref_prompt *ref;
    kv_seq kv;
    int32_t next;    // token fed at the next decode step
    int step;        // tokens generated so far
    int diverged_at; // first step whose token differs from HF (-1 while none)
} gen_state;

// Checks one generated position: greedy token vs HF and the logprob of HF's token.
static void gen_check(gen_state *g, const float *row, int n_vocab, const char *what, verdict *v) {
    int tok = row_argmax(row, n_vocab);
    if (cur.teacher_forced) {
        argmax_mismatches += tok != g->ref->tokens[g->step];
        tok = g->ref->tokens[g->step];
    }
    if (g->diverged_at == -1 && tok != g->ref->tokens[g->step]) g->diverged_at = g->step;
    if (g->diverged_at == -1) {
        double lp = row_logprob(row, n_vocab, g->ref->tokens[g->step]);
        max_logprob_diff = fmax(max_logprob_diff, fabs(lp - g->ref->logprobs[g->step]));
        if (logprob_off(lp, g->ref->logprobs[g->step]))
            VERDICT_FAIL(v, "%s: step %d logprob %.7f, HF %.7f", what, g->step, lp,
                         g->ref->logprobs[g->step]);
    }
    g->next = tok;
    g->step++;
}

static void gen_finish(const gen_state *g, int n_new, const char *what, verdict *v) {
    int same = g->diverged_at == -1 ? n_new : g->diverged_at;
    if (same < n_new)
        fprintf(stderr, "%s: tokens match HF for %d of %d steps\n", what, same, n_new);
    if (same < MIN_MATCHING_STEPS)
        VERDICT_FAIL(v, "%s: tokens match HF for only %d steps", what, same);
}

static void prompt_logprobs_check(const ref_prompt *rp, const float *logits, int n_vocab,
                                  const char *what, verdict *v) {
    for (int t = 0; t + 1 < rp->n_ids; t++) {
        double lp = row_logprob(logits + (size_t)t * n_vocab, n_vocab, rp->ids[t + 1]);
        max_logprob_diff = fmax(max_logprob_diff, fabs(lp - rp->prompt_logprobs[t]));
        if (logprob_off(lp, rp->prompt_logprobs[t]))
            VERDICT_FAIL(v, "%s: prompt token %d logprob %.7f, HF %.7f", what, t + 1, lp,
                         rp->prompt_logprobs[t]);
    }
}

// Runs every prompt through model_forward; batched: all prompts share each call.
static void generate(model *m, kv_cache *kv, const ref_case *rc, int batched, verdict *v) {
    int n_vocab = model_get_config(m)->n_vocab, n = rc->n_prompts;
    gen_state g[MAX_PROMPTS] = {0};
    fl_error err = {0};
    int max_rows = 0;
    for (int i = 0; i < n; i++)
        max_rows += rc->prompts[i].n_ids;
    float *logits = malloc((size_t)max_rows * n_vocab * sizeof(float));
    const char *what = batched ? "batched" : "single";
    for (int first = 0; first < n && !v->failed; first += batched ? n : 1) {
        int count = batched ? n : 1;
        fwd_seq seqs[MAX_PROMPTS];
        for (int i = first; i < first + count; i++) {
            g[i] = (gen_state){.ref = &rc->prompts[i], .diverged_at = -1};
            if (kv_seq_reserve(kv, &g[i].kv, g[i].ref->n_ids + rc->n_new, &err))
                VERDICT_FAIL(v, "reserve: %s", err.msg);
            seqs[i - first] = (fwd_seq){.tokens = g[i].ref->ids,
                                        .n_new = g[i].ref->n_ids,
                                        .kv = &g[i].kv,
                                        .all_logits = g[i].ref->prompt_logprobs != NULL};
        }
        if (!v->failed && model_forward(m, kv, seqs, count, logits, &err))
            VERDICT_FAIL(v, "%s prefill: %s", what, err.msg);
        const float *row = logits;
        for (int i = first; i < first + count && !v->failed; i++) {
            if (seqs[i - first].all_logits) {
                prompt_logprobs_check(g[i].ref, row, n_vocab, what, v);
                row += (size_t)(g[i].ref->n_ids - 1) * n_vocab;
            }
            gen_check(&g[i], row, n_vocab, what, v);
            row += n_vocab;
        }
        for (int step = 1; step < rc->n_new && !v->failed; step++) {
            for (int i = first; i < first + count; i++)
                seqs[i - first] = (fwd_seq){.tokens = &g[i].next, .n_new = 1, .kv = &g[i].kv};
            if (model_forward(m, kv, seqs, count, logits, &err)) {
                VERDICT_FAIL(v, "%s decode: %s", what, err.msg);
                break;
            }
            for (int i = first; i < first + count; i++)
                gen_check(&g[i], logits + (size_t)(i - first) * n_vocab, n_vocab, what, v);
        }
        for (int i = first; i < first + count; i++) {
            if (!v->failed && g[i].kv.n_tokens != g[i].ref->n_ids + rc->n_new - 1)
                VERDICT_FAIL(v, "%s: %d tokens cached, expected %d", what, g[i].kv.n_tokens,
                             g[i].ref->n_ids + rc->n_new - 1);
            gen_finish(&g[i], rc->n_new, what, v);
            kv_seq_release(kv, &g[i].kv);
        }
    }
    if (!v->failed && kv_cache_free_blocks(kv) != kv->n_blocks)
        VERDICT_FAIL(v, "%s: KV blocks leaked", what);
    free(logits);
}

// Loads the case on this rank and runs the single and batched generations.
static void run_rank(const ref_case *rc, backend *be, int rank, int world, comm *c, verdict *v) {
    fl_error err = {0};
    model_options opt = {
        .rank = rank, .world = world, .comm = c, .rope_override = rc->has_rope ? &rc->rope : NULL};
    model *m = NULL;
    kv_cache *kv = NULL;
    int n_blocks = 0;
    for (int i = 0; i < rc->n_prompts; i++)
        n_blocks += (rc->prompts[i].n_ids + rc->n_new + KV_BLOCK_SIZE - 1) / KV_BLOCK_SIZE;
    if (model_load(rc->dir, &opt, be, &m, &err))
        VERDICT_FAIL(v, "model_load: %s", err.msg);
    else if (model_kv_cache_create(m, n_blocks, &kv, &err))
        VERDICT_FAIL(v, "kv cache: %s", err.msg);
    else if (rc->has_rope && model_get_config(m)->rope.theta != rc->rope_theta)
        VERDICT_FAIL(v, "rope theta %g, the reference used %g", model_get_config(m)->rope.theta,
                     rc->rope_theta);
    if (!v->failed) generate(m, kv, rc, 0, v);
    if (!v->failed) generate(m, kv, rc, 1, v);
    kv_cache_free(kv);
    model_free(m);
}

static backend *cpu_backend(int n_threads, verdict *v) {
    fl_error err = {0};
    backend *be = backend_cpu_create(n_threads, &err);
    if (!be) VERDICT_FAIL(v, "cpu backend: %s", err.msg);
    return be;
}

static ref_case *case_or_skip(const char *name) {
    ref_case *rc = calloc(1, sizeof *rc);
    if (!ref_case_load(name, rc)) {
        print_message("skipping %s: fixture directory %s is missing\n", name, rc->dir);
        free(rc);
        skip();
    }
    return rc;
}

static void test_case(void **state) {
    const char *name = *state;
    ref_case *rc = case_or_skip(name);
    verdict v = {0};
    max_logprob_diff = 0;
    cur = PARITY_CPU;
    backend *be = cpu_backend(2, &v);
    if (be) {
        run_rank(rc, be, 0, 1, NULL, &v);
        be->free(be);
    }
    if (v.failed) fail_msg("%s: %s", name, v.msg);
    print_message("%s: max |logprob - HF| %.2e\n", name, max_logprob_diff);
    ref_case_free(rc);
    free(rc);
}

// Tensor parallel over two processes (shared-memory comm): every rank gets the full logits.
static void test_case_tp2(void **state) {
    const char *name = *state;
    ref_case *rc = case_or_skip(name);
    char id[128];
    snprintf(id, sizeof id, "golden-%d-%s", (int)getpid(), name);
    fflush(NULL);
    pid_t child = fork();
    assert_true(child >= 0);
    int rank = child == 0 ? 1 : 0;
    verdict v = {0};
    comm *c = NULL;
    fl_error err = {0};
    cur = PARITY_CPU;
    backend *be = cpu_backend(1, &v);
    if (be && comm_create(be, rank, 2, id, NULL, 30000, &c, &err))
        VERDICT_FAIL(&v, "comm rank %d: %s", rank, err.msg);
    else if (be)
        run_rank(rc, be, rank, 2, c, &v);
    if (be) be->free(be);
    if (c) comm_free(c);
    if (child == 0) {
        if (v.failed) fprintf(stderr, "rank 1: %s\n", v.msg);
        _exit(v.failed ? 1 : 0);
    }
    int status = 0;
    assert_int_equal(waitpid(child, &status, 0), child);
    if (v.failed) fail_msg("%s rank 0: %s", name, v.msg);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ref_case_free(rc);
    free(rc);
}

// The CUDA backend against HF, teacher-forced (main runs these only with --gpu, on a GPU).
static void test_case_cuda(void **state) {
    const char *name = *state;
    ref_case *rc = case_or_skip(name);
    fl_error err = {0};
    backend *be = backend_cuda_create(0, &err);
    if (!be) fail_msg("%s: CUDA backend: %s", name, err.msg);
    verdict v = {0};
    max_logprob_diff = 0;
    argmax_mismatches = 0;
    cur = PARITY_CUDA;
    run_rank(rc, be, 0, 1, NULL, &v);
    be->free(be);
    if (v.failed) fail_msg("%s cuda: %s", name, v.msg);
    print_message("%s cuda: max |logprob - HF| %.2e, argmax differs from HF at %d steps\n", name,
                  max_logprob_diff, argmax_mismatches);
    ref_case_free(rc);
    free(rc);
}

#define GOLDEN_CASE(name)                                                                          \
    { name, test_case, NULL, NULL, (void *)name }
#define GOLDEN_CASE_TP2(name)                                                                      \
    { name " tp2", test_case_tp2, NULL, NULL, (void *)name }

#define GOLDEN_CASE_CUDA(name)                                                                     \
    { name " cuda", test_case_cuda, NULL, NULL, (void *)name }

// Plain: the CPU cases. --gpu: the CUDA cases (exits 77, skipped, without a GPU).
int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--gpu")) {
        gpu_probe_require("test_golden_forward --gpu", 1);
        const struct CMUnitTest gpu_tests[] = {
            GOLDEN_CASE_CUDA("falcon40b_gqa_fp32"),
            GOLDEN_CASE_CUDA("falcon7b_mqa_fp32"),
            GOLDEN_CASE_CUDA("falcon40b_gptq_actorder"),
            GOLDEN_CASE_CUDA("falcon40b_ntk_falconlite"),
            GOLDEN_CASE_CUDA("llama_gqa_fp32"),
        };
        return cmocka_run_group_tests(gpu_tests, NULL, NULL);
    }
    const struct CMUnitTest tests[] = {
        GOLDEN_CASE("falcon40b_gqa_fp32"),
        GOLDEN_CASE("falcon7b_mqa_fp32"),
        GOLDEN_CASE("falcon40b_gptq_actorder"),
        GOLDEN_CASE("falcon40b_ntk_falconlite"),
        GOLDEN_CASE("llama_gqa_fp32"),
        // falcon7b_mqa_fp32 has one KV head: it cannot be split over two ranks.
        GOLDEN_CASE_TP2("falcon40b_gqa_fp32"),
        GOLDEN_CASE_TP2("falcon40b_gptq_actorder"),
        GOLDEN_CASE_TP2("falcon40b_ntk_falconlite"),
        GOLDEN_CASE_TP2("llama_gqa_fp32"),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
