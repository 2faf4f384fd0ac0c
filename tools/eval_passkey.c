// Pass-key retrieval as landmark-attention's llama/run_test.py builds it: a task line, filler
// sentences split at a random point around "The pass key is K. Remember it. K is the pass key.",
// then "What is the pass key? The pass key is"; raw prompt, greedy, 10 new tokens, scored by the
// first number in the answer. Upstream sizes the filler in characters; here the character count
// is fitted per length so the prompt has about the requested number of tokens. Python's random
// is not reproduced: keys and split points come from a seeded splitmix64.
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/cli_common.h"
#include "common/rng.h"
#include "tools/eval.h"

#define GARBAGE_REPEATS 2000 // upstream: " ".join([garbage] * 2000)
#define FIT_ROUNDS      4

static const char task[] =
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize "
    "them. I will quiz you about the important information there.";
static const char garbage[] =
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
static const char question[] = "What is the pass key? The pass key is";

// "\n".join([task, garbage_inf[:prefix], info, garbage_inf[:n - prefix], question]).
static char *prompt_build(const char *garbage_inf, size_t n_garbage, size_t prefix, int key) {
    char info[128];
    snprintf(info, sizeof info, "The pass key is %d. Remember it. %d is the pass key.", key, key);
    size_t cap = sizeof task + n_garbage + strlen(info) + sizeof question + 8;
    char *p = malloc(cap);
    if (p)
        snprintf(p, cap, "%s\n%.*s\n%s\n%.*s\n%s", task, (int)prefix, garbage_inf, info,
                 (int)(n_garbage - prefix), garbage_inf, question);
    return p;
}

static fl_code count_tokens(eval_engine *e, const char *text, int *n, fl_error *err) {
    int32_t *ids = NULL;
    fl_code rc = tokenizer_encode(e->tok, text, strlen(text), &ids, n, err);
    free(ids);
    return rc;
}

// Filler characters giving a prompt of about `target` tokens.
static fl_code garbage_fit(eval_engine *e, const char *garbage_inf, size_t max_chars, int target,
                           size_t *n_garbage, fl_error *err) {
    char *p = prompt_build(garbage_inf, 0, 0, 12345);
    int base, n;
    fl_code rc = p ? count_tokens(e, p, &base, err) : fl_error_set(err, FL_ENOMEM, "out of memory");
    free(p);
    if (rc) return rc;
    double chars = (target - base) * 4.0; // first guess: 4 characters per token
    for (int round = 0; round < FIT_ROUNDS; round++) {
        if (chars < 0) chars = 0;
        if (chars > (double)max_chars) chars = (double)max_chars;
        *n_garbage = (size_t)chars;
        if (!(p = prompt_build(garbage_inf, *n_garbage, *n_garbage / 2, 12345)))
            return fl_error_set(err, FL_ENOMEM, "out of memory");
        rc = count_tokens(e, p, &n, err);
        free(p);
        if (rc) return rc;
        if (n == base || n == target) break;
        chars *= (double)(target - base) / (n - base);
    }
    return FL_OK;
}

static fl_code lengths_parse(const char *s, int32_t **out, int *n, fl_error *err) {
    int32_t *ids = NULL;
    fl_code rc = cli_ids_parse(s, &ids, n, err);
    if (rc) return fl_error_wrap(err, "--lengths");
    for (int i = 0; i < *n; i++)
        if (ids[i] < 64) {
            rc = fl_error_set(err, FL_EINVAL, "--lengths: %d is too short (>= 64 tokens)", ids[i]);
            free(ids);
            return rc;
        }
    *out = ids;
    return FL_OK;
}

fl_code eval_passkey(const eval_opts *o, eval_engine *e, const char *lengths, fl_error *err) {
    int32_t *lens = NULL;
    int n_lens = 0;
    fl_code rc = lengths_parse(lengths, &lens, &n_lens, err);
    if (rc) return rc;
    size_t glen = sizeof garbage; // garbage + " " per repeat
    size_t max_chars = GARBAGE_REPEATS * glen - 1;
    char *garbage_inf = malloc(max_chars + 1);
    if (!garbage_inf) {
        free(lens);
        return fl_error_set(err, FL_ENOMEM, "out of memory");
    }
    for (int i = 0; i < GARBAGE_REPEATS; i++) {
        memcpy(garbage_inf + i * glen, garbage, glen - 1);
        garbage_inf[i * glen + glen - 1] = ' ';
    }
    garbage_inf[max_chars] = 0;
    cJSON *summary = eval_summary_create(o, "passkey");
    cJSON *cells = cJSON_AddArrayToObject(summary, "lengths");
    uint64_t rng = o->seed;
    for (int li = 0; !rc && li < n_lens; li++) {
        size_t n_garbage;
        int correct = 0;
        double tokens = 0;
        if ((rc = garbage_fit(e, garbage_inf, max_chars, lens[li], &n_garbage, err))) break;
        for (int s = 0; !rc && s < o->samples; s++) {
            int key = 1 + (int)(splitmix64_next(&rng) % 50000);
            size_t prefix = (size_t)(splitmix64_next(&rng) % (n_garbage + 1));
            char *raw = prompt_build(garbage_inf, n_garbage, prefix, key), *p = NULL;
            char *answer = NULL;
            int32_t *ids = NULL;
            int n_ids = 0;
            rc = raw ? chat_template_apply(o->tmpl, NULL, raw, &p, err)
                     : fl_error_set(err, FL_ENOMEM, "out of memory");
            if (!rc) rc = tokenizer_encode(e->tok, p, strlen(p), &ids, &n_ids, err);
            if (!rc) rc = eval_generate(e, ids, n_ids, o->max_new, &answer, err);
            if (!rc) {
                long got = eval_find_number(answer, 0);
                correct += got == key;
                tokens += n_ids;
                if (o->verbose)
                    fprintf(stderr, "passkey %d: sample %d: %d tokens, key %d at %.0f%%, %s: %s\n",
                            lens[li], s, n_ids, key, 100.0 * prefix / (n_garbage ? n_garbage : 1),
                            got == key ? "correct" : "WRONG", answer);
            }
            free(answer);
            free(ids);
            free(p);
            free(raw);
        }
        if (rc) break;
        cJSON *c = cJSON_CreateObject();
        cJSON_AddNumberToObject(c, "target_tokens", lens[li]);
        cJSON_AddNumberToObject(c, "mean_prompt_tokens", tokens / o->samples);
        cJSON_AddNumberToObject(c, "filler_chars", (double)n_garbage);
        cJSON_AddNumberToObject(c, "correct", correct);
        cJSON_AddNumberToObject(c, "accuracy", (double)correct / o->samples);
        cJSON_AddItemToArray(cells, c);
    }
    if (!rc)
        cli_json_print(summary);
    else
        cJSON_Delete(summary);
    free(garbage_inf);
    free(lens);
    return rc;
}
