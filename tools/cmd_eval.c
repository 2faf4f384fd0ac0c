// falconlite eval: quality evaluations on the local engine. Suites: passkey (landmark-attention's
// pass-key retrieval at chosen token lengths), lines (LongChat LongEval line retrieval, JSONL
// files as released), ppl (perplexity of a text file in fixed windows). One model load per run;
// the rotary scaling comes from config.json unless --rope-* flags override it.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/cli_args.h"
#include "tools/cli_common.h"
#include "tools/commands.h"
#include "tools/eval.h"

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
