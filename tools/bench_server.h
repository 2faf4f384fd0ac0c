// `falconlite bench-server`'s two modes share this: the fixed-concurrency mode lives in
// cmd_bench_server.c (with the option table and the prompt maker), the load mode (arrivals at a
// request rate, vLLM benchmark_serving's metrics, sweeps) in bench_load.c.
#pragma once
#include <cjson/cJSON.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "tools/bench_stats.h"
#include "tools/client_rpc.h"

#define BS_RPC_MS 600000

// One streamed request's timeline, on cli_now_s()'s clock.
typedef struct bench_timeline {
    double ttft_s, e2e_s; // from the send to the first / last token
    double end_s;         // clock time of the last token (the send time when none came)
    int generated, n_itl;
    bool eos;      // stopped at the model's EOS before max_new_tokens
    double *itl_s; // [max_new_tokens] gaps between consecutive tokens, n_itl of them used
} bench_timeline;

// Streams `prompt` through GenerateStream with max_new_tokens (past EOS when ignore_eos) and
// fills t (t->itl_s is allocated; free it); adds each token to *tokens when not NULL.
fl_code bench_stream_run(client_rpc *rpc, const char *prompt, int max_new_tokens, bool ignore_eos,
                         bench_timeline *t, atomic_int *tokens, fl_error *err);

// A prefix of a fixed English text that the router encodes to exactly `len` tokens (the closest
// below when no cut is exact; *n_tokens tells).
fl_code bench_prompt_make(client_rpc *rpc, int len, char **out, int *n_tokens, fl_error *err);

// Writes root (formatted) to path, or unformatted on one line to stdout when path is "-".
int bench_json_write(const cJSON *root, const char *path);
// Writes the array of flat objects `rows` as CSV (header from the first row's keys; null as an
// empty field); 0 or the exit status after an error message.
int bench_csv_write(const cJSON *rows, const char *path);

// The load mode's settings (see the option table in cmd_bench_server.c).
typedef struct bench_load_config {
    const char *addr;
    double rates[16]; // requests/s, INFINITY: all at once
    int n_rates;
    double burstiness;    // gamma shape of the inter-arrival times (1: Poisson)
    int num_prompts;      // requests per rate (0: bounded by duration_s only)
    double duration_s;    // issue requests for this long (0: bounded by num_prompts only)
    uint64_t seed;        // the same seed gives the same requests and arrivals
    int input_len, output_len;          // tokens
    double input_range, output_range;   // uniform in [L(1-F), L(1+F)]
    const char *prompts_path;           // JSONL {"prompt", "max_new_tokens"} instead of lengths
    int max_concurrency;                // requests in flight at most (0: BENCH_LOAD_MAX_THREADS)
    bench_slo slo;                      // goodput's SLOs (none set: no goodput)
    const char *json_path, *csv_path, *plot_path; // NULL: not written; json "-": stdout
} bench_load_config;

#define BENCH_LOAD_MAX_THREADS 1024

// Runs every rate in turn and reports; returns the exit status.
int bench_load_run(const bench_load_config *cfg, client_rpc *rpc);
