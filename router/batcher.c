#define _GNU_SOURCE // pthread_timedjoin_np
#include "router/batcher.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "router/metrics.h"
#include "router/stream.h"

struct batcher {
    batcher_config cfg;
    queue *q;
    const shard_api *api;
    const tokenizer *tok;
    pthread_t thread;
    bool started;
    atomic_bool healthy;
    atomic_bool abort; // grace period over: fail everything still running
    uint64_t next_batch_id;
    queue_entry **scratch; // [cfg.max_batch_requests]
};

// A request in the shards' batch: its queue entry and the stream of events its client reads.
typedef struct running {
    queue_entry *e;
    stream *s;
    bool started; // a generation arrived (false: still prefilling in chunks)
} running;

// The requests of one (possibly merged) cached batch, by id.
typedef struct running_set {
    running *r;
    int n, cap;
} running_set;

static void running_free(running *r) {
    stream_free(r->s);
    queue_entry_free(r->e);
}

// Sends e its terminal error and frees it.
static void entry_fail(queue_entry *e, gen_error_kind kind, const char *msg) {
    gen_event *ev = gen_event_error(kind, msg);
    if (ev) e->sink.send(e->sink.user, ev);
    metrics_request_failure(kind == GEN_ERR_GENERATION ? METRIC_ERR_GENERATION
                                                       : METRIC_ERR_INCOMPLETE);
    queue_entry_free(e);
}

static bool set_reserve(running_set *s) {
    if (s->n < s->cap) return true;
    int cap = s->cap ? s->cap * 2 : 16;
    running *p = realloc(s->r, sizeof *p * (size_t)cap);
    if (!p) return false;
    s->r = p;
    s->cap = cap;
    return true;
}

// Adds e with a new stream. Returns false when out of memory: e then got its error and is freed.
static bool set_add(running_set *s, queue_entry *e, const tokenizer *tok) {
    stream *st = set_reserve(s) ? stream_create(e->req, tok) : NULL;
    if (!st) {
        entry_fail(e, GEN_ERR_GENERATION, "Request failed during generation: out of memory");
        return false;
    }
    s->r[s->n++] = (running){e, st, false};
    return true;
}

static int set_find(const running_set *s, uint64_t id) {
    for (int i = 0; i < s->n; i++)
        if (s->r[i].e->id == id) return i;
    return -1;
}

// Removes and frees request i (order is not kept: the shards' batch order is what matters).
static void set_drop(running_set *s, int i) {
    running_free(&s->r[i]);
    s->r[i] = s->r[--s->n];
}

static void set_fail_all(running_set *s, gen_error_kind kind, const char *msg) {
    for (int i = 0; i < s->n; i++) {
        stream_free(s->r[i].s);
        entry_fail(s->r[i].e, kind, msg);
    }
    s->n = 0;
}

static void set_merge(running_set *dst, running_set *src) {
    for (int i = 0; i < src->n; i++) {
        if (set_reserve(dst)) {
            dst->r[dst->n++] = src->r[i];
        } else {
            stream_free(src->r[i].s);
            entry_fail(src->r[i].e, GEN_ERR_GENERATION,
                       "Request failed during generation: out of memory");
        }
    }
    src->n = 0;
}

static bool entry_send(queue_entry *e, gen_event *ev) {
    return !ev || e->sink.send(e->sink.user, ev);
}

static void observe_end(const queue_entry *e, const gen_event *ev) {
    double infer = ev->t_end - e->t_batched;
    metrics_request_success();
    metrics_observe(METRIC_REQUEST_DURATION, ev->t_end - e->t_queued);
    metrics_observe(METRIC_REQUEST_QUEUE_DURATION, e->t_batched - e->t_queued);
    metrics_observe(METRIC_REQUEST_INFERENCE_DURATION, infer);
    metrics_observe(METRIC_REQUEST_MEAN_TIME_PER_TOKEN_DURATION,
                    ev->generated_tokens ? infer / ev->generated_tokens : 0);
    metrics_observe(METRIC_REQUEST_GENERATED_TOKENS, ev->generated_tokens);
}

// Delivers one generation to its request. Returns true when the request stays in the batch.
static bool handle_generation(running *r, const shard_generation *g) {
    queue_entry *e = r->e;
    r->started = true;
    if (g->n_prefill > 0 && !entry_send(e, stream_prefill_event(r->s, g))) return false;
    gen_event *ev = stream_push(r->s, g);
    if (!ev) return true;
    if (ev->kind == GEN_EVENT_TOKEN) {
        if (!entry_send(e, ev)) {
            metrics_request_failure(METRIC_ERR_DROPPED);
            return false;
        }
        return true;
    }
    ev->t_queued = e->t_queued;
    ev->t_batched = e->t_batched;
    ev->t_end = time_now();
    observe_end(e, ev);
    log_debug("request done id=%llu tokens=%u reason=%s", (unsigned long long)e->id,
              ev->generated_tokens, finish_reason_name(ev->finish));
    entry_send(e, ev);
    return false;
}

// TGI filter_send_generations: entries that finished or whose client left leave the set.
static void send_generations(const shard_step *step, running_set *set) {
    for (int i = 0; i < step->n_gens; i++) {
        const shard_generation *g = &step->gens[i];
        int k = set_find(set, g->request_id);
        if (k < 0) continue; // already dropped by the router
        if (!handle_generation(&set->r[k], g)) set_drop(set, k);
    }
}

// TGI filter_batch: keeps the shards' batch in line with the live entries. Returns whether a
// batch is left (in *batch).
static bool filter_batch(batcher *b, cached_batch *batch, running_set *set) {
    uint64_t *keep = malloc(sizeof *keep * (size_t)(batch->n ? batch->n : 1));
    int n_keep = 0;
    for (int i = 0; keep && i < batch->n; i++)
        if (set_find(set, batch->request_ids[i]) >= 0) keep[n_keep++] = batch->request_ids[i];
    // The set may also hold requests the shards finished in this step (their last token is not
    // delivered yet); only requests the router dropped need a FilterBatch.
    if (keep && n_keep == batch->n) {
        free(keep);
        return true;
    }
    fl_error err = {0};
    fl_code rc;
    if (n_keep == 0) {
        rc = b->api->clear(b->api->self, batch->id, &err);
        free(keep);
        cached_batch_clear(batch);
        if (rc != FL_OK)
            log_error("ClearCache batch=%llu failed: %s", (unsigned long long)batch->id, err.msg);
        return false;
    }
    cached_batch filtered = {0};
    rc = b->api->filter(b->api->self, batch->id, keep, n_keep, &filtered, &err);
    free(keep);
    if (rc != FL_OK) {
        // TGI panics here; failing the batch's requests keeps the router serving.
        log_error("FilterBatch batch=%llu failed: %s", (unsigned long long)batch->id, err.msg);
        char msg[600];
        snprintf(msg, sizeof msg, "Request failed during generation: %s", err.msg);
        b->api->clear(b->api->self, batch->id, NULL);
        set_fail_all(set, GEN_ERR_GENERATION, msg);
        cached_batch_clear(batch);
        atomic_store(&b->healthy, false);
        return false;
    }
    cached_batch_clear(batch);
    *batch = filtered;
    return true;
}

// Metrics and failure handling of one Prefill or Decode: false when it failed (the set's
// requests then got their errors and the step is cleared).
static bool step_ok(batcher *b, fl_code rc, const fl_error *err, shard_step *step,
                    const uint64_t *batch_ids, int n_batches, running_set *set,
                    metric_method method, double t0) {
    metrics_batch_inference(method, rc == FL_OK, time_now() - t0);
    if (rc == FL_OK) {
        atomic_store(&b->healthy, true);
        return true;
    }
    log_error("%s failed: %s", method == METRIC_PREFILL ? "Prefill" : "Decode", err->msg);
    for (int i = 0; i < n_batches; i++)
        b->api->clear(b->api->self, batch_ids[i], NULL);
    char msg[600];
    snprintf(msg, sizeof msg, "Request failed during generation: %s", err->msg);
    set_fail_all(set, GEN_ERR_GENERATION, msg);
    atomic_store(&b->healthy, false);
    shard_step_clear(step);
    return false;
}

// A request still prefilling in chunks gets no events, so its client leaving shows only here.
static void drop_departed(running_set *set) {
    for (int i = 0; i < set->n; i++) {
        const gen_sink *sink = &set->r[i].e->sink;
        if (set->r[i].started || !sink->alive || sink->alive(sink->user)) continue;
        log_debug("request left while prefilling id=%llu", (unsigned long long)set->r[i].e->id);
        metrics_request_failure(METRIC_ERR_DROPPED);
        set_drop(set, i--);
    }
}

// Takes the step's cached batch into *out, without the requests that left the set (or whose
// client left while they were prefilling). Returns whether a batch is left.
static bool step_batch(batcher *b, shard_step *step, running_set *set, cached_batch *out) {
    if (!step->has_batch) return false;
    drop_departed(set);
    *out = step->batch;
    memset(&step->batch, 0, sizeof step->batch);
    return filter_batch(b, out, set);
}

// Delivers a step's generations and frees it.
static void step_deliver(shard_step *step, running_set *set) {
    send_generations(step, set);
    shard_step_clear(step);
}

static bool prefill(batcher *b, queue_entry **entries, int n, uint32_t max_tokens, running_set *set,
                    cached_batch *out) {
    shard_request *reqs = calloc((size_t)n, sizeof *reqs);
    int m = 0; // requests that joined the set
    for (int i = 0; i < n; i++) {
        queue_entry *e = entries[i];
        if (!set_add(set, e, b->tok)) continue;
        if (reqs)
            reqs[m] = (shard_request){.id = e->id,
                                      .input_ids = e->req->input_ids,
                                      .n_input = e->req->n_input,
                                      .params = &e->req->params};
        m++;
    }
    if (m == 0) { // every request failed already (out of memory)
        free(reqs);
        return false;
    }
    shard_batch batch = {.id = b->next_batch_id++,
                         .requests = reqs,
                         .n = m,
                         .max_tokens = max_tokens,
                         .prefill_chunk_tokens = b->cfg.prefill_chunk_tokens};
    metrics_observe(METRIC_BATCH_NEXT_SIZE, m);
    shard_step step = {0};
    fl_error err = {0};
    double t0 = time_now();
    fl_code rc = reqs ? b->api->prefill(b->api->self, &batch, &step, &err)
                      : fl_error_set(&err, FL_ENOMEM, "out of memory");
    free(reqs);
    if (!step_ok(b, rc, &err, &step, &batch.id, 1, set, METRIC_PREFILL, t0)) return false;
    send_generations(&step, set);
    bool has = step_batch(b, &step, set, out);
    shard_step_clear(&step);
    if (!has) set_fail_all(set, GEN_ERR_INCOMPLETE, "Incomplete generation"); // should be empty
    return has;
}

// One decode step, pipelined with the delivery of the previous one: the Decode is sent first,
// then *pending (the previous step's generations: detokenization, stop sequences, client writes)
// is delivered while the shards compute, then the reply is awaited and becomes the new *pending.
// A request that stopped or lost its client in *pending is thus computed one step more; its
// token from this step is discarded (send_generations skips requests no longer in the set) and
// it is filtered out of the shards' batch now, before the next step. Returns whether a cached
// batch is left (in *out).
static bool decode(batcher *b, cached_batch *batches, int n, running_set *set, shard_step *pending,
                   cached_batch *out) {
    shard_step step = {0};
    fl_error err = {0};
    uint64_t ids[2];
    for (int i = 0; i < n; i++)
        ids[i] = batches[i].id;
    double t0 = time_now();
    fl_code rc = b->api->decode_start(b->api->self, batches, n, &err);
    for (int i = 0; i < n; i++)
        cached_batch_clear(&batches[i]);
    step_deliver(pending, set);
    if (rc == FL_OK) rc = b->api->decode_finish(b->api->self, &step, &err);
    if (!step_ok(b, rc, &err, &step, ids, n, set, METRIC_DECODE, t0)) return false;
    bool has = step_batch(b, &step, set, out);
    *pending = step;
    return has;
}

static int next_batch(batcher *b, int min_size, uint32_t token_budget, uint32_t *max_tokens) {
    int dropped = 0;
    int n = queue_next_batch(b->q, min_size, b->cfg.max_batch_prefill_tokens, token_budget,
                             b->scratch, b->cfg.max_batch_requests, max_tokens, &dropped);
    for (int i = 0; i < dropped; i++)
        metrics_request_failure(METRIC_ERR_DROPPED);
    metrics_set_queue_size(queue_len(b->q));
    return n;
}

// One pass of TGI's outer loop: runs batches until the queue yields nothing more.
static void run_batches(batcher *b) {
    uint32_t max_tokens = 0;
    int n;
    running_set set = {0}, fresh = {0};
    while (!atomic_load(&b->abort) &&
           (n = next_batch(b, 0, b->cfg.max_batch_total_tokens, &max_tokens)) > 0) {
        cached_batch batches[2];
        memset(batches, 0, sizeof batches);
        shard_step pending = {0}; // the last decode step's generations, not delivered yet
        bool has = prefill(b, b->scratch, n, max_tokens, &set, &batches[0]);
        uint32_t waiting_tokens = 1;
        while (has) {
            metrics_set_batch(batches[0].n, batches[0].max_tokens);
            if (atomic_load(&b->abort)) {
                step_deliver(&pending, &set);
                b->api->clear(b->api->self, batches[0].id, NULL);
                cached_batch_clear(&batches[0]);
                set_fail_all(&set, GEN_ERR_GENERATION,
                             "Request failed during generation: the server is shutting down");
                has = false;
                break;
            }
            int n_batches = 1;
            // Newcomers must be numerous enough to be worth pausing the batch for, unless
            // they have waited max_waiting_tokens steps already.
            bool wait_exceeded = waiting_tokens >= b->cfg.max_waiting_tokens;
            int min_size =
                wait_exceeded ? 0 : (int)floorf((float)batches[0].n * b->cfg.waiting_served_ratio);
            uint32_t budget = b->cfg.max_batch_total_tokens > batches[0].max_tokens
                                  ? b->cfg.max_batch_total_tokens - batches[0].max_tokens
                                  : 0;
            int m = next_batch(b, min_size, budget, &max_tokens);
            if (m > 0) {
                metrics_batch_concat(wait_exceeded);
                if (prefill(b, b->scratch, m, max_tokens, &fresh, &batches[1])) n_batches = 2;
                set_merge(&set, &fresh);
                waiting_tokens = 1;
            }
            has = decode(b, batches, n_batches, &set, &pending, &batches[0]);
            waiting_tokens++;
        }
        step_deliver(&pending, &set);
        set_fail_all(&set, GEN_ERR_INCOMPLETE, "Incomplete generation"); // should be empty
        metrics_set_batch(0, 0);
    }
    set_fail_all(&set, GEN_ERR_INCOMPLETE, "Incomplete generation");
    free(set.r);
    free(fresh.r);
}

fl_code batcher_create(const batcher_config *cfg, queue *q, const shard_api *shards,
                       const tokenizer *tok, batcher **out, fl_error *err) {
    if (cfg->max_batch_requests <= 0)
        return fl_error_set(err, FL_EINVAL, "batcher: max_batch_requests must be > 0");
    batcher *b = calloc(1, sizeof *b);
    if (!b) return fl_error_set(err, FL_ENOMEM, "batcher: out of memory");
    b->cfg = *cfg;
    b->q = q;
    b->api = shards;
    b->tok = tok;
    b->scratch = calloc((size_t)cfg->max_batch_requests, sizeof *b->scratch);
    if (!b->scratch) {
        free(b);
        return fl_error_set(err, FL_ENOMEM, "batcher: out of memory");
    }
    atomic_init(&b->healthy, true);
    atomic_init(&b->abort, false);
    *out = b;
    return FL_OK;
}

void batcher_free(batcher *b) {
    if (!b) return;
    free(b->scratch);
    free(b);
}

static void *batcher_main(void *arg) {
    batcher *b = arg;
    log_info("batcher started");
    while (queue_wait(b->q) && !atomic_load(&b->abort))
        run_batches(b);
    log_info("batcher stopped");
    return NULL;
}

fl_code batcher_start(batcher *b, fl_error *err) {
    if (pthread_create(&b->thread, NULL, batcher_main, b) != 0)
        return fl_error_set(err, FL_ENOMEM, "batcher: cannot start thread");
    b->started = true;
    return FL_OK;
}

void batcher_stop(batcher *b, int grace_ms) {
    queue_close(b->q);
    if (!b->started) return;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += grace_ms / 1000;
    deadline.tv_nsec += (long)(grace_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) deadline.tv_sec++, deadline.tv_nsec -= 1000000000L;
    if (pthread_timedjoin_np(b->thread, NULL, &deadline) == ETIMEDOUT) {
        log_warn("shutdown grace period over: failing requests still running");
        atomic_store(&b->abort, true);
        pthread_join(b->thread, NULL);
    }
    b->started = false;
}

void batcher_run_until_idle(batcher *b) {
    while (queue_len(b->q) > 0)
        run_batches(b);
}

bool batcher_healthy(const batcher *b) {
    return atomic_load(&b->healthy);
}
void batcher_set_healthy(batcher *b, bool healthy) {
    atomic_store(&b->healthy, healthy);
}
