#include "tools/cli_args.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("falconlite: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

static void cli_usage(const char *cmd, const char *summary, const cli_opt *opts, int n_opts) {
    printf("usage: falconlite %s [options]\n%s\n\noptions:\n", cmd, summary);
    static const char *value_names[] = {"", " STR", " N", " N", " X"};
    for (int i = 0; i < n_opts; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s", opts[i].name, value_names[opts[i].kind]);
        printf("  %-26s %s\n", left, opts[i].help);
    }
}

static int cli_set_value(const char *cmd, const cli_opt *o, const char *v) {
    char *end = NULL;
    errno = 0;
    switch (o->kind) {
    case CLI_FLAG:
        break;
    case CLI_STR:
        *(const char **)o->dst = v;
        return 0;
    case CLI_INT: {
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end || x < INT32_MIN || x > INT32_MAX) break;
        *(int *)o->dst = (int)x;
        return 0;
    }
    case CLI_U64: {
        if (*v == '-') break;
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || end == v || *end) break;
        *(uint64_t *)o->dst = x;
        return 0;
    }
    case CLI_FLOAT: {
        float x = strtof(v, &end);
        if (errno || end == v || *end || !isfinite(x)) break;
        *(float *)o->dst = x;
        return 0;
    }
    }
    cli_fail("%s: invalid value '%s' for --%s", cmd, v, o->name);
    return -1;
}

int cli_args_parse(const char *cmd, const char *summary, int argc, char **argv, const cli_opt *opts,
                   int n_opts) {
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            cli_usage(cmd, summary, opts, n_opts);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0) {
            cli_fail("%s: unexpected argument '%s' (see falconlite %s --help)", cmd, a, cmd);
            return -1;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const cli_opt *o = NULL;
        for (int j = 0; j < n_opts; j++)
            if (strlen(opts[j].name) == len && !strncmp(opts[j].name, name, len)) o = &opts[j];
        if (!o) {
            cli_fail("%s: unknown option '%.*s' (see falconlite %s --help)", cmd, (int)len + 2, a,
                     cmd);
            return -1;
        }
        if (o->kind == CLI_FLAG) {
            if (eq) {
                cli_fail("%s: --%s takes no value", cmd, o->name);
                return -1;
            }
            *(int *)o->dst = 1;
            continue;
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v) {
            cli_fail("%s: --%s needs a value", cmd, o->name);
            return -1;
        }
        if (cli_set_value(cmd, o, v)) return -1;
    }
    return 0;
}
