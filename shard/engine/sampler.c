#include "shard/engine/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define HIST_BINS 2048 // histogram resolution for picking sort candidates

typedef struct cand {
    float key;
    int32_t idx;
} cand;

struct sampler {
    sampling_params p;
    int sampling; // sampling_params_is_sampling(&p), fixed at creation
    int n_vocab;
    uint64_t rng[4]; // xoshiro256** state
    float *scores;   // [n_vocab] logits being warped
    double *probs;   // [n_vocab] softmax of scores
    float *keys;     // [n_vocab] sort keys (top-p, typical-p) or a quickselect copy (top-k)
    uint8_t *mark;   // [n_vocab] seen-token flags (repetition penalty), keep flags (warpers)
    cand *cands;     // [n_vocab] sorted candidates
};

void sampling_params_default(sampling_params *p) {
    *p = (sampling_params){.temperature = 1.0f,
                           .top_k = 0,
                           .top_p = 1.0f,
                           .typical_p = 1.0f,
                           .repetition_penalty = 1.0f,
                           .do_sample = 0,
                           .seed = 0};
}

// TGI's HeterogeneousNextTokenChooser turns sampling on for a row whose temperature != 1,
// top_k != 0, top_p < 1 or typical_p < 1 (a warper only runs when it is not neutral).
int sampling_params_is_sampling(const sampling_params *p) {
    return p->do_sample || p->temperature != 1.0f || p->top_k != 0 || p->top_p < 1.0f ||
           p->typical_p < 1.0f;
}

// ---- random numbers: xoshiro256**, seeded through splitmix64

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

static uint64_t sampler_rng_next(sampler *s) {
    uint64_t *q = s->rng;
    uint64_t result = rotl(q[1] * 5, 7) * 9, t = q[1] << 17;
    q[2] ^= q[0];
    q[3] ^= q[1];
    q[1] ^= q[2];
    q[0] ^= q[3];
    q[2] ^= t;
    q[3] = rotl(q[3], 45);
    return result;
}

static double sampler_rng_uniform(sampler *s) { // [0, 1)
    return (double)(sampler_rng_next(s) >> 11) * 0x1.0p-53;
}

fl_code sampler_create(const sampling_params *p, int n_vocab, sampler **out, fl_error *err) {
    if (!(p->temperature > 0.0f))
        return fl_error_set(err, FL_EINVAL, "sampler: temperature must be strictly positive (%g)",
                            p->temperature);
    if (!(p->repetition_penalty > 0.0f))
        return fl_error_set(err, FL_EINVAL,
                            "sampler: repetition_penalty must be strictly positive (%g)",
                            p->repetition_penalty);
    if (p->top_k < 0)
        return fl_error_set(err, FL_EINVAL, "sampler: top_k must not be negative (%d)", p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return fl_error_set(err, FL_EINVAL, "sampler: top_p must be in (0, 1] (%g)", p->top_p);
    if (!(p->typical_p > 0.0f && p->typical_p <= 1.0f))
        return fl_error_set(err, FL_EINVAL, "sampler: typical_p must be in (0, 1] (%g)",
                            p->typical_p);
    if (n_vocab < 1) return fl_error_set(err, FL_EINVAL, "sampler: n_vocab %d < 1", n_vocab);
    sampler *s = calloc(1, sizeof *s);
    if (!s) return fl_error_set(err, FL_ENOMEM, "sampler: out of memory");
    s->p = *p;
    s->sampling = sampling_params_is_sampling(p);
    s->n_vocab = n_vocab;
    uint64_t x = p->seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&x);
    s->scores = malloc(sizeof *s->scores * n_vocab);
    s->probs = malloc(sizeof *s->probs * n_vocab);
    s->keys = malloc(sizeof *s->keys * n_vocab);
    s->mark = calloc(n_vocab, 1);
    s->cands = malloc(sizeof *s->cands * n_vocab);
    if (!s->scores || !s->probs || !s->keys || !s->mark || !s->cands) {
        sampler_free(s);
        return fl_error_set(err, FL_ENOMEM, "sampler: out of memory for %d logits", n_vocab);
    }
    *out = s;
    return FL_OK;
}

void sampler_free(sampler *s) {
    if (!s) return;
    free(s->scores);
    free(s->probs);
    free(s->keys);
    free(s->mark);
    free(s->cands);
    free(s);
}

// probs = softmax(scores) (0 where a score is -inf); returns log(sum(exp(scores))).
static double sampler_softmax(sampler *s) {
    int n = s->n_vocab;
    float mx = -INFINITY;
    for (int i = 0; i < n; i++)
        if (s->scores[i] > mx) mx = s->scores[i];
    double sum = 0.0;
    for (int i = 0; i < n; i++) { // expf: the double exp would cost most of a sampling step
        s->probs[i] = expf(s->scores[i] - mx);
        sum += s->probs[i];
    }
    double inv = 1.0 / sum;
    for (int i = 0; i < n; i++)
        s->probs[i] *= inv;
    return mx + log(sum);
}

// Removes (sets to -inf) every score whose mark is 0, and clears the marks.
static void sampler_apply_keep(sampler *s) {
    for (int i = 0; i < s->n_vocab; i++) {
        if (!s->mark[i]) s->scores[i] = -INFINITY;
        s->mark[i] = 0;
    }
}

// TGI's HeterogeneousRepetitionPenaltyLogitsProcessor: gather the scores of the tokens seen so
// far, score < 0 ? score * p : score / p, scatter back (a repeated token is penalised once).
// TGI also penalises token 0 through its zero-padded history in mixed batches; we don't, so a
// request's output does not depend on its batch.
static void sampler_penalize(sampler *s, const int32_t *history, int n_history) {
    float pen = s->p.repetition_penalty;
    for (int i = 0; i < n_history; i++) {
        int32_t t = history[i];
        if (t < 0 || t >= s->n_vocab || s->mark[t]) continue;
        s->mark[t] = 1;
        float v = s->scores[t];
        s->scores[t] = v < 0 ? v * pen : v / pen;
    }
    for (int i = 0; i < n_history; i++)
        if (history[i] >= 0 && history[i] < s->n_vocab) s->mark[history[i]] = 0;
}

// k-th largest value of a[0..n) (k >= 1), by quickselect; a is reordered.
static float kth_largest(float *a, int n, int k) {
    int lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        float pivot = a[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (a[i] > pivot)
                i++;
            while (a[j] < pivot)
                j--;
            if (i <= j) {
                float t = a[i];
                a[i++] = a[j];
                a[j--] = t;
            }
        }
        if (want <= j)
            hi = j;
        else if (want >= i)
            lo = i;
        else
            return a[want];
    }
    return a[want];
}

// TGI's top-k: kth = k-th largest score; scores < kth are removed (ties with kth survive).
static void sampler_top_k(sampler *s) {
    int n = s->n_vocab, k = s->p.top_k < n ? s->p.top_k : n;
    memcpy(s->keys, s->scores, sizeof *s->keys * n);
    float kth = kth_largest(s->keys, n, k);
    for (int i = 0; i < n; i++)
        if (s->scores[i] < kth) s->scores[i] = -INFINITY;
}

static int cand_cmp_idx_asc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

static int cand_cmp_idx_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return (x->idx < y->idx) - (x->idx > y->idx);
}

// Fills s->cands, sorted by key, with the tokens of smallest keys whose probabilities sum to at
// least mass (whole tie groups included); returns their count. A vocab-wide sort per token would
// dominate a batched decode step, and the warpers only ever look at this head of the order. With
// mass > 1 every token is returned. Keys are keys[i] (+inf where probs[i] == 0).
static int sampler_sorted_head(sampler *s, double mass, int (*cmp)(const void *, const void *)) {
    int n = s->n_vocab, m = 0;
    float kmin = INFINITY, kmax = -INFINITY;
    for (int i = 0; i < n; i++) {
        float k = s->keys[i];
        if (isinf(k)) continue;
        if (k < kmin) kmin = k;
        if (k > kmax) kmax = k;
    }
    if (mass > 1.0 || !(kmin <= kmax)) {
        for (int i = 0; i < n; i++)
            s->cands[m++] = (cand){s->keys[i], i};
    } else {
        double scale = kmax > kmin ? (HIST_BINS - 1) / ((double)kmax - kmin) : 0.0;
        double bins[HIST_BINS] = {0};
        for (int i = 0; i < n; i++)
            if (!isinf(s->keys[i])) bins[(int)((s->keys[i] - kmin) * scale)] += s->probs[i];
        int last = 0;
        double cum = 0.0;
        while (last < HIST_BINS - 1 && (cum += bins[last]) < mass)
            last++;
        for (int i = 0; i < n; i++)
            if (!isinf(s->keys[i]) && (int)((s->keys[i] - kmin) * scale) <= last)
                s->cands[m++] = (cand){s->keys[i], i};
    }
    qsort(s->cands, m, sizeof *s->cands, cmp);
    return m;
}

// TGI's top-p: sort ascending (ties by index), cumsum of softmax, remove where cum <= 1 - top_p,
// always keep the largest. Walking the same order from the top, a token is kept while the
// probability mass strictly above it is < top_p.
static void sampler_top_p(sampler *s) {
    int n = s->n_vocab;
    sampler_softmax(s);
    for (int i = 0; i < n; i++)
        s->keys[i] = s->probs[i] > 0 ? -s->scores[i] : INFINITY;
    double top_p = s->p.top_p;
    int m = sampler_sorted_head(s, top_p, cand_cmp_idx_desc);
    double above = 0.0;
    int j = 0;
    for (; j < m && above < top_p; j++) {
        s->mark[s->cands[j].idx] = 1;
        above += s->probs[s->cands[j].idx];
    }
    if (j == m && above < top_p && m < n) { // rounding left the head short: redo over all
        for (int i = 0; i < m; i++)
            s->mark[s->cands[i].idx] = 0;
        m = sampler_sorted_head(s, 2.0, cand_cmp_idx_desc);
        above = 0.0;
        for (j = 0; j < m && above < top_p; j++) {
            s->mark[s->cands[j].idx] = 1;
            above += s->probs[s->cands[j].idx];
        }
    }
    sampler_apply_keep(s);
}

// TGI's TypicalLogitsWarper (HeterogeneousTypicalLogitsWarper, min_tokens_to_keep 1):
// ent = -sum p log p; shifted = |-log p - ent| sorted ascending; cumsum of the probabilities in
// that order; last_ind = (cum < mass).sum(); remove every token with shifted > shifted[last_ind]
// (so ties with the last kept token survive).
static void sampler_typical_p(sampler *s) {
    int n = s->n_vocab;
    double lse = sampler_softmax(s), ent = 0.0;
    for (int i = 0; i < n; i++)
        if (s->probs[i] > 0) ent -= s->probs[i] * ((double)s->scores[i] - lse);
    for (int i = 0; i < n; i++)
        s->keys[i] = s->probs[i] > 0 ? (float)fabs(-((double)s->scores[i] - lse) - ent) : INFINITY;
    double mass = s->p.typical_p;
    int m = sampler_sorted_head(s, mass, cand_cmp_idx_asc), last_ind = 0;
    double cum = 0.0;
    while (last_ind < m && (cum += s->probs[s->cands[last_ind].idx]) < mass)
        last_ind++;
    if (last_ind == m && m < n) { // rounding left the head short: redo over all
        m = sampler_sorted_head(s, 2.0, cand_cmp_idx_asc);
        cum = 0.0;
        for (last_ind = 0; last_ind < m && (cum += s->probs[s->cands[last_ind].idx]) < mass;)
            last_ind++;
    }
    if (last_ind >= m) last_ind = m - 1;
    float thr = s->cands[last_ind].key;
    for (int i = 0; i < n; i++)
        if (s->keys[i] > thr) s->scores[i] = -INFINITY;
}

// One draw from probs (a distribution over n_vocab tokens) by inversion.
static int32_t sampler_draw(sampler *s) {
    double u = sampler_rng_uniform(s), acc = 0.0;
    int32_t last = 0;
    for (int i = 0; i < s->n_vocab; i++) {
        if (s->probs[i] <= 0) continue;
        acc += s->probs[i];
        last = i;
        if (u < acc) return i;
    }
    return last; // u landed in the rounding gap at the top
}

fl_code sampler_next(sampler *s, const float *logits, const int32_t *history, int n_history,
                     int32_t *token, float *logprob, fl_error *err) {
    int n = s->n_vocab;
    float mx = -INFINITY;
    int nan = 0;
    for (int i = 0; i < n; i++) { // one vectorisable pass: copy, NaN check, maximum
        float x = logits[i];
        s->scores[i] = x;
        nan |= x != x;
        mx = x > mx ? x : mx;
    }
    if (nan) return fl_error_set(err, FL_EINVAL, "sampler: the logits contain NaN");
    if (mx == -INFINITY) return fl_error_set(err, FL_EINVAL, "sampler: no finite logit");

    if (s->p.repetition_penalty != 1.0f) sampler_penalize(s, history, n_history);
    if (s->p.temperature != 1.0f)
        for (int i = 0; i < n; i++)
            s->scores[i] /= s->p.temperature;
    if (s->p.top_k > 0) sampler_top_k(s);
    if (s->p.top_p < 1.0f) sampler_top_p(s);
    if (s->p.typical_p < 1.0f) sampler_typical_p(s);

    double lse;
    int32_t tok = 0;
    if (s->sampling) {
        lse = sampler_softmax(s);
        tok = sampler_draw(s);
    } else { // greedy needs no probabilities, only their normaliser
        for (int i = 1; i < n; i++)
            if (s->scores[i] > s->scores[tok]) tok = i; // first maximum, as torch.argmax
        double sum = 0.0;
        for (int i = 0; i < n; i++)
            sum += expf(s->scores[i] - s->scores[tok]);
        lse = s->scores[tok] + log(sum);
    }
    *token = tok;
    // TGI 0.9.2 (HeterogeneousNextTokenChooser.__call__) reports
    // log_softmax(scores)[next_id] with scores after the penalty and every warper, so the value
    // is renormalised over the tokens that top-k / top-p / typical-p kept.
    *logprob = (float)((double)s->scores[tok] - lse);
    return FL_OK;
}
