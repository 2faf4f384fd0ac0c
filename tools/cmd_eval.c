// falconlite eval: the model card's evaluations on the local engine (--model DIR) or against a
// running TGI-compatible server (--server URL: falconlite-router or TGI 0.9.2). Tasks: passkey
// (landmark-attention's pass-key retrieval at chosen token lengths), lines and topics (LongChat
// LongEval line / topic retrieval, JSONL files as released), quality (QuALITY multiple choice by
// option log-likelihood), ppl (perplexity of a text file in fixed windows; local only). Prints
// the model card's table (accuracy per length bucket with the measured token lengths) or JSON;
// progress on stderr. With --model the rotary scaling comes from config.json unless --rope-*
// flags override it.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/cli_args.h"
#include "tools/cli_common.h"
#include "tools/commands.h"
#include "tools/eval.h"

typedef struct eval_args {
    const char *dir, *server, *backend, *tmpl, *lengths, *data, *buckets;
    int threads, limit, max_new, ctx, max_tokens, verbose, json, timeout;
    rope_overrides rope;
    uint64_t seed;
} eval_args;

static const char *const suites[] = {"passkey", "lines", "topics", "quality", "ppl"};

// Checks the parsed arguments and fills o; 0 or the exit status after an error line.
static int eval_args_check(const char *suite, const eval_args *a, eval_opts *o) {
    if (!a->dir == !a->server) return cli_fail("eval: give --model DIR or --server URL (one)");
    if (a->limit < 1 || a->threads < 0 || a->ctx < 2 || a->max_tokens < 0 || a->timeout < 1)
        return cli_fail("eval: --limit, --ctx and --timeout must be positive, --threads and "
                        "--max-tokens not negative");
    if (strcmp(suite, "passkey") && !a->data)
        return cli_fail("eval %s: --data is required (%s)", suite,
                        !strcmp(suite, "ppl")       ? "a text file"
                        : !strcmp(suite, "quality") ? "a QuALITY .jsonl file"
                                                    : "LongEval .jsonl files or their directory");
    if (a->server && !strcmp(suite, "ppl"))
        return cli_fail("eval ppl: needs the local engine (--model DIR), not --server");
    if (a->server && rope_overrides_given(&a->rope))
        return cli_fail("eval: --rope-* flags apply to --model only (a server has its own)");
    int is_passkey = !strcmp(suite, "passkey"), seed_given = a->seed != UINT64_MAX;
    *o = (eval_opts){.dir = a->dir,
                     .server = a->server,
                     .backend = a->backend,
                     .threads = a->threads,
                     .limit = a->limit,
                     .seed = seed_given ? a->seed : 1,
                     .seed_given = seed_given,
                     .verbose = a->verbose,
                     .json = a->json,
                     .rope_override = rope_overrides_given(&a->rope) ? &a->rope : NULL};
    if (a->dir && cli_gptq_env("eval", &o->gptq)) return 1;
    o->max_new = a->max_new > 0           ? a->max_new
                 : is_passkey             ? 10
                 : !strcmp(suite, "topics") ? 50
                                          : 100;
    if (a->buckets) {
        fl_error err = {0};
        if (!strcmp(suite, "quality") || !strcmp(suite, "ppl"))
            return cli_fail("eval %s: --buckets applies to passkey, lines and topics", suite);
        if (eval_ranges_parse(a->buckets, o->ranges, EVAL_MAX_RANGES, &o->n_ranges, &err))
            return cli_fail("eval: %s", err.msg);
    }
    return 0;
}

static fl_code suite_run(const char *suite, const eval_args *a, const eval_opts *o, eval_target *t,
                         fl_error *err) {
    if (!strcmp(suite, "passkey")) return eval_passkey(o, t, a->lengths, err);
    if (!strcmp(suite, "lines") || !strcmp(suite, "topics"))
        return eval_longeval(o, t, suite, a->data, err);
    if (!strcmp(suite, "quality")) return eval_quality(o, t, a->data, err);
    return eval_ppl(o, t->engine, a->data, a->ctx, a->max_tokens, err);
}

int cmd_eval(int argc, char **argv) {
    const char *usage =
        "usage: falconlite eval passkey|lines|topics|quality|ppl (--model DIR | --server URL) "
        "[options]";
    if (argc < 1 || argv[0][0] == '-') {
        if (argc >= 1 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"))) {
            printf("%s\n", usage);
            return 0;
        }
        return cli_fail("%s", usage);
    }
    const char *suite = argv[0];
    int known = 0;
    for (size_t i = 0; i < sizeof suites / sizeof *suites; i++)
        known |= !strcmp(suite, suites[i]);
    if (!known)
        return cli_fail("eval: unknown task '%s' (passkey, lines, topics, quality, ppl)", suite);
    eval_args a = {.backend = "auto",
                   .limit = 5,
                   .seed = UINT64_MAX, // not given
                   .max_new = -1,
                   .ctx = 1024,
                   .timeout = 600,
                   .rope = ROPE_OVERRIDES_NONE,
                   .lengths = "1024,2048,4096,8192"};
    opt_spec opts[] = {
        OPT("model", OPT_STRING, &a.dir, "model directory (the local engine)"),
        OPT("server", OPT_STRING, &a.server,
            "a running server's base URL (http://host:port; TGI API: falconlite-router, TGI)"),
        OPT("data", OPT_STRING, &a.data,
            "lines/topics: .jsonl files (comma-separated) or a directory of them; quality: a "
            "QuALITY .jsonl; ppl: a text file"),
        OPT("file", OPT_STRING, &a.data, "same as --data"),
        OPT("limit", OPT_INT, &a.limit,
            "items per length / file (quality: questions in all; default 5)"),
        OPT("samples", OPT_INT, &a.limit, "same as --limit"),
        OPT("seed", OPT_U64, &a.seed,
            "passkey: keys and positions (default 1); data tasks: a seeded shuffle picks the "
            "records (default: the first ones)"),
        OPT("lengths", OPT_STRING, &a.lengths,
            "passkey: prompt lengths in tokens (1024,2048,4096,8192)"),
        OPT("buckets", OPT_STRING, &a.buckets,
            "columns by measured tokens, e.g. 2800-3800,5500-5600 (default: one per file / length)"),
        OPT("template", OPT_STRING, &a.tmpl,
            "none | chatml | smollm2 | oasst | auto (the model's; passkey, quality: none; lines, "
            "topics: chatml)"),
        OPT("max-new-tokens", OPT_INT, &a.max_new,
            "tokens to generate (passkey 10, topics 50, lines 100)"),
        OPT("json", OPT_BOOL, &a.json, "print one JSON object instead of the table"),
        OPT("timeout", OPT_INT, &a.timeout, "--server: seconds per request (default 600)"),
        OPT("ctx", OPT_INT, &a.ctx, "ppl: window length in tokens (default 1024)"),
        OPT("max-tokens", OPT_INT, &a.max_tokens, "ppl: score at most this many tokens (0: all)"),
        OPT("backend", OPT_STRING, &a.backend, "cpu | cuda | auto (default)"),
        OPT("threads", OPT_INT, &a.threads, "CPU worker threads (default: all cores)"),
        OPT("verbose", OPT_BOOL, &a.verbose, "show each answer on the progress lines"),
    };
    char cmd[32];
    snprintf(cmd, sizeof cmd, "eval %s", suite);
    int rc = cli_args_parse_rope(cmd,
                                 "Model card evaluations on the local engine or a server; prints "
                                 "the accuracy table (or --json), progress on stderr.",
                                 argc - 1, argv + 1, opts, sizeof opts / sizeof opts[0], &a.rope);
    if (rc) return rc < 0 ? 2 : 0;
    eval_opts o;
    if ((rc = eval_args_check(suite, &a, &o))) return rc;
    // A named template is checked before the model loads; "auto" reads the model's after.
    const char *tmpl = a.tmpl ? a.tmpl
                       : !strcmp(suite, "lines") || !strcmp(suite, "topics") ? "chatml"
                                                                               : "none";
    int tmpl_auto = !strcmp(tmpl, "auto");
    if (tmpl_auto && a.server)
        return cli_fail("eval: --template auto reads the model directory: name the server's "
                        "template (chatml, smollm2, oasst, none) with --server");
    chat_template *ct = NULL;
    fl_error err = {0};
    if (!tmpl_auto && chat_template_create(tmpl, &ct, &err))
        return cli_fail("eval: --template must be none, chatml, smollm2, oasst or auto");
    eval_target *t = NULL;
    fl_code fc = a.server ? eval_target_server_create(a.server, a.timeout, &t, &err)
                          : eval_target_local_create(&o, &t, &err);
    if (!fc && tmpl_auto) fc = chat_template_load(o.dir, t->engine->tok, &ct, &err);
    if (!fc) {
        o.tmpl = ct;
        char name[32]; // "auto:chatml": the model's own template, default system turn included
        snprintf(name, sizeof name, "auto:%s", chat_template_kind_name(ct));
        o.tmpl_name = tmpl_auto ? name : tmpl;
        fc = suite_run(suite, &a, &o, t, &err);
    }
    eval_target_free(t);
    chat_template_free(ct);
    return fc ? cli_fail("%s", err.msg) : 0;
}
