// eval_report: accuracy per row (scoring method) and column (length bucket), with the measured
// prompt lengths per column, printed in the model card's layout:
//   | Task | 2,851-2,990 tokens (5_topics) | ... |
//   | Topic Retrieval | 100% (5/5) | ... |
// or as one JSON object (--json). Also the stderr progress display.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/cli_common.h"
#include "tools/eval.h"

#define REPORT_MAX_COLS 64
#define REPORT_MAX_ROWS 4

typedef struct report_col {
    char label[96];
    int target_tokens;
    int items;
    int correct[REPORT_MAX_ROWS];
    int tok_min, tok_max;
    double tok_sum;
} report_col;

struct eval_report {
    const eval_opts *o;
    char suite[16];
    int n_rows;
    const char *rows[REPORT_MAX_ROWS];
    report_col cols[REPORT_MAX_COLS];
    int n_cols;
    char note[512];
};

eval_report *eval_report_create(const eval_opts *o, const char *suite, int n_rows,
                                const char *const *row_names) {
    eval_report *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->o = o;
    snprintf(r->suite, sizeof r->suite, "%s", suite);
    r->n_rows = n_rows < REPORT_MAX_ROWS ? n_rows : REPORT_MAX_ROWS;
    for (int i = 0; i < r->n_rows; i++)
        r->rows[i] = row_names[i];
    for (int i = 0; i < o->n_ranges; i++) { // the --buckets columns, in order, even when empty
        char label[64];
        snprintf(label, sizeof label, "%d-%d", o->ranges[i].lo, o->ranges[i].hi);
        eval_report_column(r, label, 0);
    }
    return r;
}

void eval_report_free(eval_report *r) { free(r); }

int eval_report_column(eval_report *r, const char *label, int target_tokens) {
    for (int i = 0; i < r->n_cols; i++)
        if (!strcmp(r->cols[i].label, label)) return i;
    if (r->n_cols == REPORT_MAX_COLS) return REPORT_MAX_COLS - 1; // fold the excess into the last
    report_col *c = &r->cols[r->n_cols];
    snprintf(c->label, sizeof c->label, "%s", label);
    c->target_tokens = target_tokens;
    return r->n_cols++;
}

int eval_report_column_for(eval_report *r, const char *source, int target_tokens, int tokens) {
    if (!r->o->n_ranges) return eval_report_column(r, source, target_tokens);
    int i = eval_range_find(r->o->ranges, r->o->n_ranges, tokens);
    return i >= 0 ? i : eval_report_column(r, "other", 0);
}

void eval_report_add(eval_report *r, int col, int tokens, const int *ok) {
    report_col *c = &r->cols[col];
    if (!c->items || tokens < c->tok_min) c->tok_min = tokens;
    if (!c->items || tokens > c->tok_max) c->tok_max = tokens;
    c->tok_sum += tokens;
    c->items++;
    for (int i = 0; i < r->n_rows; i++)
        c->correct[i] += ok[i] != 0;
}

void eval_report_note(eval_report *r, const char *note) {
    snprintf(r->note, sizeof r->note, "%s", note);
}

static void print_json(eval_report *r, eval_target *t) {
    const eval_opts *o = r->o;
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "suite", r->suite);
    t->describe(t, s);
    cJSON_AddStringToObject(s, "template", o->tmpl_name ? o->tmpl_name : "none");
    cJSON_AddNumberToObject(s, "limit", o->limit);
    if (o->seed_given || !strcmp(r->suite, "passkey"))
        cJSON_AddNumberToObject(s, "seed", (double)o->seed);
    else
        cJSON_AddNullToObject(s, "seed");
    if (strcmp(r->suite, "quality")) cJSON_AddNumberToObject(s, "max_new_tokens", o->max_new);
    cJSON *buckets = cJSON_AddArrayToObject(s, "buckets");
    int items = 0, correct = 0;
    for (int i = 0; i < r->n_cols; i++) {
        const report_col *c = &r->cols[i];
        cJSON *b = cJSON_CreateObject();
        cJSON_AddStringToObject(b, "label", c->label);
        if (c->target_tokens > 0) cJSON_AddNumberToObject(b, "target_tokens", c->target_tokens);
        cJSON_AddNumberToObject(b, "items", c->items);
        cJSON *tk = cJSON_AddObjectToObject(b, "tokens");
        cJSON_AddNumberToObject(tk, "min", c->tok_min);
        cJSON_AddNumberToObject(tk, "max", c->tok_max);
        cJSON_AddNumberToObject(tk, "mean", c->items ? c->tok_sum / c->items : 0);
        cJSON *rows = cJSON_AddObjectToObject(b, "accuracy");
        for (int k = 0; k < r->n_rows; k++)
            cJSON_AddNumberToObject(rows, r->rows[k],
                                    c->items ? (double)c->correct[k] / c->items : 0);
        cJSON *cor = cJSON_AddObjectToObject(b, "correct");
        for (int k = 0; k < r->n_rows; k++)
            cJSON_AddNumberToObject(cor, r->rows[k], c->correct[k]);
        cJSON_AddItemToArray(buckets, b);
        // Quality's "hard" column repeats items of "all": the totals count the first column.
        if (strcmp(r->suite, "quality") || i == 0) {
            items += c->items;
            correct += c->correct[0];
        }
    }
    cJSON_AddNumberToObject(s, "items", items);
    cJSON_AddNumberToObject(s, "correct", correct);
    cJSON_AddNumberToObject(s, "accuracy", items ? (double)correct / items : 0);
    if (r->note[0]) cJSON_AddStringToObject(s, "note", r->note);
    cli_json_print(s);
}

// 12345 -> "12,345"
static void fmt_int(char *buf, size_t cap, int v) {
    char raw[32];
    int n = snprintf(raw, sizeof raw, "%d", v), o = 0;
    for (int i = 0; i < n && o + 2 < (int)cap; i++) {
        if (i && (n - i) % 3 == 0 && raw[i - 1] != '-') buf[o++] = ',';
        buf[o++] = raw[i];
    }
    buf[o] = 0;
}

void eval_report_print(eval_report *r, eval_target *t) {
    if (r->o->json) {
        print_json(r, t);
        return;
    }
    const eval_opts *o = r->o;
    printf("falconlite eval %s: %s %s, template %s, greedy, up to %d %s\n\n", r->suite,
           o->server ? "server" : "model", o->server ? o->server : o->dir,
           o->tmpl_name ? o->tmpl_name : "none", o->limit,
           !strcmp(r->suite, "quality") ? "questions" : "items per bucket");
    printf("| Task |");
    for (int i = 0; i < r->n_cols; i++) {
        const report_col *c = &r->cols[i];
        char lo[32], hi[32];
        fmt_int(lo, sizeof lo, c->tok_min);
        fmt_int(hi, sizeof hi, c->tok_max);
        if (!c->items)
            printf(" %s (no items) |", c->label);
        else if (c->tok_min == c->tok_max)
            printf(" %s tokens (%s) |", lo, c->label);
        else
            printf(" %s-%s tokens (%s) |", lo, hi, c->label);
    }
    printf("\n|---|");
    for (int i = 0; i < r->n_cols; i++)
        printf("---|");
    printf("\n");
    for (int k = 0; k < r->n_rows; k++) {
        printf("| %s |", r->rows[k]);
        for (int i = 0; i < r->n_cols; i++) {
            const report_col *c = &r->cols[i];
            if (c->items)
                printf(" %.1f%% (%d/%d) |", 100.0 * c->correct[k] / c->items, c->correct[k],
                       c->items);
            else
                printf(" - |");
        }
        printf("\n");
    }
    if (r->note[0]) printf("\n%s\n", r->note);
}

struct eval_progress {
    char suite[16];
    int total, done, tty;
};

eval_progress *eval_progress_create(const char *suite, int total) {
    eval_progress *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    snprintf(p->suite, sizeof p->suite, "%s", suite);
    p->total = total;
    p->tty = isatty(STDERR_FILENO);
    return p;
}

void eval_progress_step(eval_progress *p, int verbose, const char *fmt, ...) {
    if (!p) return;
    p->done++;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (!p->tty || verbose) {
        if (p->tty) fputs("\r\033[K", stderr);
        fprintf(stderr, "eval %s: %d/%d: %s\n", p->suite, p->done, p->total, line);
    }
    if (p->tty) {
        enum { WIDTH = 30 };
        int fill = p->total ? p->done * WIDTH / p->total : WIDTH;
        char bar[WIDTH + 1];
        for (int i = 0; i < WIDTH; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[WIDTH] = 0;
        fprintf(stderr, "\r\033[Keval %s [%s] %d/%d", p->suite, bar, p->done, p->total);
        if (p->done == p->total) fputc('\n', stderr);
    }
    fflush(stderr);
}

void eval_progress_free(eval_progress *p) { free(p); }
