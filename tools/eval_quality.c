// QuALITY (multiple-choice questions on long articles) by log-likelihood: for each question the
// context is "<article>\n\nQuestion: <question>\nAnswer:" (wrapped in the chat template, none by
// default) and each option " <option>" is scored by the logprobs of its tokens given the context
// (one prefill of context + option with prompt logprobs; the option's tokens are those after the
// context's own token count). The prediction is the option with the highest sum, and separately
// the highest mean per token; accuracy on all questions and on the HARD subset.
// Records: the released JSONL (`article`, `questions`: [{question, options, gold_label,
// difficult}]) or the raw per-writer JSONL of QuALITY's example task (`article` as HTML lines,
// questionN, questionNoptionK, questionN_gold_label, questionN_annotator_speed_answers; hard by
// the speed-validation rule, tools/eval_score.h). HTML articles are reduced to text.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json_util.h"
#include "common/rng.h"
#include "tools/eval.h"

#define N_OPTIONS 4

typedef struct quality_q {
    int article; // index into the article texts
    char *question;
    char *options[N_OPTIONS];
    int gold; // 1-based
    int hard;
} quality_q;

typedef struct quality_set {
    char **articles;
    int n_articles;
    quality_q *qs;
    int n_qs, cap_qs;
} quality_set;

static void set_free(quality_set *s) {
    for (int i = 0; i < s->n_articles; i++)
        free(s->articles[i]);
    for (int i = 0; i < s->n_qs; i++) {
        free(s->qs[i].question);
        for (int k = 0; k < N_OPTIONS; k++)
            free(s->qs[i].options[k]);
    }
    free(s->articles);
    free(s->qs);
}

// A string with surrounding white space removed (malloc'd).
static char *trimmed(const char *s) {
    while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        n--;
    return strndup(s, n);
}

// The article: a string, or a list of strings (HTML lines) joined; HTML reduced to text.
static char *article_text(const cJSON *a) {
    char *joined = NULL;
    if (cJSON_IsString(a)) {
        joined = strdup(a->valuestring);
    } else if (cJSON_IsArray(a)) {
        size_t n = 1;
        const cJSON *l;
        cJSON_ArrayForEach(l, a) n += cJSON_IsString(l) ? strlen(l->valuestring) : 0;
        if ((joined = malloc(n))) {
            joined[0] = 0;
            char *o = joined;
            cJSON_ArrayForEach(l, a) if (cJSON_IsString(l)) o = stpcpy(o, l->valuestring);
        }
    }
    if (!joined) return NULL;
    char *text = eval_html_to_text(joined);
    free(joined);
    return text;
}

static quality_q *q_push(quality_set *s) {
    if (s->n_qs == s->cap_qs) {
        int nc = s->cap_qs ? s->cap_qs * 2 : 16;
        quality_q *q = realloc(s->qs, sizeof *q * nc);
        if (!q) return NULL;
        s->qs = q;
        s->cap_qs = nc;
    }
    quality_q *q = &s->qs[s->n_qs++];
    memset(q, 0, sizeof *q);
    q->article = s->n_articles - 1;
    return q;
}

// The question's fields are all present and the label is 1..4.
static int q_complete(const quality_q *q) {
    int ok = q->question && q->gold >= 1 && q->gold <= N_OPTIONS;
    for (int k = 0; k < N_OPTIONS; k++)
        ok = ok && q->options[k];
    return ok;
}

// The released format's questions.
static int parse_released(quality_set *s, const cJSON *questions) {
    const cJSON *jq;
    cJSON_ArrayForEach(jq, questions) {
        quality_q *q = q_push(s);
        if (!q) return 0;
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(jq, "question");
        const cJSON *opts = cJSON_GetObjectItemCaseSensitive(jq, "options");
        const cJSON *gold = cJSON_GetObjectItemCaseSensitive(jq, "gold_label");
        const cJSON *diff = cJSON_GetObjectItemCaseSensitive(jq, "difficult");
        if (cJSON_IsString(t)) q->question = trimmed(t->valuestring);
        for (int k = 0; k < N_OPTIONS && cJSON_GetArraySize(opts) == N_OPTIONS; k++) {
            const cJSON *o = cJSON_GetArrayItem(opts, k);
            if (cJSON_IsString(o)) q->options[k] = trimmed(o->valuestring);
        }
        q->gold = cJSON_IsNumber(gold) ? gold->valueint : 0;
        q->hard = cJSON_IsNumber(diff) ? diff->valueint != 0 : cJSON_IsTrue(diff);
        if (!q_complete(q)) return 0;
    }
    return 1;
}

// The raw per-writer format: question1.., question1option1.., question1_gold_label, ...
static int parse_raw(quality_set *s, const cJSON *rec) {
    for (int i = 1;; i++) {
        char key[64];
        snprintf(key, sizeof key, "question%d", i);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(rec, key);
        if (!cJSON_IsString(t)) return i > 1;
        quality_q *q = q_push(s);
        if (!q) return 0;
        q->question = trimmed(t->valuestring);
        for (int k = 0; k < N_OPTIONS; k++) {
            snprintf(key, sizeof key, "question%doption%d", i, k + 1);
            const cJSON *o = cJSON_GetObjectItemCaseSensitive(rec, key);
            if (cJSON_IsString(o)) q->options[k] = trimmed(o->valuestring);
        }
        snprintf(key, sizeof key, "question%d_gold_label", i);
        const cJSON *gold = cJSON_GetObjectItemCaseSensitive(rec, key);
        q->gold = cJSON_IsNumber(gold) ? gold->valueint : 0;
        snprintf(key, sizeof key, "question%d_annotator_speed_answers", i);
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(rec, key);
        int answers[64], n = 0;
        const cJSON *a;
        cJSON_ArrayForEach(a, sp) if (cJSON_IsNumber(a) && n < 64) answers[n++] = a->valueint;
        q->hard = eval_quality_is_hard(answers, n, q->gold);
        if (!q_complete(q)) return 0;
    }
}

static fl_code set_load(const char *path, quality_set *s, fl_error *err) {
    char *data = NULL;
    size_t len;
    fl_code rc = file_read_all(path, &data, &len, err);
    if (rc) return rc;
    int lineno = 0;
    for (char *line = data; !rc && line && *line;) {
        char *next = strchr(line, '\n');
        if (next) *next++ = 0;
        lineno++;
        if (*line && *line != '\r') {
            cJSON *rec = cJSON_Parse(line);
            const cJSON *art = cJSON_GetObjectItemCaseSensitive(rec, "article");
            const cJSON *qs = cJSON_GetObjectItemCaseSensitive(rec, "questions");
            char *text = article_text(art);
            char **arts = realloc(s->articles, sizeof *arts * (s->n_articles + 1));
            if (arts) s->articles = arts;
            if (!text || !arts) {
                free(text);
                rc = fl_error_set(err, FL_EFORMAT, "%s:%d: not a QuALITY record (no 'article')",
                                  path, lineno);
            } else {
                s->articles[s->n_articles++] = text;
                int ok = cJSON_IsArray(qs) ? parse_released(s, qs) : parse_raw(s, rec);
                if (!ok)
                    rc = fl_error_set(err, FL_EFORMAT,
                                      "%s:%d: a question lacks its text, %d options or a gold "
                                      "label in 1..%d",
                                      path, lineno, N_OPTIONS, N_OPTIONS);
            }
            cJSON_Delete(rec);
        }
        line = next;
    }
    free(data);
    if (!rc && !s->n_qs) rc = fl_error_set(err, FL_EFORMAT, "%s: no questions", path);
    return rc;
}

// Scores the four options of q: ok[0] by sum, ok[1] by mean; *n_ctx the context's tokens.
static fl_code question_run(const eval_opts *o, eval_target *t, const quality_set *s,
                            const quality_q *q, int ok[2], int *n_ctx, int pred[2],
                            fl_error *err) {
    const char *art = s->articles[q->article];
    size_t ulen = strlen(art) + strlen(q->question) + 32;
    char *user = malloc(ulen), *ctx = NULL;
    if (!user) return fl_error_set(err, FL_ENOMEM, "out of memory");
    snprintf(user, ulen, "%s\n\nQuestion: %s\nAnswer:", art, q->question);
    fl_code rc = chat_template_apply(o->tmpl, NULL, user, &ctx, err);
    free(user);
    if (!rc) rc = t->count_tokens(t, ctx, n_ctx, err);
    eval_option_score sc[N_OPTIONS];
    for (int k = 0; !rc && k < N_OPTIONS; k++) {
        size_t n = strlen(ctx) + strlen(q->options[k]) + 2;
        char *full = malloc(n);
        float *lp = NULL;
        int n_tok = 0;
        if (!full) rc = fl_error_set(err, FL_ENOMEM, "out of memory");
        else
            snprintf(full, n, "%s %s", ctx, q->options[k]);
        if (!rc) rc = t->prompt_logprobs(t, full, &lp, &n_tok, err);
        if (!rc) { // at least the last token belongs to the option
            int from = *n_ctx < n_tok ? *n_ctx : n_tok - 1;
            sc[k] = eval_option_score_range(lp, from < 1 ? 1 : from, n_tok);
        }
        free(lp);
        free(full);
    }
    free(ctx);
    if (rc) return rc;
    for (int m = 0; m < 2; m++) {
        pred[m] = eval_option_best(sc, N_OPTIONS, m) + 1;
        ok[m] = pred[m] == q->gold;
    }
    return FL_OK;
}

fl_code eval_quality(const eval_opts *o, eval_target *t, const char *data, fl_error *err) {
    quality_set s = {0};
    fl_code rc = set_load(data, &s, err);
    if (rc) {
        set_free(&s);
        return rc;
    }
    int *order = malloc(sizeof *order * s.n_qs);
    if (!order) {
        set_free(&s);
        return fl_error_set(err, FL_ENOMEM, "out of memory");
    }
    for (int i = 0; i < s.n_qs; i++)
        order[i] = i;
    if (o->seed_given) {
        uint64_t rng = o->seed;
        for (int i = s.n_qs - 1; i > 0; i--) {
            int j = (int)(splitmix64_next(&rng) % (uint64_t)(i + 1)), tmp = order[i];
            order[i] = order[j];
            order[j] = tmp;
        }
    }
    int n = s.n_qs < o->limit ? s.n_qs : o->limit;
    static const char *const rows[] = {"QuALITY (option sum logprob)",
                                       "QuALITY (option mean logprob)"};
    eval_report *rep = eval_report_create(o, "quality", 2, rows);
    eval_progress *prog = eval_progress_create("quality", n);
    if (!rep) rc = fl_error_set(err, FL_ENOMEM, "out of memory");
    int all = rep ? eval_report_column(rep, "all", 0) : 0;
    int hard = rep ? eval_report_column(rep, "hard", 0) : 0;
    for (int i = 0; !rc && i < n; i++) {
        const quality_q *q = &s.qs[order[i]];
        int ok[2] = {0, 0}, n_ctx = 0, pred[2] = {0, 0};
        rc = question_run(o, t, &s, q, ok, &n_ctx, pred, err);
        if (rc) break;
        eval_report_add(rep, all, n_ctx, ok);
        if (q->hard) eval_report_add(rep, hard, n_ctx, ok);
        eval_progress_step(prog, o->verbose,
                           "question %d: %d tokens%s, gold %d, by sum %d (%s), by mean %d (%s)",
                           order[i] + 1, n_ctx, q->hard ? " (hard)" : "", q->gold, pred[0],
                           ok[0] ? "correct" : "WRONG", pred[1], ok[1] ? "correct" : "WRONG");
    }
    if (!rc) {
        eval_report_note(rep, "QuALITY: each option ranked by the log-likelihood of its tokens "
                              "after the article and question (sum, and mean per token); "
                              "columns: all questions and the HARD subset.");
        eval_report_print(rep, t);
    }
    eval_progress_free(prog);
    eval_report_free(rep);
    free(order);
    set_free(&s);
    return rc;
}
