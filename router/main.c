// falconlite-router: the public APIs (gRPC falconlite.v1 + TGI-compatible HTTP), validation,
// queue and continuous batching in front of its shards, which it spawns and supervises as TGI's
// launcher does. SIGTERM/SIGINT: stop accepting, finish the requests in flight, stop the shards.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/log.h"
#include "common/tokenizer.h"
#include "router/auth.h"
#include "router/batcher.h"
#include "router/config.h"
#include "router/grpc_api.h"
#include "router/health.h"
#include "router/http_routes.h"
#include "router/infer.h"
#include "router/launcher.h"
#include "router/metrics.h"
#include "router/queue.h"
#include "router/shard_client.h"

#define FALCONLITE_VERSION "0.1.0"

enum { SHARD_START_TIMEOUT_MS = 3600000, CONNECT_TIMEOUT_MS = 60000 };

typedef struct router {
    router_config cfg;
    uv_loop_t *loop;
    tokenizer *tok;
    launcher *launch;
    shard_client *shards;
    queue *q;
    batcher *b;
    infer *inf;
    health *h;
    http_server *http;
    grpc_api *grpc;
    auth *auth;
    rpc_security security;
    char socket_dir[300]; // the private shard socket directory made at start ("": given by flag)
    server_info info;
    uv_async_t hung_async; // a shard step passed its deadline (from the batcher thread)
    uv_signal_t sigterm, sigint;
    uv_timer_t drain_timer;
    uv_work_t work; // re-warm after a respawn, or the shutdown drain
    bool working;
    bool ready; // startup finished: serving
    bool shutting_down;
    bool drained;
} router;

// TGI's warmup batch (client.rs): "_test " * max_input_length, left-truncated, requests added
// until the batch holds max_batch_prefill_tokens, each with every warper on, 2 new tokens and
// prefill logprobs, so the shard touches every code path at the largest prefill.
static fl_code warmup(router *r, fl_error *err) {
    const router_config *c = &r->cfg;
    size_t text_len = (size_t)c->max_input_length * 6;
    char *text = malloc(text_len + 1);
    if (!text) return fl_error_set(err, FL_ENOMEM, "warmup: out of memory");
    for (uint32_t i = 0; i < c->max_input_length; i++)
        memcpy(text + i * 6, "_test ", 6);
    text[text_len] = 0;
    int32_t *ids = NULL;
    int n_ids = 0;
    fl_code rc = tokenizer_encode(r->tok, text, text_len, &ids, &n_ids, err);
    free(text);
    if (rc != FL_OK) return rc;
    int max_req = (int)(c->max_batch_prefill_tokens / c->max_input_length) + 2;
    shard_request *reqs = calloc((size_t)max_req, sizeof *reqs);
    gen_params p = {.temperature = 0.9f,
                    .repetition_penalty = 1.2f,
                    .top_k = 10,
                    .top_p = 0.9f,
                    .typical_p = 0.9f,
                    .max_new_tokens = 2,
                    .best_of = 1,
                    .decoder_input_details = true};
    int n = 0;
    uint32_t tokens = 0;
    while (reqs && tokens < c->max_batch_prefill_tokens && n < max_req) {
        uint32_t want = c->max_input_length;
        if (want > c->max_batch_prefill_tokens - tokens)
            want = c->max_batch_prefill_tokens - tokens;
        if (want > (uint32_t)n_ids) want = (uint32_t)n_ids;
        if (want == 0) break;
        reqs[n] = (shard_request){.id = (uint64_t)n,
                                  .input_ids = ids + (n_ids - (int)want),
                                  .n_input = (int)want,
                                  .params = &p};
        tokens += want;
        n++;
    }
    shard_batch batch = {.id = 0, .requests = reqs, .n = n, .max_tokens = 0};
    uint32_t capacity = 0;
    log_info("warmup started: prefill of %u tokens in %d request(s), the largest batch "
             "--max-batch-prefill-tokens allows", tokens, n);
    uint64_t t0 = uv_hrtime();
    rc = reqs ? shard_client_warmup(r->shards, &batch, c->max_batch_total_tokens, &capacity, err)
              : fl_error_set(err, FL_ENOMEM, "warmup: out of memory");
    free(reqs);
    free(ids);
    if (rc == FL_OK)
        log_info("warmup done in %.1f s prefill_tokens=%u requests=%d kv_capacity_tokens=%u",
                 (uv_hrtime() - t0) / 1e9, tokens, n, capacity);
    return rc;
}

static fl_code shards_prepare(router *r, fl_error *err) {
    fl_code rc = shard_client_wait_ready(r->shards, CONNECT_TIMEOUT_MS, err);
    if (rc == FL_OK) rc = shard_client_clear_all(r->shards, err);
    if (rc == FL_OK) rc = warmup(r, err);
    return rc;
}

// ---- supervision --------------------------------------------------------------------------

static void on_shards_down(void *user) {
    router *r = user;
    health_set_shards_up(r->h, false);
}

static void rewarm_run(uv_work_t *w) {
    router *r = w->data;
    fl_error err = {0};
    if (shards_prepare(r, &err) != FL_OK) {
        log_error("re-warming the restarted shards failed: %s", err.msg);
        return;
    }
    health_set_shards_up(r->h, true);
    log_info("shards restarted and warmed up");
}

static void work_after(uv_work_t *w, int status) {
    router *r = w->data;
    r->working = false;
}

// Batcher or health thread: the shards are alive but stuck; the loop thread restarts them.
static void on_shards_hung(void *user) {
    router *r = user;
    uv_async_send(&r->hung_async);
}

static void on_hung_async(uv_async_t *a) {
    router *r = a->data;
    if (r->launch && !r->shutting_down) launcher_restart(r->launch);
}

static void on_shards_respawned(void *user) {
    router *r = user;
    if (r->working || r->shutting_down) return;
    r->work.data = r;
    if (uv_queue_work(r->loop, &r->work, rewarm_run, work_after) == 0) r->working = true;
}

// ---- shutdown -----------------------------------------------------------------------------

static void on_handle_closed(uv_handle_t *h) {}

static void on_shards_stopped(void *user) {
    router *r = user;
    uv_close((uv_handle_t *)&r->sigterm, on_handle_closed);
    uv_close((uv_handle_t *)&r->sigint, on_handle_closed);
    uv_close((uv_handle_t *)&r->drain_timer, on_handle_closed);
    uv_close((uv_handle_t *)&r->hung_async, on_handle_closed);
    launcher_socket_dir_remove(r->socket_dir);
    log_info("router stopped");
}

static void drain_run(uv_work_t *w) {
    router *r = w->data;
    // Requests in flight (queued or running) finish; new ones are refused.
    batcher_stop(r->b, r->cfg.shutdown_grace_ms);
    // Past the grace period the batcher gave up: whatever still waits gets its error now.
    queue_fail_all(r->q, "the server is shutting down");
    if (r->grpc) grpc_api_stop(r->grpc, 1000);
}

static void on_drain_poll(uv_timer_t *t) {
    router *r = t->data;
    if (!r->drained || (r->http && http_server_busy(r->http) > 0)) return;
    uv_timer_stop(t);
    if (r->http) http_server_close(r->http);
    r->http = NULL;
    if (r->launch) {
        launcher_stop(r->launch, 10000, on_shards_stopped, r);
        r->launch = NULL;
    } else {
        on_shards_stopped(r);
    }
}

static void drain_after(uv_work_t *w, int status) {
    router *r = w->data;
    r->working = false;
    r->drained = true;
}

static void start_drain(uv_timer_t *t) {
    router *r = t->data;
    if (r->working) return; // a re-warm is running: try again at the next tick
    r->work.data = r;
    if (uv_queue_work(r->loop, &r->work, drain_run, drain_after) == 0) {
        r->working = true;
        uv_timer_start(&r->drain_timer, on_drain_poll, 20, 20);
    }
}

static void on_signal(uv_signal_t *s, int signum) {
    router *r = s->data;
    if (r->shutting_down) {
        log_warn("signal %d again: still finishing requests in flight", signum);
        return;
    }
    r->shutting_down = true;
    if (!r->ready) {
        // Startup is still running on this thread: make it give up; main stops the shards.
        log_info("signal %d during startup: stopping", signum);
        if (r->launch) launcher_abort_start(r->launch);
        return;
    }
    log_info("signal %d: shutting down gracefully", signum);
    if (r->http) http_server_stop_accepting(r->http);
    queue_close(r->q);
    uv_timer_start(&r->drain_timer, start_drain, 0, 50);
}

// ---- startup ------------------------------------------------------------------------------

static void info_fill(router *r, const shard_info *si) {
    server_info *in = &r->info;
    const router_config *c = &r->cfg;
    snprintf(in->model_id, sizeof in->model_id, "%s", c->model_id);
    snprintf(in->model_dtype, sizeof in->model_dtype, "torch.%.24s",
             si->dtype[0] ? si->dtype : "float16");
    snprintf(in->model_device_type, sizeof in->model_device_type, "%s",
             si->device_type[0] ? si->device_type : "cpu");
    snprintf(in->model_pipeline_tag, sizeof in->model_pipeline_tag, "text-generation");
    in->max_concurrent_requests = c->max_concurrent_requests;
    in->max_best_of = c->max_best_of;
    in->max_stop_sequences = c->max_stop_sequences;
    in->max_input_length = c->max_input_length;
    in->max_total_tokens = c->max_total_tokens;
    in->waiting_served_ratio = c->waiting_served_ratio;
    in->max_batch_total_tokens = c->max_batch_total_tokens;
    in->max_waiting_tokens = c->max_waiting_tokens;
    in->validation_workers = c->validation_workers;
    snprintf(in->version, sizeof in->version, FALCONLITE_VERSION);
    in->num_shard = (uint32_t)c->num_shard;
}

static fl_code router_start(router *r, fl_error *err) {
    router_config *c = &r->cfg;
    if (!c->shard_uds_path[0]) {
        fl_code rc = launcher_socket_dir_create(c->shard_uds_path, sizeof c->shard_uds_path,
                                                r->socket_dir, sizeof r->socket_dir, err);
        if (rc != FL_OK) return rc;
    }
    char path[700];
    snprintf(path, sizeof path, "%s/tokenizer.json", c->model_id);
    fl_code rc = tokenizer_load(path, &r->tok, err);
    if (rc != FL_OK) return rc;

    rc = launcher_create(r->loop, c, (launcher_hooks){on_shards_down, on_shards_respawned, r},
                         &r->launch, err);
    if (rc == FL_OK) rc = launcher_start(r->launch, SHARD_START_TIMEOUT_MS, err);
    if (rc == FL_OK) rc = shard_client_create(c->shard_uds_path, c->num_shard, &r->shards, err);
    if (rc == FL_OK)
        shard_client_set_step_timeout(r->shards, c->shard_step_timeout_ms, on_shards_hung, r);
    if (rc == FL_OK) rc = shards_prepare(r, err);
    if (rc == FL_OK && r->shutting_down)
        rc = fl_error_set(err, FL_EIO, "interrupted during startup");
    shard_info si = {0};
    if (rc == FL_OK) rc = shard_client_info(r->shards, &si, err);
    if (rc != FL_OK) return rc;
    info_fill(r, &si);

    metrics_init(c->max_input_length, c->max_total_tokens);
    r->q = queue_create();
    batcher_config bc = {.max_batch_prefill_tokens = c->max_batch_prefill_tokens,
                         .max_batch_total_tokens = c->max_batch_total_tokens,
                         .waiting_served_ratio = c->waiting_served_ratio,
                         .max_waiting_tokens = c->max_waiting_tokens,
                         .prefill_chunk_tokens = c->prefill_chunk_tokens,
                         .max_batch_requests = (int)c->max_concurrent_requests};
    if (!r->q) return fl_error_set(err, FL_ENOMEM, "out of memory");
    rc = batcher_create(&bc, r->q, shard_client_api(r->shards), r->tok, &r->b, err);
    if (rc == FL_OK) rc = batcher_start(r->b, err);
    if (rc != FL_OK) return rc;
    infer_config ic = {.limits = {.max_best_of = c->max_best_of,
                                  .max_stop_sequences = c->max_stop_sequences,
                                  .max_input_length = c->max_input_length,
                                  .max_total_tokens = c->max_total_tokens},
                       .max_concurrent_requests = c->max_concurrent_requests};
    r->inf = infer_create(&ic, r->q, r->tok);
    r->h = health_create(r->shards, r->b, r->tok);
    r->auth = auth_create(c->api_key);
    if (!r->inf || !r->h || !r->auth) return fl_error_set(err, FL_ENOMEM, "out of memory");
    r->security = (rpc_security){.tls_cert_file = c->tls_cert,
                                 .tls_key_file = c->tls_key,
                                 .authorize = auth_rpc_authorize,
                                 .user = r->auth};

    http_routes_deps hd = {.inf = r->inf,
                           .health = r->h,
                           .info = &r->info,
                           .cfg = c,
                           .auth = r->auth,
                           .shards = r->shards};
    rc = http_routes_listen(r->loop, c->hostname, c->port, &hd, &r->http, err);
    if (rc != FL_OK) return rc;
    char addr[300] = "off";
    if (c->grpc_port > 0) {
        snprintf(addr, sizeof addr, "%s:%d", c->hostname, c->grpc_port);
        grpc_api_deps gd = {
            .inf = r->inf, .health = r->h, .info = &r->info, .security = &r->security};
        rc = grpc_api_start(addr, &gd, &r->grpc, err);
        if (rc != FL_OK) return rc;
        log_info("grpc listening addr=%s tls=%s", addr, c->tls_cert[0] ? "on" : "off");
    }
    r->ready = true;
    log_info("ready: HTTP on %s:%d, gRPC on %s (model=%s shards=%d api_key=%s)", c->hostname,
             c->port, addr, c->model_id, c->num_shard, auth_enabled(r->auth) ? "on" : "off");
    return FL_OK;
}

static void router_free(router *r) {
    if (r->b) {
        batcher_stop(r->b, 0);
        batcher_free(r->b);
    }
    grpc_api_free(r->grpc);
    if (r->q) queue_free(r->q, "the server is shutting down");
    infer_free(r->inf);
    health_free(r->h);
    shard_client_free(r->shards);
    tokenizer_free(r->tok);
    auth_free(r->auth);
}

int main(int argc, char **argv) {
    log_set_component("router");
    log_set_level_from_env();
    router r;
    memset(&r, 0, sizeof r);
    bool help = false;
    fl_error err = {0};
    if (router_config_parse(argc, argv, &r.cfg, &help, &err) != FL_OK) {
        fprintf(stderr, "falconlite-router: error: %s\n", err.msg);
        return 2;
    }
    if (help) return 0;
    // A client that goes away mid-response must not kill the server: writes then fail with EPIPE.
    signal(SIGPIPE, SIG_IGN);
    r.loop = uv_default_loop();
    uv_signal_init(r.loop, &r.sigterm);
    uv_signal_init(r.loop, &r.sigint);
    uv_timer_init(r.loop, &r.drain_timer);
    uv_async_init(r.loop, &r.hung_async, on_hung_async);
    r.sigterm.data = r.sigint.data = r.drain_timer.data = r.hung_async.data = &r;
    uv_signal_start(&r.sigterm, on_signal, SIGTERM);
    uv_signal_start(&r.sigint, on_signal, SIGINT);

    int code = 0;
    if (router_start(&r, &err) != FL_OK) {
        log_error("startup failed: %s", err.msg);
        code = 1;
        r.shutting_down = true;
        if (r.q) queue_close(r.q);
        if (r.http) http_server_close(r.http);
        r.http = NULL;
        if (r.launch)
            launcher_stop(r.launch, 5000, on_shards_stopped, &r);
        else
            on_shards_stopped(&r);
        r.launch = NULL;
    }
    uv_run(r.loop, UV_RUN_DEFAULT);
    router_free(&r);
    uv_loop_close(r.loop);
    return code;
}
