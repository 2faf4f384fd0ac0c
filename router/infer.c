#include "router/infer.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/metrics.h"

struct infer {
    infer_config cfg;
    queue *q;
    const tokenizer *tok;
    atomic_int in_flight;
};

infer *infer_create(const infer_config *cfg, queue *q, const tokenizer *tok) {
    infer *inf = calloc(1, sizeof *inf);
    if (!inf) return NULL;
    inf->cfg = *cfg;
    inf->q = q;
    inf->tok = tok;
    atomic_init(&inf->in_flight, 0);
    return inf;
}

void infer_free(infer *inf) {
    free(inf);
}
const tokenizer *infer_tokenizer(const infer *inf) {
    return inf->tok;
}

fl_code infer_tokenize(infer *inf, const char *text, size_t len, int32_t **ids, int *n,
                       fl_error *err) {
    return tokenizer_encode(inf->tok, text, len, ids, n, err);
}

// TGI's semaphore try_acquire: never waits.
static bool permits_acquire(infer *inf, int n) {
    int cur = atomic_load(&inf->in_flight);
    do {
        if (cur + n > (int)inf->cfg.max_concurrent_requests) return false;
    } while (!atomic_compare_exchange_weak(&inf->in_flight, &cur, cur + n));
    return true;
}

static void permits_release(infer *inf, int n) {
    atomic_fetch_sub(&inf->in_flight, n);
}

static void result_clear(gen_result *r) {
    free(r->generated_text);
    for (int i = 0; i < r->n_prefill; i++)
        free(r->prefill[i].text);
    free(r->prefill);
    for (int i = 0; i < r->n_tokens; i++)
        free(r->tokens[i].text);
    free(r->tokens);
    memset(r, 0, sizeof *r);
}

void gen_outcome_clear(gen_outcome *o) {
    for (int i = 0; i < o->n_results; i++)
        result_clear(&o->results[i]);
    free(o->results);
    o->results = NULL;
    o->n_results = 0;
}

static void outcome_error(gen_outcome *o, gen_error_kind kind, const char *fmt, const char *msg) {
    o->failed = true;
    o->error_kind = kind;
    snprintf(o->error, sizeof o->error, fmt, msg);
}

// Validation shared by both paths; counts the request and its failures as TGI does.
static bool validate(infer *inf, gen_request_in *in, gen_request **out, gen_outcome *o) {
    double t0 = time_now();
    fl_error err = {0};
    if (validate_request(&inf->cfg.limits, inf->tok, in, out, &err) != FL_OK) {
        metrics_request_failure(METRIC_ERR_VALIDATION);
        outcome_error(o, GEN_ERR_VALIDATION, "Input validation error: %s", err.msg);
        return false;
    }
    metrics_observe(METRIC_REQUEST_VALIDATION_DURATION, time_now() - t0);
    metrics_observe(METRIC_REQUEST_INPUT_LENGTH, (*out)->n_input);
    metrics_observe(METRIC_REQUEST_MAX_NEW_TOKENS, (*out)->params.max_new_tokens);
    return true;
}

static bool enqueue(infer *inf, gen_request *req, gen_sink sink) {
    queue_entry *e = queue_entry_create(req, sink);
    if (!e) {
        gen_request_free(req);
        if (sink.release) sink.release(sink.user);
        return false;
    }
    if (!queue_append(inf->q, e)) {
        gen_event *ev = gen_event_error(GEN_ERR_UNHEALTHY, "the server is shutting down");
        if (ev) sink.send(sink.user, ev);
        queue_entry_free(e);
        return false;
    }
    metrics_set_queue_size(queue_len(inf->q));
    return true;
}

// ---- streaming -------------------------------------------------------------------------------

typedef struct stream_wrap {
    infer *inf;
    gen_sink inner;
} stream_wrap;

static bool stream_send(void *user, gen_event *ev) {
    stream_wrap *w = user;
    return w->inner.send(w->inner.user, ev);
}

static bool stream_alive(void *user) {
    stream_wrap *w = user;
    return !w->inner.alive || w->inner.alive(w->inner.user);
}

static void stream_release(void *user) {
    stream_wrap *w = user;
    if (w->inner.release) w->inner.release(w->inner.user);
    permits_release(w->inf, 1);
    free(w);
}

bool infer_stream(infer *inf, gen_request_in *in, gen_sink sink, gen_error_kind *kind, char *msg,
                  size_t msg_cap) {
    metrics_request_count();
    gen_outcome o = {0};
    gen_request *req = NULL;
    if (in->params.has_best_of && in->params.best_of != 1) {
        metrics_request_failure(METRIC_ERR_VALIDATION);
        outcome_error(&o, GEN_ERR_VALIDATION, "Input validation error: %s",
                      "`best_of` != 1 is not supported when streaming tokens");
    } else if (in->params.decoder_input_details) {
        metrics_request_failure(METRIC_ERR_VALIDATION);
        outcome_error(&o, GEN_ERR_VALIDATION, "Input validation error: %s",
                      "`decoder_input_details` == true is not supported when streaming tokens");
    } else if (!permits_acquire(inf, 1)) {
        metrics_request_failure(METRIC_ERR_OVERLOADED);
        outcome_error(&o, GEN_ERR_OVERLOADED, "%s", "Model is overloaded");
    } else if (!validate(inf, in, &req, &o)) {
        permits_release(inf, 1);
    }
    if (o.failed) {
        *kind = o.error_kind;
        snprintf(msg, msg_cap, "%s", o.error);
        return false;
    }
    stream_wrap *w = malloc(sizeof *w);
    if (!w) {
        permits_release(inf, 1);
        gen_request_free(req);
        *kind = GEN_ERR_GENERATION;
        snprintf(msg, msg_cap, "out of memory");
        return false;
    }
    w->inf = inf;
    w->inner = sink;
    enqueue(inf, req, (gen_sink){stream_send, stream_alive, stream_release, w});
    return true;
}

// ---- gathering (generate, best_of) ------------------------------------------------------------

typedef struct gather {
    infer *inf;
    infer_waiter w;
    pthread_mutex_t mu;
    int n_cand, n_done;
    gen_result *results;     // [n_cand]
    bool *ended;             // [n_cand]
    struct candidate *cands; // [n_cand]
    bool failed;
    gen_error_kind kind;
    char error[640];
    double t_start;
} gather;

typedef struct candidate {
    gather *g;
    int idx;
} candidate;

static bool token_push(gen_result *r, gen_token *t) {
    if ((r->n_tokens & (r->n_tokens - 1)) == 0) { // grow at powers of two
        gen_token *p = realloc(r->tokens, sizeof *p * (size_t)(r->n_tokens ? r->n_tokens * 2 : 1));
        if (!p) return false;
        r->tokens = p;
    }
    r->tokens[r->n_tokens++] = *t;
    t->text = NULL;
    return true;
}

static bool cand_send(void *user, gen_event *ev) {
    candidate *c = user;
    gather *g = c->g;
    pthread_mutex_lock(&g->mu);
    gen_result *r = &g->results[c->idx];
    switch (ev->kind) {
    case GEN_EVENT_PREFILL:
        r->prefill = ev->prefill;
        r->n_prefill = ev->n_prefill;
        ev->prefill = NULL;
        ev->n_prefill = 0;
        break;
    case GEN_EVENT_TOKEN:
        token_push(r, &ev->token);
        break;
    case GEN_EVENT_END:
        token_push(r, &ev->token);
        r->generated_text = ev->generated_text;
        ev->generated_text = NULL;
        r->finish = ev->finish;
        r->generated_tokens = ev->generated_tokens;
        r->n_input = ev->n_input;
        r->has_seed = ev->has_seed;
        r->seed = ev->seed;
        r->t_queued = ev->t_queued;
        r->t_batched = ev->t_batched;
        r->t_end = ev->t_end;
        g->ended[c->idx] = true;
        break;
    case GEN_EVENT_ERROR:
        if (!g->failed) {
            g->failed = true;
            g->kind = ev->error_kind;
            snprintf(g->error, sizeof g->error, "%s", ev->error);
        }
        break;
    }
    pthread_mutex_unlock(&g->mu);
    gen_event_free(ev);
    return !g->w.alive || g->w.alive(g->w.user);
}

static bool cand_alive(void *user) {
    candidate *c = user;
    return !c->g->w.alive || c->g->w.alive(c->g->w.user);
}

static double mean_logprob(const gen_result *r) {
    double s = 0;
    for (int i = 0; i < r->n_tokens; i++)
        s += r->tokens[i].logprob;
    return r->n_tokens ? s / r->n_tokens : -INFINITY;
}

static void gather_finish(gather *g) {
    gen_outcome o = {0};
    o.t_start = g->t_start;
    bool complete = true;
    for (int i = 0; i < g->n_cand; i++)
        complete = complete && g->ended[i];
    if (g->failed) {
        outcome_error(&o, g->kind, "%s", g->error);
    } else if (!complete) {
        metrics_request_failure(METRIC_ERR_INCOMPLETE);
        outcome_error(&o, GEN_ERR_INCOMPLETE, "%s", "Incomplete generation");
    } else {
        int best = 0;
        for (int i = 1; i < g->n_cand; i++)
            if (mean_logprob(&g->results[i]) > mean_logprob(&g->results[best])) best = i;
        gen_result tmp = g->results[0];
        g->results[0] = g->results[best];
        g->results[best] = tmp;
        o.results = g->results;
        o.n_results = g->n_cand;
        g->results = NULL;
    }
    if (g->results) {
        for (int i = 0; i < g->n_cand; i++)
            result_clear(&g->results[i]);
        free(g->results);
    }
    g->w.done(g->w.user, &o);
    pthread_mutex_destroy(&g->mu);
    free(g->ended);
    free(g->cands);
    free(g);
}

static void cand_release(void *user) {
    candidate *c = user;
    gather *g = c->g;
    pthread_mutex_lock(&g->mu);
    bool last = ++g->n_done == g->n_cand;
    pthread_mutex_unlock(&g->mu);
    permits_release(g->inf, 1);
    if (last) gather_finish(g);
}

void infer_generate(infer *inf, gen_request_in *in, infer_waiter w) {
    metrics_request_count();
    gen_outcome o = {.t_start = time_now()};
    uint32_t best_of =
        in->params.has_best_of && in->params.best_of > 1 ? (uint32_t)in->params.best_of : 1;
    gen_request *req = NULL;
    fl_error err = {0};
    if (best_of > 1 && validate_best_of(&inf->cfg.limits, best_of, &err) != FL_OK) {
        metrics_request_failure(METRIC_ERR_VALIDATION);
        outcome_error(&o, GEN_ERR_VALIDATION, "Input validation error: %s", err.msg);
    } else if (!permits_acquire(inf, (int)best_of)) {
        metrics_request_failure(METRIC_ERR_OVERLOADED);
        outcome_error(&o, GEN_ERR_OVERLOADED, "%s", "Model is overloaded");
    } else if (!validate(inf, in, &req, &o)) {
        permits_release(inf, (int)best_of);
    }
    gather *g = o.failed ? NULL : calloc(1, sizeof *g);
    if (g) {
        g->results = calloc(best_of, sizeof *g->results);
        g->ended = calloc(best_of, sizeof *g->ended);
        g->cands = calloc(best_of, sizeof *g->cands);
    }
    if (!o.failed && (!g || !g->results || !g->ended || !g->cands)) {
        permits_release(inf, (int)best_of);
        gen_request_free(req);
        outcome_error(&o, GEN_ERR_GENERATION, "%s", "out of memory");
    }
    if (o.failed) {
        if (g) free(g->results), free(g->ended), free(g->cands), free(g);
        w.done(w.user, &o);
        return;
    }
    g->inf = inf;
    g->w = w;
    g->n_cand = (int)best_of;
    g->t_start = o.t_start;
    pthread_mutex_init(&g->mu, NULL);
    for (int i = 0; i < (int)best_of; i++) {
        candidate *c = &g->cands[i];
        c->g = g;
        c->idx = i;
        // Each candidate samples with its own seed (best_of > 1 forbids a client seed).
        gen_request *r = i == 0 ? req : gen_request_clone(req);
        if (!r) {
            // A failed candidate still completes the gather.
            pthread_mutex_lock(&g->mu);
            g->failed = true;
            g->kind = GEN_ERR_GENERATION;
            snprintf(g->error, sizeof g->error, "out of memory");
            pthread_mutex_unlock(&g->mu);
            cand_release(c);
            continue;
        }
        if (i > 0) r->params.seed = validate_random_seed();
        enqueue(inf, r, (gen_sink){cand_send, cand_alive, cand_release, c});
    }
}
