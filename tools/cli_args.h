// Option parsing for the falconlite subcommands over the shared table-driven parser
// (common/options.h), with one "falconlite: error: ..." line on bad input.
#pragma once
#include "common/options.h"

#include "common/quant_overrides.h"
#include "common/rope.h"

// Parses argv (the arguments after the subcommand name) into opts. Returns 0 on success, 1 when
// --help was given (usage printed to stdout), -1 after printing an error.
int cli_args_parse(const char *cmd, const char *summary, int argc, char **argv,
                   const opt_spec *opts, int n_opts);
// The same with the shared --rope-* options into *rope, which then also takes FalconLite's
// environment (DNTK_ALPHA_SCALER, PRETRAINED_MAX_TOKENS) for what the flags leave open.
int cli_args_parse_rope(const char *cmd, const char *summary, int argc, char **argv,
                        const opt_spec *opts, int n_opts, rope_overrides *rope);
// FalconLite's environment into *rope (commands without --rope-* flags); 0, or 1 after printing
// an error.
int cli_rope_env(const char *cmd, rope_overrides *rope);
// TGI's GPTQ_BITS / GPTQ_GROUPSIZE into *gptq (commands that load a model); 0, or 1 after
// printing an error.
int cli_gptq_env(const char *cmd, quant_overrides *gptq);

// Prints "falconlite: error: <message>" to stderr and returns the exit status 1.
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
