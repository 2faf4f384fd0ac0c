// LongChat's LongEval on its released JSONL test cases: line retrieval (*_lines.jsonl: `prompt`,
// `expected_number`; scored as upstream: the LAST number in the answer must equal it) and topic
// retrieval (*_topics.jsonl: `prompt`, `topics`; the label is the first topic). Upstream graded
// topic answers by hand or with gpt-3.5-turbo; here the score is an automatic match of the
// normalised first topic in the normalised answer (tools/eval_score.h), so paraphrases count as
// wrong. Each prompt is wrapped in the chat template (LongChat's harness wraps it in a
// conversation template); greedy decoding. --data is a file, a comma-separated list of files or
// a directory (its *.jsonl files in numeric order: 5_topics before 10_topics); each file is one
// column of the table unless --buckets sets token ranges.
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json_util.h"
#include "common/rng.h"
#include "tools/eval.h"

#define MAX_FILES 64

typedef struct longeval_file {
    char *path;
    char source[64]; // the file name without .jsonl: the column label
    char *data;      // the file's text; records point into it
    char **records;  // the selected records (lines), in run order
    int n_records;
} longeval_file;

static int name_cmp(const void *a, const void *b) {
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    const char *bx = strrchr(x, '/'), *by = strrchr(y, '/');
    bx = bx ? bx + 1 : x;
    by = by ? by + 1 : y;
    long nx = strtol(bx, NULL, 10), ny = strtol(by, NULL, 10);
    return nx != ny ? (nx > ny) - (nx < ny) : strcmp(bx, by);
}

// The files named by --data: paths[*n] (malloc'd strings).
static fl_code data_paths(const char *data, char **paths, int *n, fl_error *err) {
    *n = 0;
    const char *p = data;
    while (*p) {
        size_t len = strcspn(p, ",");
        char *one = strndup(p, len);
        if (!one) return fl_error_set(err, FL_ENOMEM, "out of memory");
        DIR *d = opendir(one);
        if (d) {
            struct dirent *e;
            while ((e = readdir(d))) {
                size_t l = strlen(e->d_name);
                if (l < 7 || strcmp(e->d_name + l - 6, ".jsonl")) continue;
                if (*n == MAX_FILES) break;
                char *full = malloc(strlen(one) + l + 2);
                if (!full) break;
                sprintf(full, "%s/%s", one, e->d_name);
                paths[(*n)++] = full;
            }
            closedir(d);
            free(one);
        } else if (*n < MAX_FILES) {
            paths[(*n)++] = one;
        } else {
            free(one);
        }
        p += len + (p[len] == ',');
    }
    if (!*n) return fl_error_set(err, FL_ENOTFOUND, "--data %s: no .jsonl files", data);
    qsort(paths, *n, sizeof *paths, name_cmp);
    return FL_OK;
}

// Reads the file and picks its records: the first `limit`, or with a seed a seeded shuffle's.
static fl_code file_load(const eval_opts *o, longeval_file *f, fl_error *err) {
    size_t len;
    fl_code rc = file_read_all(f->path, &f->data, &len, err);
    if (rc) return rc;
    const char *base = strrchr(f->path, '/');
    snprintf(f->source, sizeof f->source, "%s", base ? base + 1 : f->path);
    char *dot = strstr(f->source, ".jsonl");
    if (dot) *dot = 0;
    int cap = 1;
    for (const char *c = f->data; *c; c++)
        cap += *c == '\n';
    if (!(f->records = malloc(sizeof *f->records * cap)))
        return fl_error_set(err, FL_ENOMEM, "out of memory");
    for (char *line = f->data; line && *line;) {
        char *next = strchr(line, '\n');
        if (next) *next++ = 0;
        if (*line && *line != '\r') f->records[f->n_records++] = line;
        line = next;
    }
    if (!f->n_records) return fl_error_set(err, FL_EFORMAT, "%s: no records", f->path);
    if (o->seed_given) { // Fisher-Yates with splitmix64
        uint64_t rng = o->seed;
        for (int i = f->n_records - 1; i > 0; i--) {
            int j = (int)(splitmix64_next(&rng) % (uint64_t)(i + 1));
            char *t = f->records[i];
            f->records[i] = f->records[j];
            f->records[j] = t;
        }
    }
    if (f->n_records > o->limit) f->n_records = o->limit;
    return FL_OK;
}

// Runs one record; *ok is its score. The record's position in the file is not kept after a
// shuffle: messages name the file and the test's own id.
static fl_code record_run(const eval_opts *o, eval_target *t, int lines, const longeval_file *f,
                          const char *text, eval_report *rep, eval_progress *prog,
                          fl_error *err) {
    cJSON *rec = cJSON_Parse(text);
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(rec, "prompt");
    const cJSON *expected = cJSON_GetObjectItemCaseSensitive(rec, "expected_number");
    const cJSON *topics = cJSON_GetObjectItemCaseSensitive(rec, "topics");
    const cJSON *label = cJSON_GetArrayItem(topics, 0);
    fl_code rc = FL_OK;
    if (!cJSON_IsString(prompt) || (lines && !cJSON_IsNumber(expected)) ||
        (!lines && !cJSON_IsString(label)))
        rc = fl_error_set(err, FL_EFORMAT, "%s: not a LongEval %s record (needs 'prompt' and %s)",
                          f->path, lines ? "line" : "topic",
                          lines ? "'expected_number'" : "a 'topics' list");
    char *p = NULL, *answer = NULL;
    int n_ids = 0;
    if (!rc) rc = chat_template_apply(o->tmpl, NULL, prompt->valuestring, &p, err);
    if (!rc) rc = t->generate(t, p, o->max_new, &answer, &n_ids, err);
    if (!rc) {
        int ok = lines ? eval_find_number(answer, 1) == (long)expected->valuedouble
                       : eval_topic_match(answer, label->valuestring);
        eval_report_add(rep, eval_report_column_for(rep, f->source, 0, n_ids), n_ids, &ok);
        char want[256];
        if (lines)
            snprintf(want, sizeof want, "%ld", (long)expected->valuedouble);
        else
            snprintf(want, sizeof want, "'%.200s'", label->valuestring);
        eval_progress_step(prog, o->verbose, "%s: %d tokens, expected %s, %s%s%s", f->source,
                           n_ids, want, ok ? "correct" : "WRONG", o->verbose ? ": " : "",
                           o->verbose ? answer : "");
    }
    free(answer);
    free(p);
    cJSON_Delete(rec);
    return rc;
}

fl_code eval_longeval(const eval_opts *o, eval_target *t, const char *kind, const char *data,
                      fl_error *err) {
    int lines = !strcmp(kind, "lines");
    char *paths[MAX_FILES];
    int n_files = 0;
    longeval_file files[MAX_FILES] = {{0}};
    fl_code rc = data_paths(data, paths, &n_files, err);
    int total = 0;
    for (int i = 0; !rc && i < n_files; i++) {
        files[i].path = paths[i];
        rc = file_load(o, &files[i], err);
        total += files[i].n_records;
    }
    static const char *const line_rows[] = {"Line Retrieval"};
    static const char *const topic_rows[] = {"Topic Retrieval"};
    eval_report *rep = rc ? NULL : eval_report_create(o, kind, 1, lines ? line_rows : topic_rows);
    if (!rc && !rep) rc = fl_error_set(err, FL_ENOMEM, "out of memory");
    eval_progress *prog = rc ? NULL : eval_progress_create(kind, total);
    for (int i = 0; !rc && i < n_files; i++) {
        if (!o->n_ranges) eval_report_column(rep, files[i].source, 0); // columns in file order
        for (int k = 0; !rc && k < files[i].n_records; k++)
            rc = record_run(o, t, lines, &files[i], files[i].records[k], rep, prog, err);
    }
    if (!rc) {
        if (!lines)
            eval_report_note(rep, "Topic retrieval: scored automatically (the first topic, "
                                  "normalised, must appear in the answer); the original LongEval "
                                  "suite graded these answers by hand (or with gpt-3.5-turbo), "
                                  "which also accepts paraphrases.");
        eval_report_print(rep, t);
    }
    eval_progress_free(prog);
    eval_report_free(rep);
    for (int i = 0; i < n_files; i++) {
        free(paths[i]);
        free(files[i].data);
        free(files[i].records);
    }
    return rc;
}
