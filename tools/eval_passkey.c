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

// Filler characters giving a prompt of about `target` tokens.
static fl_code garbage_fit(eval_target *t, const char *garbage_inf, size_t max_chars, int target,
                           size_t *n_garbage, fl_error *err) {
    char *p = prompt_build(garbage_inf, 0, 0, 12345);
    int base, n;
    fl_code rc = p ? t->count_tokens(t, p, &base, err) : fl_error_set(err, FL_ENOMEM, "out of memory");
    free(p);
    if (rc) return rc;
    double chars = (target - base) * 4.0; // first guess: 4 characters per token
    for (int round = 0; round < FIT_ROUNDS; round++) {
        if (chars < 0) chars = 0;
        if (chars > (double)max_chars) chars = (double)max_chars;
        *n_garbage = (size_t)chars;
        if (!(p = prompt_build(garbage_inf, *n_garbage, *n_garbage / 2, 12345)))
            return fl_error_set(err, FL_ENOMEM, "out of memory");
        rc = t->count_tokens(t, p, &n, err);
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

fl_code eval_passkey(const eval_opts *o, eval_target *t, const char *lengths, fl_error *err) {
    int32_t *lens = NULL;
    int n_lens = 0;
    fl_code rc = lengths_parse(lengths, &lens, &n_lens, err);
    if (rc) return rc;
    size_t glen = sizeof garbage; // garbage + " " per repeat
    size_t max_chars = GARBAGE_REPEATS * glen - 1;
    char *garbage_inf = malloc(max_chars + 1);
    static const char *const rows[] = {"Pass key Retrieval"};
    eval_report *rep = eval_report_create(o, "passkey", 1, rows);
    if (!garbage_inf || !rep) {
        free(garbage_inf);
        free(lens);
        eval_report_free(rep);
        return fl_error_set(err, FL_ENOMEM, "out of memory");
    }
    for (int i = 0; i < GARBAGE_REPEATS; i++) {
        memcpy(garbage_inf + i * glen, garbage, glen - 1);
        garbage_inf[i * glen + glen - 1] = ' ';
    }
    garbage_inf[max_chars] = 0;
    eval_progress *prog = eval_progress_create("passkey", n_lens * o->limit);
    uint64_t rng = o->seed;
    for (int li = 0; !rc && li < n_lens; li++) {
        size_t n_garbage;
        char source[32];
        snprintf(source, sizeof source, "%d", lens[li]);
        if ((rc = garbage_fit(t, garbage_inf, max_chars, lens[li], &n_garbage, err))) break;
        for (int s = 0; !rc && s < o->limit; s++) {
            int key = 1 + (int)(splitmix64_next(&rng) % 50000);
            size_t prefix = (size_t)(splitmix64_next(&rng) % (n_garbage + 1));
            char *raw = prompt_build(garbage_inf, n_garbage, prefix, key), *p = NULL;
            char *answer = NULL;
            int n_ids = 0;
            rc = raw ? chat_template_apply(o->tmpl, NULL, raw, &p, err)
                     : fl_error_set(err, FL_ENOMEM, "out of memory");
            if (!rc) rc = t->generate(t, p, o->max_new, &answer, &n_ids, err);
            if (!rc) {
                int ok = eval_find_number(answer, 0) == key;
                eval_report_add(rep, eval_report_column_for(rep, source, lens[li], n_ids), n_ids,
                                &ok);
                eval_progress_step(prog, o->verbose,
                                   "length %d sample %d: %d tokens, key %d at %.0f%%, %s%s%s",
                                   lens[li], s, n_ids, key,
                                   100.0 * prefix / (n_garbage ? n_garbage : 1),
                                   ok ? "correct" : "WRONG", o->verbose ? ": " : "",
                                   o->verbose ? answer : "");
            }
            free(answer);
            free(p);
            free(raw);
        }
    }
    if (!rc) eval_report_print(rep, t);
    eval_progress_free(prog);
    eval_report_free(rep);
    free(garbage_inf);
    free(lens);
    return rc;
}
