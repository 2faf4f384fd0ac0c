// falconlite eval: quality evaluations on the local engine. Suites: passkey (landmark-attention's
// pass-key retrieval at chosen token lengths), lines (LongChat LongEval line retrieval, JSONL
// files as released), ppl (perplexity of a text file in fixed windows). One model load per run;
// the rotary scaling comes from config.json unless --rope-* flags override it.
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shard/engine/generation.h"
#include "tools/cli_args.h"
#include "tools/cli_common.h"
#include "tools/commands.h"
#include "tools/eval.h"

fl_code eval_engine_open(const eval_opts *o, eval_engine *e, fl_error *err) {
    char threads[16];
    memset(e, 0, sizeof *e);
    if (o->threads > 0) { // the CPU backend reads its worker count from here
        snprintf(threads, sizeof threads, "%d", o->threads);
        setenv("FALCONLITE_THREADS", threads, 1);
    }
    if (!(e->be = backend_create(o->backend, err))) return err ? err->code : FL_EBACKEND;
    model_options mo = {.rank = 0, .world = 1, .rope_override = o->rope_override};
    fl_code rc = model_load(o->dir, &mo, e->be, &e->m, err);
    if (!rc) rc = cli_tokenizer_load(o->dir, &e->tok, err);
    if (rc) return rc;
    e->eos = model_get_config(e->m)->eos_token_id;
    return FL_OK;
}

void eval_engine_close(eval_engine *e) {
    kv_cache_free(e->kv);
    model_free(e->m);
    if (e->be) e->be->free(e->be);
    tokenizer_free(e->tok);
    memset(e, 0, sizeof *e);
}

// A KV cache holding at least n tokens (one sequence at a time).
static fl_code kv_ensure(eval_engine *e, int n, fl_error *err) {
    if (e->kv && e->kv_tokens >= n) return FL_OK;
    kv_cache_free(e->kv);
    e->kv = NULL;
    int blocks = (n + KV_BLOCK_SIZE - 1) / KV_BLOCK_SIZE;
    fl_code rc = model_kv_cache_create(e->m, blocks, &e->kv, err);
    e->kv_tokens = rc ? 0 : blocks * KV_BLOCK_SIZE;
    return rc;
}

// Runs one request to its end.
static fl_code run_request(eval_engine *e, const int32_t *ids, int n_ids, const seq_params *gp,
                           seq_request **out, fl_error *err) {
    fl_code rc = kv_ensure(e, n_ids + gp->max_new_tokens, err);
    if (!rc) rc = seq_request_create(e->m, e->kv, 0, ids, n_ids, gp, out, err);
    while (!rc && (*out)->finish == GEN_RUNNING)
        rc = gen_batch_step(e->m, e->kv, out, 1, err);
    return rc;
}

fl_code eval_generate(eval_engine *e, const int32_t *ids, int n_ids, int max_new, char **text,
                      fl_error *err) {
    seq_params gp = {.max_new_tokens = max_new, .eos_id = e->eos};
    sampling_params_default(&gp.sampling);
    seq_request *r = NULL;
    size_t len;
    *text = NULL;
    fl_code rc = run_request(e, ids, n_ids, &gp, &r, err);
    if (!rc)
        rc = tokenizer_decode(e->tok, r->tokens + r->n_prompt, r->n_generated, 1, text, &len, err);
    if (r) seq_request_free(e->kv, r);
    return rc;
}

fl_code eval_prompt_nll(eval_engine *e, const int32_t *ids, int n, double *nll, fl_error *err) {
    seq_params gp = {.max_new_tokens = 1, .eos_id = -1, .prompt_logprobs = 1};
    sampling_params_default(&gp.sampling);
    seq_request *r = NULL;
    fl_code rc = run_request(e, ids, n, &gp, &r, err);
    *nll = 0;
    for (int i = 1; !rc && i < n; i++)
        *nll -= r->prompt_logprobs[i];
    if (r) seq_request_free(e->kv, r);
    return rc;
}

long eval_find_number(const char *text, int last) {
    long found = -1;
    for (const char *p = text; *p;) {
        if (!isdigit((unsigned char)*p)) {
            p++;
            continue;
        }
        long v = 0;
        for (; isdigit((unsigned char)*p); p++)
            v = v < 100000000 ? v * 10 + (*p - '0') : v; // answers are < 50001: no overflow
        if (!last) return v;
        found = v;
    }
    return found;
}

cJSON *eval_summary_create(const eval_opts *o, const char *suite) {
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "suite", suite);
    cJSON_AddStringToObject(s, "model", o->dir);
    cJSON *r = cJSON_AddObjectToObject(s, "rope");
    cJSON_AddStringToObject(r, "mode", rope_mode_name(o->rope.mode));
    cJSON_AddNumberToObject(r, "theta", o->rope.theta);
    if (o->rope.mode != ROPE_NONE) cJSON_AddNumberToObject(r, "threshold", o->rope.threshold);
    if (o->rope.mode == ROPE_FALCONLITE) cJSON_AddNumberToObject(r, "alpha", o->rope.alpha);
    if (o->rope.mode == ROPE_DYNAMIC || o->rope.mode == ROPE_LINEAR)
        cJSON_AddNumberToObject(r, "factor", o->rope.factor);
    cJSON_AddStringToObject(s, "template", o->tmpl_name);
    if (strcmp(suite, "ppl")) { // perplexity scores the whole text: no sampling of cases
        cJSON_AddNumberToObject(s, "samples", o->samples);
        cJSON_AddNumberToObject(s, "seed", (double)o->seed);
    }
    return s;
}

typedef struct eval_args {
    const char *dir, *backend, *tmpl, *lengths, *file;
    int threads, samples, max_new, ctx, max_tokens, verbose;
    rope_overrides rope;
    uint64_t seed;
} eval_args;

int cmd_eval(int argc, char **argv) {
    const char *usage = "usage: falconlite eval passkey|lines|ppl --model DIR [options]";
    if (argc < 1 || argv[0][0] == '-') {
        if (argc >= 1 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"))) {
            printf("%s\n", usage);
            return 0;
        }
        return cli_fail("%s", usage);
    }
    const char *suite = argv[0];
    if (strcmp(suite, "passkey") && strcmp(suite, "lines") && strcmp(suite, "ppl"))
        return cli_fail("eval: unknown suite '%s' (passkey, lines, ppl)", suite);
    eval_args a = {.backend = "auto",
                   .samples = 5,
                   .seed = 1,
                   .max_new = -1,
                   .ctx = 1024,
                   .rope = ROPE_OVERRIDES_NONE,
                   .lengths = "1024,2048,4096,8192"};
    opt_spec opts[] = {
        OPT("model", OPT_STRING, &a.dir, "model directory"),
        OPT("samples", OPT_INT, &a.samples,
            "passkey: prompts per length; lines: records (default 5)"),
        OPT("seed", OPT_U64, &a.seed, "passkey: seed of keys and positions (default 1)"),
        OPT("lengths", OPT_STRING, &a.lengths,
            "passkey: prompt lengths in tokens (1024,2048,4096,8192)"),
        OPT("file", OPT_STRING, &a.file, "lines: a LongEval *_lines.jsonl file; ppl: a text file"),
        OPT("template", OPT_STRING, &a.tmpl,
            "none | chatml | smollm2 | oasst | auto (the model's; passkey: none; lines: chatml)"),
        OPT("max-new-tokens", OPT_INT, &a.max_new, "tokens to generate (passkey 10, lines 100)"),
        OPT("ctx", OPT_INT, &a.ctx, "ppl: window length in tokens (default 1024)"),
        OPT("max-tokens", OPT_INT, &a.max_tokens, "ppl: score at most this many tokens (0: all)"),
        OPT("backend", OPT_STRING, &a.backend, "cpu | cuda | auto (default)"),
        OPT("threads", OPT_INT, &a.threads, "CPU worker threads (default: all cores)"),
        OPT("verbose", OPT_BOOL, &a.verbose, "one stderr line per sample"),
    };
    char cmd[32];
    snprintf(cmd, sizeof cmd, "eval %s", suite);
    int rc = cli_args_parse_rope(
        cmd, "Quality evaluation on the local engine; prints one JSON summary line.", argc - 1,
        argv + 1, opts, sizeof opts / sizeof opts[0], &a.rope);
    if (rc) return rc < 0 ? 2 : 0;
    if (!a.dir) return cli_fail("eval: --model is required");
    if (a.samples < 1 || a.threads < 0 || a.ctx < 2 || a.max_tokens < 0)
        return cli_fail("eval: --samples and --ctx must be positive, --threads and --max-tokens "
                        "not negative");
    if (strcmp(suite, "passkey") && !a.file) return cli_fail("eval %s: --file is required", suite);
    eval_opts o = {.dir = a.dir,
                   .backend = a.backend,
                   .threads = a.threads,
                   .samples = a.samples,
                   .seed = a.seed,
                   .verbose = a.verbose,
                   .rope_override = rope_overrides_given(&a.rope) ? &a.rope : NULL};
    o.max_new = a.max_new > 0 ? a.max_new : !strcmp(suite, "passkey") ? 10 : 100;
    // A named template is checked before the model loads; "auto" reads the model's after.
    const char *tmpl = a.tmpl ? a.tmpl : !strcmp(suite, "lines") ? "chatml" : "none";
    int tmpl_auto = !strcmp(tmpl, "auto");
    chat_template *ct = NULL;
    fl_error err = {0};
    if (!tmpl_auto && chat_template_create(tmpl, &ct, &err))
        return cli_fail("eval: --template must be none, chatml, smollm2, oasst or auto");
    eval_engine e;
    fl_code fc = eval_engine_open(&o, &e, &err);
    if (!fc) o.rope = model_get_config(e.m)->rope;
    if (!fc && tmpl_auto) fc = chat_template_load(o.dir, e.tok, &ct, &err);
    if (!fc) {
        o.tmpl = ct;
        char name[32]; // "auto:chatml": the model's own template, default system turn included
        snprintf(name, sizeof name, "auto:%s", chat_template_kind_name(ct));
        o.tmpl_name = tmpl_auto ? name : tmpl;
        if (!strcmp(suite, "passkey"))
            fc = eval_passkey(&o, &e, a.lengths, &err);
        else if (!strcmp(suite, "lines"))
            fc = eval_lines(&o, &e, a.file, &err);
        else
            fc = eval_ppl(&o, &e, a.file, a.ctx, a.max_tokens, &err);
    }
    eval_engine_close(&e);
    chat_template_free(ct);
    return fc ? cli_fail("%s", err.msg) : 0;
}
