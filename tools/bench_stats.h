// Statistics of `falconlite bench-server`: percentiles, the seeded arrival / length sampler,
// per-request latency metrics and goodput under SLOs, with vLLM benchmark_serving's definitions
// (TTFT, TPOT = (e2e - ttft) / (n - 1), every ITL, E2E; goodput = requests/s meeting all SLOs).
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "common/status.h"

// Linear-interpolation percentile (numpy's default) of sorted v[n], p in [0, 100]; 0 when n == 0
// (as vLLM reports an empty sample).
double bench_percentile(const double *sorted, int n, double p);
// Nearest-rank percentile of sorted v[n], q in (0, 1]; NAN when n == 0 (the fixed-concurrency
// mode's definition).
double bench_percentile_rank(const double *sorted, int n, double q);

// One sample's summary; all 0 when empty.
typedef struct bench_dist {
    int n;
    double mean, p50, p90, p99;
} bench_dist;

// Sorts v[n] in place and summarises it.
void bench_dist_summarize(double *v, int n, bench_dist *out);

// A seeded generator (common/rng.h's splitmix64): the same seed gives the same draws on every
// machine.
typedef struct bench_rng {
    uint64_t state;
} bench_rng;

void bench_rng_seed(bench_rng *r, uint64_t seed);
uint64_t bench_rng_next(bench_rng *r);
double bench_rng_uniform(bench_rng *r);                           // (0, 1)
int bench_rng_int(bench_rng *r, int lo, int hi);                  // uniform in [lo, hi]
double bench_rng_normal(bench_rng *r);                            // standard normal
double bench_rng_gamma(bench_rng *r, double shape, double scale); // mean shape*scale
// Gap before the next arrival at `rate` requests/s: gamma(burstiness, 1 / (rate * burstiness)),
// so the mean is 1/rate for any burstiness, burstiness 1 is a Poisson process and smaller values
// are burstier (variance 1 / (rate^2 * burstiness)). An infinite rate gives 0.
double bench_interval_sample(bench_rng *r, double rate, double burstiness);

// Service-level objectives in ms; a value <= 0 is not set.
typedef struct bench_slo {
    double ttft_ms, tpot_ms, e2e_ms;
} bench_slo;

// Parses "ttft:MS tpot:MS e2e:MS" (any subset, separated by spaces or commas).
fl_code bench_slo_parse(const char *spec, bench_slo *out, fl_error *err);
bool bench_slo_any(const bench_slo *slo);

// One request's outcome as the client saw it.
typedef struct bench_request {
    bool ok; // completed without an error
    int input_tokens, output_tokens;
    double ttft_s, e2e_s; // from the request's send to its first / last token
    const double *itl_s;  // [n_itl] gaps between consecutive tokens
    int n_itl;
} bench_request;

// (e2e - ttft) / (n - 1); 0 when n <= 1 (no gap to average: counts as meeting any TPOT SLO).
double bench_tpot_s(const bench_request *r);
// Completed requests meeting every set SLO.
int bench_goodput_count(const bench_request *reqs, int n, const bench_slo *slo);

// One load level's results. Latencies in ms over completed requests (TPOT only over those with
// more than one token); throughputs over duration_s, from the first send to the last token.
typedef struct bench_metrics {
    int completed, failed, good;
    long long total_input, total_output; // tokens of the completed requests
    double duration_s;
    double request_throughput, output_throughput, total_token_throughput;
    double request_goodput; // good / duration_s (meaningful when an SLO is set)
    bench_dist ttft_ms, tpot_ms, itl_ms, e2e_ms;
} bench_metrics;

fl_code bench_metrics_compute(const bench_request *reqs, int n, double duration_s,
                              const bench_slo *slo, bench_metrics *out, fl_error *err);
