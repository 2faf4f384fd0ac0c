// The sampler against TGI 0.9.2's warpers: keep sets computed by running TGI's
// HeterogeneousTopPLogitsWarper / HeterogeneousTypicalLogitsWarper code in torch on the same
// logits (ties included), greedy choice, penalty and temperature math, seeding, and the draw's
// distribution.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "shard/engine/sampler.h"

static sampler *make(const sampling_params *p, int n_vocab) {
    sampler *s = NULL;
    fl_error err = {0};
    assert_int_equal(sampler_create(p, n_vocab, &s, &err), FL_OK);
    return s;
}

static double log_sum_exp(const double *x, int n) {
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < n; i++)
        if (x[i] > mx) mx = x[i];
    for (int i = 0; i < n; i++)
        sum += exp(x[i] - mx);
    return mx + log(sum);
}

// Draws n_draws tokens and returns the set of tokens seen as a bitmask; checks that each
// reported logprob is log(p_i / kept mass) of the given (already penalised / tempered) scores.
static unsigned observed_keep_set(sampling_params p, const float *logits, int n, int n_draws) {
    sampler *s = make(&p, n);
    unsigned seen = 0;
    for (int d = 0; d < n_draws; d++) {
        int32_t tok;
        float lp;
        assert_int_equal(sampler_next(s, logits, NULL, 0, &tok, &lp, NULL), FL_OK);
        assert_true(tok >= 0 && tok < n);
        seen |= 1u << tok;
    }
    sampler_free(s);
    return seen;
}

static unsigned bits(const int *ids, int n) {
    unsigned m = 0;
    for (int i = 0; i < n; i++)
        m |= 1u << ids[i];
    return m;
}

static void test_greedy_argmax(void **state) {
    sampling_params p;
    sampling_params_default(&p);
    assert_false(sampling_params_is_sampling(&p));
    float logits[6] = {0.1f, 2.0f, -1.0f, 3.5f, 3.5f, 1.0f};
    sampler *s = make(&p, 6);
    int32_t tok;
    float lp;
    assert_int_equal(sampler_next(s, logits, NULL, 0, &tok, &lp, NULL), FL_OK);
    assert_int_equal(tok, 3); // first of the tied maxima, as torch.argmax
    double x[6];
    for (int i = 0; i < 6; i++)
        x[i] = logits[i];
    assert_float_equal(lp, 3.5 - log_sum_exp(x, 6), 1e-5);
    sampler_free(s);
}

static void test_repetition_penalty(void **state) {
    sampling_params p;
    sampling_params_default(&p);
    p.repetition_penalty = 2.0f;
    float logits[4] = {2.0f, -2.0f, 1.5f, 0.5f};
    int32_t hist[4] = {0, 1, 1, 0}; // repeats are penalised once
    sampler *s = make(&p, 4);
    int32_t tok;
    float lp;
    assert_int_equal(sampler_next(s, logits, hist, 4, &tok, &lp, NULL), FL_OK);
    // scores become {1.0, -4.0, 1.5, 0.5}: token 2 wins now
    assert_int_equal(tok, 2);
    double x[4] = {1.0, -4.0, 1.5, 0.5};
    assert_float_equal(lp, 1.5 - log_sum_exp(x, 4), 1e-5);
    // the input logits are left unchanged
    assert_true(logits[0] == 2.0f && logits[1] == -2.0f);
    sampler_free(s);
}

static void test_temperature_logprob(void **state) {
    sampling_params p;
    sampling_params_default(&p);
    p.temperature = 0.5f;
    p.seed = 7;
    assert_true(sampling_params_is_sampling(&p)); // temperature forces sampling, as in TGI
    float logits[3] = {1.0f, 0.0f, -1.0f};
    double x[3] = {2.0, 0.0, -2.0};
    sampler *s = make(&p, 3);
    for (int d = 0; d < 50; d++) {
        int32_t tok;
        float lp;
        assert_int_equal(sampler_next(s, logits, NULL, 0, &tok, &lp, NULL), FL_OK);
        assert_float_equal(lp, x[tok] - log_sum_exp(x, 3), 1e-5);
    }
    sampler_free(s);
}

static void test_top_k_keeps_ties(void **state) {
    sampling_params p;
    sampling_params_default(&p);
    p.top_k = 2;
    float logits[5] = {1.0f, 5.0f, 3.0f, 3.0f, 2.0f};
    // kth = 3: scores < 3 go, both 3s stay
    assert_int_equal(observed_keep_set(p, logits, 5, 2000), bits((int[]){1, 2, 3}, 3));
    p.top_k = 100; // larger than the vocabulary: clamped, nothing removed
    assert_int_equal(observed_keep_set(p, logits, 5, 4000), 0x1f);
}

static void test_top_p_keep_sets(void **state) {
    sampling_params p;
    sampling_params_default(&p);
    float a[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
    p.top_p = 0.7f;
    assert_int_equal(observed_keep_set(p, a, 4, 2000), bits((int[]){0, 1}, 2));
    p.top_p = 0.9f;
    assert_int_equal(observed_keep_set(p, a, 4, 2000), bits((int[]){0, 1, 2}, 3));
    // ties: TGI's ascending sort puts lower ids first, so they are removed first
    float b[4] = {1, 1, 1, 1};
    p.top_p = 0.5f;
    assert_int_equal(observed_keep_set(p, b, 4, 2000), bits((int[]){2, 3}, 2));
    p.top_p = 0.6f;
    assert_int_equal(observed_keep_set(p, b, 4, 2000), bits((int[]){1, 2, 3}, 3));
    float c[4] = {1, 2, 2, 0};
    p.top_p = 0.5f;
    assert_int_equal(observed_keep_set(p, c, 4, 2000), bits((int[]){1, 2}, 2));
    p.top_p = 0.8f;
    assert_int_equal(observed_keep_set(p, c, 4, 2000), bits((int[]){0, 1, 2}, 3));
}

static void test_typical_p_keep_sets(void **state) {
    sampling_params p;
    sampling_params_default(&p);
    struct {
        float logits[5];
        int n;
        float mass;
        int keep[5], n_keep;
    } cases[] = {
        {{logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)}, 4, 0.2f, {1}, 1},
        {{logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)}, 4, 0.5f, {0, 1}, 2},
        {{logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)}, 4, 0.9f, {0, 1, 2}, 3},
        {{logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)}, 4, 0.95f, {0, 1, 2}, 3},
        {{2, 1, 0, -1, -2}, 5, 0.2f, {1}, 1},
        {{2, 1, 0, -1, -2}, 5, 0.5f, {0, 1}, 2},
        {{2, 1, 0, -1, -2}, 5, 0.8f, {0, 1}, 2},
        {{1, 1, 0, 0, -3}, 5, 0.2f, {0, 1}, 2}, // the tie with the last kept token survives
        {{1, 1, 0, 0, -3}, 5, 0.6f, {0, 1}, 2},
        {{0, 0, 0, 0}, 4, 0.2f, {0, 1, 2, 3}, 4},
        {{3, -INFINITY, 1, 1, 0.5f}, 5, 0.2f, {0}, 1},
        {{3, -INFINITY, 1, 1, 0.5f}, 5, 0.7f, {0}, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        p.typical_p = cases[i].mass;
        p.seed = i;
        assert_int_equal(observed_keep_set(p, cases[i].logits, cases[i].n, 2000),
                         bits(cases[i].keep, cases[i].n_keep));
    }
}

// TGI's typical-p over the whole vocabulary with a full sort, as the reference for the
// sampler's partial sort on a Falcon-sized vocabulary.
static double typical_kept_mass_full(const float *logits, int n, double mass, unsigned char *keep) {
    double *lp = malloc(sizeof *lp * n), *x = malloc(sizeof *x * n), ent = 0;
    for (int i = 0; i < n; i++)
        x[i] = logits[i];
    double lse = log_sum_exp(x, n);
    for (int i = 0; i < n; i++) {
        lp[i] = x[i] - lse;
        ent -= exp(lp[i]) * lp[i];
    }
    float *shift = malloc(sizeof *shift * n);
    int *order = malloc(sizeof *order * n);
    for (int i = 0; i < n; i++) {
        shift[i] = (float)fabs(-lp[i] - ent);
        order[i] = i;
    }
    for (int i = 1; i < n; i++) { // insertion sort by (shift, id): small n in this test
        int t = order[i], j = i;
        while (j > 0 && (shift[order[j - 1]] > shift[t] ||
                         (shift[order[j - 1]] == shift[t] && order[j - 1] > t))) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = t;
    }
    double cum = 0, kept = 0;
    int last = 0;
    while (last < n && (cum += exp(lp[order[last]])) < mass)
        last++;
    if (last >= n) last = n - 1;
    for (int i = 0; i < n; i++) {
        keep[i] = shift[i] <= shift[order[last]];
        if (keep[i]) kept += exp(lp[i]);
    }
    free(lp), free(x), free(shift), free(order);
    return kept;
}

static void test_typical_p_large_vocab(void **state) {
    enum { N = 8192 };
    float *logits = malloc(sizeof *logits * N);
    unsigned char *keep = malloc(N);
    srand(3);
    for (int i = 0; i < N; i++)
        logits[i] = 8.0f * (float)rand() / RAND_MAX - 4.0f;
    logits[17] = 6.0f, logits[18] = 6.0f, logits[4000] = 5.5f;
    double kept = typical_kept_mass_full(logits, N, 0.2, keep);
    double x[N];
    for (int i = 0; i < N; i++)
        x[i] = logits[i];
    double lse = log_sum_exp(x, N);
    sampling_params p;
    sampling_params_default(&p);
    p.typical_p = 0.2f;
    p.seed = 11;
    sampler *s = make(&p, N);
    for (int d = 0; d < 200; d++) {
        int32_t tok;
        float lp;
        assert_int_equal(sampler_next(s, logits, NULL, 0, &tok, &lp, NULL), FL_OK);
        assert_true(keep[tok]);
        // renormalised over the kept set: log(p / kept)
        assert_float_equal(lp, (x[tok] - lse) - log(kept), 1e-4);
    }
    sampler_free(s);
    free(logits);
    free(keep);
}

static void test_seeded_reproducibility(void **state) {
    enum { N = 50, STEPS = 64 };
    float logits[N];
    for (int i = 0; i < N; i++)
        logits[i] = sinf((float)i);
    sampling_params p;
    sampling_params_default(&p);
    p.do_sample = 1;
    int32_t seq[3][STEPS];
    uint64_t seeds[3] = {42, 42, 43};
    for (int r = 0; r < 3; r++) {
        p.seed = seeds[r];
        sampler *s = make(&p, N);
        for (int t = 0; t < STEPS; t++) {
            float lp;
            assert_int_equal(sampler_next(s, logits, NULL, 0, &seq[r][t], &lp, NULL), FL_OK);
        }
        sampler_free(s);
    }
    assert_memory_equal(seq[0], seq[1], sizeof seq[0]);
    assert_memory_not_equal(seq[0], seq[2], sizeof seq[0]);
}

static void test_distribution(void **state) {
    enum { DRAWS = 40000 };
    const double prob[4] = {0.1, 0.2, 0.3, 0.4};
    float logits[4];
    for (int i = 0; i < 4; i++)
        logits[i] = logf((float)prob[i]);
    sampling_params p;
    sampling_params_default(&p);
    p.do_sample = 1;
    p.seed = 1234;
    sampler *s = make(&p, 4);
    int count[4] = {0};
    for (int d = 0; d < DRAWS; d++) {
        int32_t tok;
        float lp;
        assert_int_equal(sampler_next(s, logits, NULL, 0, &tok, &lp, NULL), FL_OK);
        count[tok]++;
    }
    sampler_free(s);
    double chi2 = 0;
    for (int i = 0; i < 4; i++) {
        double e = DRAWS * prob[i];
        chi2 += (count[i] - e) * (count[i] - e) / e;
    }
    assert_true(chi2 < 16.27); // 3 degrees of freedom, p = 0.001
}

static void test_invalid_input(void **state) {
    sampling_params p;
    sampling_params_default(&p);
    sampler *s = NULL;
    fl_error err = {0};
    p.temperature = 0.0f;
    assert_int_equal(sampler_create(&p, 4, &s, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "temperature"));
    sampling_params_default(&p);
    p.top_p = 1.5f;
    assert_int_equal(sampler_create(&p, 4, &s, &err), FL_EINVAL);
    sampling_params_default(&p);
    p.typical_p = 0.0f;
    assert_int_equal(sampler_create(&p, 4, &s, &err), FL_EINVAL);
    sampling_params_default(&p);
    p.top_k = -1;
    assert_int_equal(sampler_create(&p, 4, &s, &err), FL_EINVAL);

    sampling_params_default(&p);
    s = make(&p, 3);
    int32_t tok;
    float lp;
    float nan_logits[3] = {0.0f, NAN, 1.0f};
    assert_int_equal(sampler_next(s, nan_logits, NULL, 0, &tok, &lp, &err), FL_EINVAL);
    float inf_logits[3] = {-INFINITY, -INFINITY, -INFINITY};
    assert_int_equal(sampler_next(s, inf_logits, NULL, 0, &tok, &lp, &err), FL_EINVAL);
    sampler_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_argmax),         cmocka_unit_test(test_repetition_penalty),
        cmocka_unit_test(test_temperature_logprob),   cmocka_unit_test(test_top_k_keeps_ties),
        cmocka_unit_test(test_top_p_keep_sets),       cmocka_unit_test(test_typical_p_keep_sets),
        cmocka_unit_test(test_typical_p_large_vocab), cmocka_unit_test(test_seeded_reproducibility),
        cmocka_unit_test(test_distribution),          cmocka_unit_test(test_invalid_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
