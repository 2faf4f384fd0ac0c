#include "router/shard_client.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "proto/rpc_client.h"
#include "router/metrics.h"
#include "router/pb_shard.h"

// Channels reconnect by themselves when a restarted shard listens on the same socket again.
// Per-step RPCs have the step timeout (generous: a long prefill may take minutes on the CPU).
enum { CONTROL_TIMEOUT_MS = 60000 };

struct shard_client {
    char uds_path[400];
    int n;
    rpc_channel **chs; // [n]
    // Calls that run collectives on the ranks (everything but Info and Health) must reach every
    // rank in the same order, or the ranks' all-reduces pair up wrongly: one at a time.
    pthread_mutex_t step_mu;
    // Decode runs every token: its fan-out and results are reused. step_mu is held from
    // decode_start to decode_finish.
    rpc_fanout *decoder;
    rpc_result *decode_res; // [n]
    shard_api api;
    // Progress: the monotonic ms the running Prefill/Decode began (0: none), and a hang seen.
    int step_timeout_ms;
    atomic_uint_fast64_t step_since_ms;
    atomic_bool hung;
    void (*on_hung)(void *user);
    void *hung_user;
};

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

// A step is starting (called with step_mu held).
static void step_begin(shard_client *c) {
    atomic_store(&c->step_since_ms, now_ms());
}

// A step ended: a deadline that passed on any rank marks the shards hung (the first time: the
// owner is told, and restarts them); success clears it.
static void step_end(shard_client *c, fl_code rc, const rpc_result *res) {
    atomic_store(&c->step_since_ms, 0);
    bool deadline = false;
    for (int i = 0; rc != FL_OK && i < c->n; i++)
        deadline |= res[i].status == GRPC_STATUS_DEADLINE_EXCEEDED;
    if (rc == FL_OK) {
        atomic_store(&c->hung, false);
    } else if (deadline && !atomic_exchange(&c->hung, true)) {
        log_error("a shard step took longer than --shard-step-timeout (%d s): shards hung",
                  c->step_timeout_ms / 1000);
        if (c->on_hung) c->on_hung(c->hung_user);
    }
}

static fl_code channel_open(shard_client *c, int rank, fl_error *err) {
    char target[512];
    snprintf(target, sizeof target, "unix:%s-%d", c->uds_path, rank);
    rpc_channel *ch = rpc_channel_create(target, err);
    if (!ch) return err ? err->code : FL_EIO;
    if (c->chs[rank]) rpc_channel_free(c->chs[rank]);
    c->chs[rank] = ch;
    return FL_OK;
}

// Clients see the shard's own message (TGI: "Request failed during generation: <msg>"); the log
// keeps which rank and method failed.
static void rank_error(shard_client *c, shard_method m, const rpc_result *res, fl_error *err) {
    log_warn("%s", err ? err->msg : shard_method_get(m)->path);
    for (int i = 0; i < c->n; i++) {
        if (res[i].status != GRPC_STATUS_OK && res[i].msg[0]) {
            fl_error_set(err, FL_EBACKEND, "%s", res[i].msg);
            break;
        }
    }
}

// Sends m to every rank; *res gets one result per rank (free with results_free; res[0].resp is
// rank 0's answer). Per-call results keep health checks and the batcher apart.
static fl_code call_all(shard_client *c, shard_method m, pb_built *req, int timeout_ms,
                        rpc_result **res, fl_error *err) {
    const shard_method_spec *spec = shard_method_get(m);
    *res = calloc((size_t)c->n, sizeof **res);
    if (!req || !*res) {
        pb_built_free(req);
        return fl_error_set(err, FL_ENOMEM, "%s: out of memory", spec->path);
    }
    fl_code rc = rpc_unary_all(c->chs, c->n, spec->path, pb_built_msg(req), spec->response,
                               timeout_ms, *res, err);
    pb_built_free(req);
    if (rc != FL_OK) rank_error(c, m, *res, err);
    return rc;
}

static fl_code step_all(shard_client *c, shard_method m, pb_built *req, int timeout_ms,
                        rpc_result **res, fl_error *err) {
    pthread_mutex_lock(&c->step_mu);
    fl_code rc = call_all(c, m, req, timeout_ms, res, err);
    pthread_mutex_unlock(&c->step_mu);
    return rc;
}

// Prefill: a step with the step deadline and progress tracking.
static fl_code step_timed(shard_client *c, shard_method m, pb_built *req, rpc_result **res,
                          fl_error *err) {
    pthread_mutex_lock(&c->step_mu);
    step_begin(c);
    fl_code rc = call_all(c, m, req, c->step_timeout_ms, res, err);
    step_end(c, rc, *res);
    pthread_mutex_unlock(&c->step_mu);
    return rc;
}

static void results_free(shard_client *c, rpc_result *res) {
    for (int i = 0; res && i < c->n; i++)
        rpc_result_clear(&res[i]);
    free(res);
}

static fl_code sc_prefill(void *self, const shard_batch *batch, shard_step *out, fl_error *err) {
    shard_client *c = self;
    rpc_result *res;
    fl_code rc = step_timed(c, SHARD_PREFILL, pb_shard_prefill_request(batch), &res, err);
    if (rc == FL_OK) rc = pb_shard_step_from(res[0].resp, out, err);
    if (rc == FL_OK) {
        uint32_t lookup, hit;
        pb_shard_prefill_prefix_counts(res[0].resp, &lookup, &hit);
        metrics_prefix_cache(lookup, hit);
    }
    results_free(c, res);
    return rc;
}

static fl_code sc_decode_start(void *self, const cached_batch *batches, int n, fl_error *err) {
    shard_client *c = self;
    pb_built *req = pb_shard_decode_request(batches, n);
    if (!req) return fl_error_set(err, FL_ENOMEM, "Decode: out of memory");
    pthread_mutex_lock(&c->step_mu);
    step_begin(c);
    rpc_fanout_start(c->decoder, shard_method_get(SHARD_DECODE)->path, pb_built_msg(req),
                     c->step_timeout_ms);
    pb_built_free(req); // the calls hold their own encoding
    return FL_OK;
}

static fl_code sc_decode_finish(void *self, shard_step *out, fl_error *err) {
    shard_client *c = self;
    rpc_result *res = c->decode_res;
    fl_code rc = rpc_fanout_finish(c->decoder, shard_method_get(SHARD_DECODE)->response, res, err);
    step_end(c, rc, res);
    pthread_mutex_unlock(&c->step_mu);
    if (rc != FL_OK) rank_error(c, SHARD_DECODE, res, err);
    if (rc == FL_OK) rc = pb_shard_step_from(res[0].resp, out, err);
    for (int i = 0; i < c->n; i++)
        rpc_result_clear(&res[i]);
    return rc;
}

static fl_code sc_filter(void *self, uint64_t batch_id, const uint64_t *keep, int n_keep,
                         cached_batch *out, fl_error *err) {
    shard_client *c = self;
    rpc_result *res;
    fl_code rc = step_all(c, SHARD_FILTER_BATCH, pb_shard_filter_request(batch_id, keep, n_keep),
                          CONTROL_TIMEOUT_MS, &res, err);
    if (rc == FL_OK) rc = pb_shard_filtered_from(res[0].resp, out, err);
    results_free(c, res);
    return rc;
}

static fl_code sc_clear(void *self, uint64_t batch_id, fl_error *err) {
    shard_client *c = self;
    rpc_result *res;
    fl_code rc = step_all(c, SHARD_CLEAR_CACHE, pb_shard_clear_request(&batch_id, 1),
                          CONTROL_TIMEOUT_MS, &res, err);
    results_free(c, res);
    return rc;
}

fl_code shard_client_create(const char *uds_path, int n_ranks, shard_client **out, fl_error *err) {
    if (n_ranks < 1) return fl_error_set(err, FL_EINVAL, "shard client: need at least one rank");
    shard_client *c = calloc(1, sizeof *c);
    if (!c) return fl_error_set(err, FL_ENOMEM, "shard client: out of memory");
    snprintf(c->uds_path, sizeof c->uds_path, "%s", uds_path);
    c->n = n_ranks;
    pthread_mutex_init(&c->step_mu, NULL);
    c->chs = calloc((size_t)n_ranks, sizeof *c->chs);
    c->decode_res = calloc((size_t)n_ranks, sizeof *c->decode_res);
    if (!c->chs || !c->decode_res) {
        shard_client_free(c);
        return fl_error_set(err, FL_ENOMEM, "shard client: out of memory");
    }
    for (int r = 0; r < n_ranks; r++) {
        fl_code rc = channel_open(c, r, err);
        if (rc != FL_OK) {
            shard_client_free(c);
            return rc;
        }
    }
    // After the channels: their creation initialises grpc, which the queue needs.
    c->decoder = rpc_fanout_create(c->chs, n_ranks, err);
    if (!c->decoder) {
        shard_client_free(c);
        return FL_ENOMEM;
    }
    c->api = (shard_api){c, sc_prefill, sc_decode_start, sc_decode_finish, sc_filter, sc_clear};
    *out = c;
    return FL_OK;
}

void shard_client_free(shard_client *c) {
    if (!c) return;
    rpc_fanout_free(c->decoder); // before the channels, whose release may shut grpc down
    for (int i = 0; c->chs && i < c->n; i++)
        if (c->chs[i]) rpc_channel_free(c->chs[i]);
    free(c->chs);
    free(c->decode_res);
    pthread_mutex_destroy(&c->step_mu);
    free(c);
}

fl_code shard_client_wait_ready(shard_client *c, int timeout_ms, fl_error *err) {
    for (int r = 0; r < c->n; r++) {
        fl_code rc = rpc_channel_wait_ready(c->chs[r], timeout_ms, err);
        if (rc != FL_OK) return rc;
    }
    return FL_OK;
}

fl_code shard_client_info(shard_client *c, shard_info *out, fl_error *err) {
    rpc_result *res;
    fl_code rc =
        call_all(c, SHARD_INFO, pb_shard_empty_request(SHARD_INFO), CONTROL_TIMEOUT_MS, &res, err);
    if (rc == FL_OK) pb_shard_info_from(res[0].resp, out);
    results_free(c, res);
    return rc;
}

fl_code shard_client_health(shard_client *c, fl_error *err) {
    rpc_result *res;
    fl_code rc = call_all(c, SHARD_HEALTH, pb_shard_empty_request(SHARD_HEALTH), 10000, &res, err);
    results_free(c, res);
    return rc;
}

fl_code shard_client_clear_all(shard_client *c, fl_error *err) {
    rpc_result *res;
    fl_code rc = step_all(c, SHARD_CLEAR_CACHE, pb_shard_clear_request(NULL, 0), CONTROL_TIMEOUT_MS,
                          &res, err);
    results_free(c, res);
    if (rc == FL_OK) atomic_store(&c->hung, false); // fresh (restarted) shards answer again
    return rc;
}

void shard_client_set_step_timeout(shard_client *c, int step_timeout_ms,
                                   void (*on_hung)(void *user), void *user) {
    c->step_timeout_ms = step_timeout_ms;
    c->on_hung = on_hung;
    c->hung_user = user;
}

bool shard_client_stalled(shard_client *c) {
    if (atomic_load(&c->hung)) return true;
    uint64_t since = atomic_load(&c->step_since_ms);
    return since && c->step_timeout_ms > 0 && now_ms() - since > (uint64_t)c->step_timeout_ms;
}

fl_code shard_client_warmup(shard_client *c, const shard_batch *batch, uint32_t max_total_tokens,
                            uint32_t *capacity, fl_error *err) {
    rpc_result *res;
    fl_code rc =
        step_all(c, SHARD_WARMUP, pb_shard_warmup_request(batch, max_total_tokens), 0, &res, err);
    if (rc == FL_OK) {
        uint32_t cap = UINT32_MAX;
        for (int r = 0; r < c->n; r++) {
            uint32_t v = pb_shard_warmup_capacity(res[r].resp);
            if (v < cap) cap = v;
        }
        *capacity = cap;
    }
    results_free(c, res);
    return rc;
}

const shard_api *shard_client_api(shard_client *c) {
    return &c->api;
}
