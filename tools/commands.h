// Subcommands of the falconlite CLI: each takes the arguments after its name and returns the
// process exit status (0 on success; errors print one "falconlite: error: ..." line).
#pragma once

int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_mkmodel(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_bench(int argc, char **argv); // tools/cmd_bench.c (local engine benchmark)
int cmd_import_gguf(int argc, char **argv); // tools/cmd_import_gguf.c (GGUF -> HF model dir)
int cmd_eval(int argc, char **argv);        // tools/cmd_eval.c (passkey, lines, ppl)
int cmd_client(int argc, char **argv);       // tools/cmd_client.c (router's gRPC API)
int cmd_bench_server(int argc, char **argv); // tools/cmd_bench_server.c (bench via the router)
