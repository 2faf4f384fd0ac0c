#include "tools/cli_args.h"

#include <stdarg.h>
#include <stdio.h>

int cli_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("falconlite: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

static int cli_args_parse_groups(const char *cmd, const char *summary, int argc, char **argv,
                                 const opt_group *groups, int n_groups) {
    bool help;
    fl_error err = {0};
    if (opts_parse(groups, n_groups, argc, argv, 0, &help, &err) != FL_OK) {
        cli_fail("%s: %s (see falconlite %s --help)", cmd, err.msg, cmd);
        return -1;
    }
    if (!help) return 0;
    printf("usage: falconlite %s [options]\n%s\n", cmd, summary);
    opts_usage(stdout, groups, n_groups, 0);
    return 1;
}

int cli_args_parse(const char *cmd, const char *summary, int argc, char **argv,
                   const opt_spec *opts, int n_opts) {
    const opt_group group = {NULL, opts, n_opts};
    return cli_args_parse_groups(cmd, summary, argc, argv, &group, 1);
}

int cli_rope_env(const char *cmd, rope_overrides *rope) {
    fl_error err = {0};
    return rope_overrides_add_env(rope, &err) ? cli_fail("%s: %s", cmd, err.msg) : 0;
}

int cli_gptq_env(const char *cmd, quant_overrides *gptq) {
    fl_error err = {0};
    return quant_overrides_add_env(gptq, &err) ? cli_fail("%s: %s", cmd, err.msg) : 0;
}

int cli_args_parse_rope(const char *cmd, const char *summary, int argc, char **argv,
                        const opt_spec *opts, int n_opts, rope_overrides *rope) {
    opt_spec rope_opts[ROPE_OPTS_N];
    rope_opts_bind(rope, rope_opts);
    const opt_group groups[] = {{NULL, opts, n_opts}, OPT_GROUP("rotary scaling", rope_opts)};
    int rc = cli_args_parse_groups(cmd, summary, argc, argv, groups, 2);
    return rc ? rc : cli_rope_env(cmd, rope) ? -1 : 0;
}
