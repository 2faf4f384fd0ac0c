// Shared machinery of `falconlite eval`: one model loaded with a chosen rotary scaling, greedy
// generation and prompt log-likelihoods on it, a prompt template (common/chat_template.h) and
// answer extraction. Each suite (tools/eval_passkey.c, eval_lines.c, eval_ppl.c) prints one JSON
// summary line. The engine side lives in tools/eval_engine.c, the command in tools/cmd_eval.c.
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

typedef struct eval_opts {
    const char *dir, *backend;
    int threads;
    const rope_overrides *rope_override; // --rope-* flags and environment; NULL: config.json's
    rope_config rope;                    // effective rotary scaling (set once the model is loaded)
    const chat_template *tmpl;           // wraps each prompt ("none": the prompt as is)
    const char *tmpl_name;               // --template's value; "auto:<kind>" for the model's own
    int samples;
    uint64_t seed;
    int max_new;
    int verbose; // one stderr line per sample
} eval_opts;

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
// Sum of -log p(ids[i] | ids[<i]) for i in [1, n) in one prefill.
fl_code eval_prompt_nll(eval_engine *e, const int32_t *ids, int n, double *nll, fl_error *err);

// The first (last = 0) or last number (a run of ASCII digits) in text; -1 when there is none.
long eval_find_number(const char *text, int last);

// A summary object holding the common fields (suite, model, rope, template) for the suite to
// complete and print.
cJSON *eval_summary_create(const eval_opts *o, const char *suite);

fl_code eval_passkey(const eval_opts *o, eval_engine *e, const char *lengths, fl_error *err);
fl_code eval_lines(const eval_opts *o, eval_engine *e, const char *file, fl_error *err);
fl_code eval_ppl(const eval_opts *o, eval_engine *e, const char *file, int ctx, int max_tokens,
                 fl_error *err);
