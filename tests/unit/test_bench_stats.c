// bench-server's statistics on fixed inputs: numpy's percentiles, the nearest-rank percentile,
// SLO parsing, TPOT and goodput counting, the per-level metrics, and the seeded samplers' mean and
// variance (gamma, Poisson / bursty arrivals, uniform lengths).
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "tools/bench_stats.h"

static void test_percentile_linear(void **state) {
    // numpy.percentile([1, 2, 3, 4, 10], p) for p = 0, 50, 90, 99, 100, 25
    const double v[] = {1, 2, 3, 4, 10};
    assert_float_equal(bench_percentile(v, 5, 0), 1, 1e-12);
    assert_float_equal(bench_percentile(v, 5, 50), 3, 1e-12);
    assert_float_equal(bench_percentile(v, 5, 90), 7.6, 1e-12);
    assert_float_equal(bench_percentile(v, 5, 99), 9.76, 1e-12);
    assert_float_equal(bench_percentile(v, 5, 100), 10, 1e-12);
    assert_float_equal(bench_percentile(v, 5, 25), 2, 1e-12);
    assert_float_equal(bench_percentile(v, 1, 99), 1, 1e-12);
    assert_float_equal(bench_percentile(v, 0, 50), 0, 0); // empty: 0, as vLLM reports
    const double w[] = {10, 20, 30, 40};                   // numpy: 25, 37, 39.7
    assert_float_equal(bench_percentile(w, 4, 50), 25, 1e-12);
    assert_float_equal(bench_percentile(w, 4, 90), 37, 1e-12);
    assert_float_equal(bench_percentile(w, 4, 99), 39.7, 1e-12);
}

static void test_percentile_rank(void **state) {
    const double v[] = {1, 2, 3, 4, 10};
    assert_float_equal(bench_percentile_rank(v, 5, 0.5), 3, 0);
    assert_float_equal(bench_percentile_rank(v, 5, 0.99), 10, 0);
    assert_float_equal(bench_percentile_rank(v, 5, 0.2), 1, 0);
    assert_true(isnan(bench_percentile_rank(v, 0, 0.5)));
}

static void test_dist_summarize(void **state) {
    double v[] = {4, 1, 10, 3, 2};
    bench_dist d;
    bench_dist_summarize(v, 5, &d);
    assert_int_equal(d.n, 5);
    assert_float_equal(d.mean, 4, 1e-12);
    assert_float_equal(d.p50, 3, 1e-12);
    assert_float_equal(d.p90, 7.6, 1e-12);
    assert_float_equal(d.p99, 9.76, 1e-12);
    assert_float_equal(v[0], 1, 0); // sorted in place
    bench_dist_summarize(v, 0, &d);
    assert_int_equal(d.n, 0);
    assert_float_equal(d.mean + d.p50 + d.p90 + d.p99, 0, 0);
}

static void test_slo_parse(void **state) {
    bench_slo s;
    fl_error err = {0};
    assert_int_equal(bench_slo_parse("ttft:300 tpot:50", &s, &err), FL_OK);
    assert_float_equal(s.ttft_ms, 300, 0);
    assert_float_equal(s.tpot_ms, 50, 0);
    assert_float_equal(s.e2e_ms, 0, 0);
    assert_int_equal(bench_slo_parse("e2e:1500.5,ttft:2", &s, &err), FL_OK);
    assert_float_equal(s.e2e_ms, 1500.5, 0);
    assert_float_equal(s.ttft_ms, 2, 0);
    assert_true(bench_slo_any(&s));
    assert_int_equal(bench_slo_parse("itl:5", &s, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "'itl:5'"));
    assert_int_equal(bench_slo_parse("ttft:-1", &s, &err), FL_EINVAL);
    assert_int_equal(bench_slo_parse("ttft:12x", &s, &err), FL_EINVAL);
    assert_int_equal(bench_slo_parse("ttft", &s, &err), FL_EINVAL);
    assert_int_equal(bench_slo_parse(" ", &s, &err), FL_EINVAL);
}

// Four requests: times in s.
//   0: ok, ttft 0.1, e2e 1.0, 10 tokens -> tpot 0.1
//   1: ok, ttft 0.5, e2e 0.5, 1 token   -> tpot 0 (no gap)
//   2: ok, ttft 0.2, e2e 2.2, 5 tokens  -> tpot 0.5
//   3: failed
static const double itl0[] = {0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1};
static const double itl2[] = {0.5, 0.5, 0.5, 0.5};
static const bench_request reqs4[] = {
    {.ok = true, .input_tokens = 20, .output_tokens = 10, .ttft_s = 0.1, .e2e_s = 1.0,
     .itl_s = itl0, .n_itl = 9},
    {.ok = true, .input_tokens = 30, .output_tokens = 1, .ttft_s = 0.5, .e2e_s = 0.5},
    {.ok = true, .input_tokens = 10, .output_tokens = 5, .ttft_s = 0.2, .e2e_s = 2.2,
     .itl_s = itl2, .n_itl = 4},
    {.ok = false, .input_tokens = 99, .output_tokens = 0},
};

static void test_tpot_goodput(void **state) {
    assert_float_equal(bench_tpot_s(&reqs4[0]), 0.1, 1e-12);
    assert_float_equal(bench_tpot_s(&reqs4[1]), 0, 0);
    assert_float_equal(bench_tpot_s(&reqs4[2]), 0.5, 1e-12);
    bench_slo none = {0}, ttft = {.ttft_ms = 300}, tpot = {.tpot_ms = 200};
    bench_slo both = {.ttft_ms = 150, .tpot_ms = 200}, e2e = {.e2e_ms = 1000};
    assert_int_equal(bench_goodput_count(reqs4, 4, &none), 3); // failed never counts
    assert_int_equal(bench_goodput_count(reqs4, 4, &ttft), 2); // 0.5 s misses
    assert_int_equal(bench_goodput_count(reqs4, 4, &tpot), 2); // 500 ms/token misses
    assert_int_equal(bench_goodput_count(reqs4, 4, &both), 1);
    assert_int_equal(bench_goodput_count(reqs4, 4, &e2e), 2); // the boundary 1000 ms meets it
}

static void test_metrics(void **state) {
    bench_metrics m;
    fl_error err = {0};
    bench_slo slo = {.ttft_ms = 300};
    assert_int_equal(bench_metrics_compute(reqs4, 4, 4.0, &slo, &m, &err), FL_OK);
    assert_int_equal(m.completed, 3);
    assert_int_equal(m.failed, 1);
    assert_int_equal(m.good, 2);
    assert_int_equal(m.total_input, 60);
    assert_int_equal(m.total_output, 16);
    assert_float_equal(m.request_throughput, 0.75, 1e-12);
    assert_float_equal(m.output_throughput, 4, 1e-12);
    assert_float_equal(m.total_token_throughput, 19, 1e-12);
    assert_float_equal(m.request_goodput, 0.5, 1e-12);
    assert_int_equal(m.ttft_ms.n, 3);
    assert_float_equal(m.ttft_ms.mean, 800.0 / 3, 1e-9);
    assert_float_equal(m.ttft_ms.p50, 200, 1e-9);
    assert_int_equal(m.tpot_ms.n, 2); // the one-token request has no TPOT
    assert_float_equal(m.tpot_ms.mean, 300, 1e-9);
    assert_float_equal(m.tpot_ms.p90, 460, 1e-9);
    assert_int_equal(m.itl_ms.n, 13);
    assert_float_equal(m.itl_ms.p50, 100, 1e-9);
    assert_float_equal(m.itl_ms.p99, 500, 1e-9);
    assert_float_equal(m.e2e_ms.p99, 2176, 1e-9); // numpy.percentile([500, 1000, 2200], 99)
    // Nothing completed: every statistic 0.
    assert_int_equal(bench_metrics_compute(reqs4 + 3, 1, 1.0, &slo, &m, &err), FL_OK);
    assert_int_equal(m.completed, 0);
    assert_int_equal(m.failed, 1);
    assert_float_equal(m.ttft_ms.p99 + m.itl_ms.mean + m.request_throughput, 0, 0);
}

static void moments(const double *x, int n, double *mean, double *var) {
    double s = 0, s2 = 0;
    for (int i = 0; i < n; i++)
        s += x[i];
    *mean = s / n;
    for (int i = 0; i < n; i++)
        s2 += (x[i] - *mean) * (x[i] - *mean);
    *var = s2 / (n - 1);
}

#define N_DRAWS 200000

static void test_rng_determinism(void **state) {
    bench_rng a, b;
    bench_rng_seed(&a, 42);
    bench_rng_seed(&b, 42);
    for (int i = 0; i < 100; i++)
        assert_true(bench_rng_next(&a) == bench_rng_next(&b));
    bench_rng_seed(&b, 43);
    assert_true(bench_rng_next(&a) != bench_rng_next(&b));
}

static void test_gamma_moments(void **state) {
    static double x[N_DRAWS];
    const double shapes[] = {0.25, 0.5, 1, 2.5, 8};
    bench_rng r;
    bench_rng_seed(&r, 7);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        double k = shapes[s], scale = 3, mean, var;
        for (int i = 0; i < N_DRAWS; i++) {
            x[i] = bench_rng_gamma(&r, k, scale);
            assert_true(x[i] >= 0);
        }
        moments(x, N_DRAWS, &mean, &var);
        // mean k*scale, variance k*scale^2; the tolerances are several standard errors wide
        assert_float_equal(mean, k * scale, 0.02 * k * scale);
        assert_float_equal(var, k * scale * scale, 0.06 * k * scale * scale);
    }
}

static void test_arrivals(void **state) {
    static double x[N_DRAWS];
    bench_rng r;
    bench_rng_seed(&r, 1);
    const double rate = 4;
    for (double b = 0.5; b <= 2; b *= 2) { // burstiness 0.5, 1 (Poisson), 2
        double mean, var;
        for (int i = 0; i < N_DRAWS; i++)
            x[i] = bench_interval_sample(&r, rate, b);
        moments(x, N_DRAWS, &mean, &var);
        assert_float_equal(mean, 1 / rate, 0.02 / rate);
        assert_float_equal(var, 1 / (rate * rate * b), 0.06 / (rate * rate * b));
    }
    // Poisson: the number of arrivals in 1 s has mean and variance equal to the rate.
    int counts[20000];
    for (int w = 0; w < 20000; w++) {
        double t = bench_interval_sample(&r, rate, 1);
        counts[w] = 0;
        while (t < 1) {
            counts[w]++;
            t += bench_interval_sample(&r, rate, 1);
        }
        x[w] = counts[w];
    }
    double mean, var;
    moments(x, 20000, &mean, &var);
    assert_float_equal(mean, rate, 0.05 * rate);
    assert_float_equal(var, rate, 0.08 * rate);
    assert_float_equal(bench_interval_sample(&r, INFINITY, 1), 0, 0);
}

static void test_uniform_int(void **state) {
    bench_rng r;
    bench_rng_seed(&r, 3);
    int hist[11] = {0};
    for (int i = 0; i < 110000; i++) {
        int v = bench_rng_int(&r, 90, 100);
        assert_in_range(v, 90, 100);
        hist[v - 90]++;
    }
    for (int k = 0; k < 11; k++)
        assert_in_range(hist[k], 9400, 10600);
    assert_int_equal(bench_rng_int(&r, 5, 5), 5);
    for (int i = 0; i < 1000; i++) {
        double u = bench_rng_uniform(&r);
        assert_true(u > 0 && u < 1);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_percentile_linear), cmocka_unit_test(test_percentile_rank),
        cmocka_unit_test(test_dist_summarize),    cmocka_unit_test(test_slo_parse),
        cmocka_unit_test(test_tpot_goodput),      cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_rng_determinism),   cmocka_unit_test(test_gamma_moments),
        cmocka_unit_test(test_arrivals),          cmocka_unit_test(test_uniform_int),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
