// A small table-driven option parser for the falconlite subcommands: `--name value`,
// `--name=value` and bare `--flag`, with one "falconlite: error: ..." line on bad input.
#pragma once
#include <stdint.h>

typedef enum cli_kind {
    CLI_FLAG = 0, // int, set to 1
    CLI_STR,      // const char *
    CLI_INT,      // int
    CLI_U64,      // uint64_t
    CLI_FLOAT,    // float
} cli_kind;

typedef struct cli_opt {
    const char *name; // without the leading "--"
    cli_kind kind;
    void *dst;
    const char *help; // one line for --help
} cli_opt;

// Parses argv (the arguments after the subcommand name) into opts. Returns 0 on success, 1 when
// --help was given (usage printed to stdout), -1 after printing an error.
int cli_args_parse(const char *cmd, const char *summary, int argc, char **argv, const cli_opt *opts,
                   int n_opts);

// Prints "falconlite: error: <message>" to stderr and returns the exit status 1.
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
