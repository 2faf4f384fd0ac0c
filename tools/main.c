// falconlite: the command-line tool. Each subcommand lives in tools/cmd_<name>.c.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "tools/cli_args.h"
#include "tools/commands.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} commands[] = {
    {"generate", cmd_generate, "generate text from a prompt locally (no server)"},
    {"tokenize", cmd_tokenize, "print the token ids of a text"},
    {"detokenize", cmd_detokenize, "print the text of token ids"},
    {"mkmodel", cmd_mkmodel, "write a checkpoint with RANDOM weights in the real formats"},
    {"inspect", cmd_inspect, "summarise a model directory: config, tensors, memory needs"},
    {"bench", cmd_bench, "benchmark prefill and decode on the local engine"},
    {"import-gguf", cmd_import_gguf, "convert a llama.cpp GGUF file into a model directory"},
    {"eval", cmd_eval, "quality evals: pass-key, line retrieval, perplexity"},
    {"client", cmd_client, "call a running router over gRPC: generate, stream, tokenize, ..."},
    {"bench-server", cmd_bench_server, "benchmark a running router (the model card's protocol)"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: falconlite <command> [options]   (falconlite <command> --help)\n\n"
               "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
    // Info lines (model loaded, ...) would clutter a command's output: warnings only, unless
    // FALCONLITE_LOG asks for more.
    if (getenv("FALCONLITE_LOG"))
        log_set_level_from_env();
    else
        log_current_level = LOG_WARN;
    log_set_component("cli");
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 2, argv + 2);
    cli_fail("unknown command '%s' (see falconlite --help)", argv[1]);
    return 2;
}
