// Shared machinery of `falconlite eval`. Every task (passkey, lines, topics, quality) runs against
// an eval_target: the local engine (--model DIR, tools/eval_target_local.c) or a TGI-compatible
// server (--server URL, tools/eval_target_server.c), both answering the same three questions
// (greedy generation, prompt log-probabilities, token counts). Results go into an eval_report
// (tools/eval_report.c) printed as the model card's table or as JSON. Perplexity (ppl) scores
// token windows and needs the local engine.
#pragma once
#include <cjson/cJSON.h>
#include <stdint.h>

#include "common/chat_template.h"
#include "common/model_config.h"
#include "common/status.h"
#include "common/tokenizer.h"
#include "kernels/backend.h"
#include "shard/engine/kv_cache.h"
#include "shard/engine/model.h"
#include "tools/eval_score.h"

#define EVAL_MAX_RANGES 16

typedef struct eval_opts {
    const char *dir, *backend; // local engine (dir NULL with --server)
    const char *server;        // --server URL (NULL: local)
    int threads;
    const rope_overrides *rope_override; // --rope-* flags and environment; NULL: config.json's
    quant_overrides gptq;                // GPTQ_BITS / GPTQ_GROUPSIZE (0: not given)
    rope_config rope;          // effective rotary scaling (set once the model is loaded)
    const chat_template *tmpl; // wraps each prompt ("none": the prompt as is)
    const char *tmpl_name;     // --template's value; "auto:<kind>" for the model's own
    int limit;                 // items per bucket (passkey, lines, topics) or questions (quality)
    uint64_t seed;
    int seed_given; // data tasks: a seeded shuffle picks the records (else the first ones)
    int max_new;
    int verbose;     // answers on the per-item lines
    int json;        // print JSON instead of the table
    eval_range ranges[EVAL_MAX_RANGES]; // --buckets (n_ranges 0: one bucket per file / length)
    int n_ranges;
} eval_opts;

// ---- the local engine -------------------------------------------------------------------------
typedef struct eval_engine {
    backend *be;
    model *m;
    tokenizer *tok;
    kv_cache *kv; // grown on demand
    int kv_tokens;
    int32_t eos;
} eval_engine;

fl_code eval_engine_open(const eval_opts *o, eval_engine *e, fl_error *err);
void eval_engine_close(eval_engine *e);
// Greedy generation (stops at EOS or after max_new tokens) from a token prompt; *text is the
// decoded continuation without special tokens (malloc'd).
fl_code eval_generate(eval_engine *e, const int32_t *ids, int n_ids, int max_new, char **text,
                      fl_error *err);
// log p(ids[i] | ids[<i]) for i in [0, n) in one prefill into lp[n] (lp[0] = NaN).
fl_code eval_prompt_logprobs(eval_engine *e, const int32_t *ids, int n, float *lp, fl_error *err);

// ---- what a task runs against ---------------------------------------------------------------
typedef struct eval_target eval_target;
struct eval_target {
    // Greedy generation of at most max_new tokens from a text prompt: *text (malloc'd) and the
    // prompt's length in tokens as the target tokenizes it.
    fl_code (*generate)(eval_target *t, const char *prompt, int max_new, char **text,
                        int *n_prompt, fl_error *err);
    // The prompt's per-token logprobs *lp[*n] (malloc'd; (*lp)[0] is NaN: nothing precedes it).
    fl_code (*prompt_logprobs)(eval_target *t, const char *prompt, float **lp, int *n,
                               fl_error *err);
    fl_code (*count_tokens)(eval_target *t, const char *text, int *n, fl_error *err);
    // Adds the target's description ("target": {...}) to a JSON report.
    void (*describe)(eval_target *t, cJSON *report);
    void (*free)(eval_target *t);
    eval_engine *engine; // the local engine (NULL for a server)
};

fl_code eval_target_local_create(const eval_opts *o, eval_target **out, fl_error *err);
fl_code eval_target_server_create(const char *url, int timeout_s, eval_target **out,
                                  fl_error *err);
void eval_target_free(eval_target *t);

// ---- results ------------------------------------------------------------------------------------
// Rows (scoring methods, e.g. "Pass key Retrieval", or QuALITY by sum and by mean) x columns
// (length buckets, or QuALITY's all / hard); each cell counts items and correct answers, and each
// column records the measured prompt lengths of its items.
typedef struct eval_report eval_report;
eval_report *eval_report_create(const eval_opts *o, const char *suite, int n_rows,
                                const char *const *row_names);
void eval_report_free(eval_report *r);
// The column named label (created on first use); target_tokens > 0 is recorded with it.
int eval_report_column(eval_report *r, const char *label, int target_tokens);
// The column of an item of `tokens` prompt tokens from `source` (file or length label): its
// --buckets range ("other" outside them) or, without --buckets, the source's own column.
int eval_report_column_for(eval_report *r, const char *source, int target_tokens, int tokens);
// One item in column col with ok[n_rows] (1 correct).
void eval_report_add(eval_report *r, int col, int tokens, const int *ok);
// A line under the table (and "note" in JSON).
void eval_report_note(eval_report *r, const char *note);
// Prints the table (or JSON with --json) to stdout, the target described in it.
void eval_report_print(eval_report *r, eval_target *t);

// Progress on stderr: a bar redrawn in place on a terminal, else one plain line per item.
typedef struct eval_progress eval_progress;
eval_progress *eval_progress_create(const char *suite, int total);
// Marks one item done; line describes it (shown on a plain stderr, or with --verbose).
void eval_progress_step(eval_progress *p, int verbose, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void eval_progress_free(eval_progress *p);

// ---- tasks --------------------------------------------------------------------------------------
fl_code eval_passkey(const eval_opts *o, eval_target *t, const char *lengths, fl_error *err);
// LongEval line (kind "lines") or topic retrieval (kind "topics") over files or a directory.
fl_code eval_longeval(const eval_opts *o, eval_target *t, const char *kind, const char *data,
                      fl_error *err);
fl_code eval_quality(const eval_opts *o, eval_target *t, const char *data, fl_error *err);
fl_code eval_ppl(const eval_opts *o, eval_engine *e, const char *file, int ctx, int max_tokens,
                 fl_error *err);
