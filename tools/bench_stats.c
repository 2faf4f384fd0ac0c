#include "tools/bench_stats.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"

static int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_percentile(const double *sorted, int n, double p) {
    if (n <= 0) return 0;
    double pos = p / 100.0 * (n - 1);
    if (pos <= 0) return sorted[0];
    if (pos >= n - 1) return sorted[n - 1];
    int k = (int)pos;
    return sorted[k] + (pos - k) * (sorted[k + 1] - sorted[k]);
}

double bench_percentile_rank(const double *sorted, int n, double q) {
    if (n <= 0) return NAN;
    int k = (int)ceil(q * n) - 1;
    return sorted[k < 0 ? 0 : k >= n ? n - 1 : k];
}

void bench_dist_summarize(double *v, int n, bench_dist *out) {
    *out = (bench_dist){.n = n};
    if (n <= 0) return;
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += v[i];
    out->mean = sum / n;
    out->p50 = bench_percentile(v, n, 50);
    out->p90 = bench_percentile(v, n, 90);
    out->p99 = bench_percentile(v, n, 99);
}

void bench_rng_seed(bench_rng *r, uint64_t seed) {
    r->state = seed;
}

uint64_t bench_rng_next(bench_rng *r) {
    return splitmix64_next(&r->state);
}

double bench_rng_uniform(bench_rng *r) {
    return splitmix64_uniform(&r->state);
}

int bench_rng_int(bench_rng *r, int lo, int hi) {
    if (hi <= lo) return lo;
    uint64_t span = (uint64_t)((int64_t)hi - lo) + 1;
    return lo + (int)(bench_rng_next(r) % span); // span << 2^64: the modulo bias is negligible
}

double bench_rng_normal(bench_rng *r) { // Box-Muller, one of the pair
    double u = bench_rng_uniform(r), v = bench_rng_uniform(r);
    return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

// Marsaglia and Tsang (2000); shape < 1 through gamma(shape + 1) * U^(1/shape).
double bench_rng_gamma(bench_rng *r, double shape, double scale) {
    if (shape < 1) {
        double u = bench_rng_uniform(r);
        return bench_rng_gamma(r, shape + 1, scale) * pow(u, 1.0 / shape);
    }
    double d = shape - 1.0 / 3, c = 1 / sqrt(9 * d);
    for (;;) {
        double x = bench_rng_normal(r), v = 1 + c * x;
        if (v <= 0) continue;
        v = v * v * v;
        double u = bench_rng_uniform(r);
        if (log(u) < 0.5 * x * x + d - d * v + d * log(v)) return d * v * scale;
    }
}

double bench_interval_sample(bench_rng *r, double rate, double burstiness) {
    if (isinf(rate)) return 0;
    return bench_rng_gamma(r, burstiness, 1.0 / (rate * burstiness));
}

fl_code bench_slo_parse(const char *spec, bench_slo *out, fl_error *err) {
    *out = (bench_slo){0};
    const char *p = spec;
    for (;;) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p) break;
        size_t len = strcspn(p, ":, ");
        double *dst = len == 4 && !strncmp(p, "ttft", 4)   ? &out->ttft_ms
                      : len == 4 && !strncmp(p, "tpot", 4) ? &out->tpot_ms
                      : len == 3 && !strncmp(p, "e2e", 3)  ? &out->e2e_ms
                                                           : NULL;
        if (!dst || p[len] != ':')
            return fl_error_set(err, FL_EINVAL, "goodput: '%.*s' is not ttft:MS, tpot:MS or e2e:MS",
                                (int)strcspn(p, ", "), p);
        char *end;
        errno = 0;
        double v = strtod(p + len + 1, &end);
        if (errno || end == p + len + 1 || (*end && *end != ' ' && *end != ',') || !(v > 0) ||
            !isfinite(v))
            return fl_error_set(err, FL_EINVAL, "goodput: %.*s needs a positive number of ms",
                                (int)len, p);
        *dst = v;
        p = end;
    }
    if (!bench_slo_any(out))
        return fl_error_set(err, FL_EINVAL, "goodput: no SLO in '%s' (ttft:MS tpot:MS e2e:MS)",
                            spec);
    return FL_OK;
}

bool bench_slo_any(const bench_slo *slo) {
    return slo->ttft_ms > 0 || slo->tpot_ms > 0 || slo->e2e_ms > 0;
}

double bench_tpot_s(const bench_request *r) {
    return r->output_tokens > 1 ? (r->e2e_s - r->ttft_s) / (r->output_tokens - 1) : 0;
}

int bench_goodput_count(const bench_request *reqs, int n, const bench_slo *slo) {
    int good = 0;
    for (int i = 0; i < n; i++) {
        const bench_request *r = &reqs[i];
        if (!r->ok) continue;
        if (slo->ttft_ms > 0 && r->ttft_s * 1e3 > slo->ttft_ms) continue;
        if (slo->tpot_ms > 0 && bench_tpot_s(r) * 1e3 > slo->tpot_ms) continue;
        if (slo->e2e_ms > 0 && r->e2e_s * 1e3 > slo->e2e_ms) continue;
        good++;
    }
    return good;
}

fl_code bench_metrics_compute(const bench_request *reqs, int n, double duration_s,
                              const bench_slo *slo, bench_metrics *out, fl_error *err) {
    *out = (bench_metrics){.duration_s = duration_s};
    long long n_itl = 0;
    for (int i = 0; i < n; i++)
        if (reqs[i].ok) n_itl += reqs[i].n_itl;
    size_t cap = (size_t)(n > 0 ? n : 1);
    double *ttft = malloc(sizeof *ttft * cap), *tpot = malloc(sizeof *tpot * cap);
    double *e2e = malloc(sizeof *e2e * cap), *itl = malloc(sizeof *itl * (size_t)(n_itl + 1));
    if (!ttft || !tpot || !e2e || !itl) {
        free(ttft), free(tpot), free(e2e), free(itl);
        return fl_error_set(err, FL_ENOMEM, "bench metrics: out of memory");
    }
    int n_tpot = 0;
    n_itl = 0;
    for (int i = 0; i < n; i++) {
        const bench_request *r = &reqs[i];
        if (!r->ok) {
            out->failed++;
            continue;
        }
        ttft[out->completed] = r->ttft_s * 1e3;
        e2e[out->completed] = r->e2e_s * 1e3;
        out->completed++;
        if (r->output_tokens > 1) tpot[n_tpot++] = bench_tpot_s(r) * 1e3;
        for (int k = 0; k < r->n_itl; k++)
            itl[n_itl++] = r->itl_s[k] * 1e3;
        out->total_input += r->input_tokens;
        out->total_output += r->output_tokens;
    }
    out->good = bench_goodput_count(reqs, n, slo);
    if (duration_s > 0) {
        out->request_throughput = out->completed / duration_s;
        out->output_throughput = out->total_output / duration_s;
        out->total_token_throughput = (out->total_input + out->total_output) / duration_s;
        out->request_goodput = out->good / duration_s;
    }
    bench_dist_summarize(ttft, out->completed, &out->ttft_ms);
    bench_dist_summarize(tpot, n_tpot, &out->tpot_ms);
    bench_dist_summarize(itl, (int)n_itl, &out->itl_ms);
    bench_dist_summarize(e2e, out->completed, &out->e2e_ms);
    free(ttft), free(tpot), free(e2e), free(itl);
    return FL_OK;
}
