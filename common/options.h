// One table-driven option parser for the router, the shard and the CLI: `--name value`,
// `--name=value`, bare `--flag`, an optional one-letter alias, checked numbers with ranges, an
// upper-case environment variable as fallback (TGI's launcher style: the flag wins), and --help
// generated from the table.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "common/status.h"

typedef enum opt_type {
    OPT_BOOL = 0, // int, set to 1 (no value)
    OPT_STRING,   // const char * into argv / the environment, or a copy into char[cap]
    OPT_INT,      // int
    OPT_U64,      // uint64_t
    OPT_FLOAT,    // float (finite)
    OPT_U32,      // uint32_t
    OPT_ENUM,     // int: the index of the value in choices
    OPT_CUSTOM,   // parse(value, from_env, dst, err)
} opt_type;

typedef struct opt_spec {
    const char *name; // without the leading "--"
    opt_type type;
    void *dst;             // NULL: accepted and ignored
    const char *help;      // one line for --help; NULL hides the option (aliases, ignored flags)
    const char *env;       // upper-case environment variable read when OPTS_ENV (NULL: none)
    char short_name;       // '-p' style alias; 0: none
    bool has_min, has_max; // numbers: accepted range [min, max]
    double min, max;
    const char *const *choices; // ENUM, or STRING limited to these: NULL-terminated names
    size_t cap;                 // STRING: dst is a char[cap] to copy into; 0: const char **
    fl_code (*parse)(const char *value, bool from_env, void *dst, fl_error *err); // CUSTOM
} opt_spec;

// One table entry: OPT("max-input-length", OPT_U32, &c->max_input_length, "help",
// .env = "MAX_INPUT_LENGTH", OPT_MIN(1)).
#define OPT(name_, type_, dst_, help_, ...)                                                        \
    { .name = (name_), .type = (type_), .dst = (dst_), .help = (help_), __VA_ARGS__ }
#define OPT_MIN(x)        .has_min = true, .min = (x)
#define OPT_RANGE(lo, hi) .has_min = true, .min = (lo), .has_max = true, .max = (hi)

// A titled run of options; --help prints one section per group.
typedef struct opt_group {
    const char *title; // NULL: "options"
    const opt_spec *specs;
    int n;
} opt_group;

#define OPT_GROUP(title, arr) ((opt_group){(title), (arr), (int)(sizeof(arr) / sizeof((arr)[0]))})

enum {
    OPTS_ENV = 1, // fill what argv does not give from each option's environment variable
};

// Parses argv[0..argc) (options only: no program name) into the groups' destinations, which hold
// their defaults on entry. With OPTS_ENV the environment is applied first, so flags win. Errors
// name the flag ("--max-input-length: expected an integer, got 'abc'") or the variable
// ("environment MAX_INPUT_LENGTH: ..."). *help is set (nothing parsed) when --help or -h is
// among the arguments; the caller prints opts_usage.
fl_code opts_parse(const opt_group *groups, int n_groups, int argc, char **argv, unsigned flags,
                   bool *help, fl_error *err);
// Writes one line per visible option: "  --name VALUE   help (default D) [ENV]"; D is the
// destination's current value, left out when the help text speaks of a default itself.
void opts_usage(FILE *f, const opt_group *groups, int n_groups, unsigned flags);
