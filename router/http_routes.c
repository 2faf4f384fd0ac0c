#include "router/http_routes.h"

#include <http_parser.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/api_json.h"
#include "router/metrics.h"

typedef struct http_routes {
    http_routes_deps deps;
    http_server *srv;
} http_routes;

// ---- responses ----------------------------------------------------------------------------------

// Takes body; NULL (out of memory) answers an empty 500.
static void respond_json(http_conn *c, int status, char *body, const char *extra) {
    if (!body) {
        http_conn_respond(c, 500, NULL, "", 0, NULL);
        return;
    }
    http_conn_respond(c, status, "application/json", body, strlen(body), extra);
    free(body);
}

static void respond_error(http_conn *c, int status, const char *msg, const char *type) {
    respond_json(c, status, api_json_error(msg, type), NULL);
}

static void respond_empty(http_conn *c, int status) {
    http_conn_respond(c, status, NULL, "", 0, NULL);
}

// ---- replies from the batcher thread ---------------------------------------------------------

typedef enum reply_kind { REPLY_GENERATE, REPLY_COMPAT_GENERATE, REPLY_STREAM } reply_kind;

typedef struct event_node {
    gen_event *ev;
    struct event_node *next;
} event_node;

// What a generation request collects from the batcher thread (the payload of its http_job):
// events to stream, or the gathered outcome.
typedef struct reply {
    pthread_mutex_t mu;
    event_node *head, *tail;
    gen_outcome outcome;
    bool outcome_ready;
    // Loop thread only.
    const http_routes *routes;
    reply_kind kind;
    bool details;
    size_t input_chars; // x-compute-characters
} reply;

static void reply_progress(void *payload, http_conn *c);

static void reply_free(void *payload) {
    reply *r = payload;
    if (!r) return;
    for (event_node *n = r->head, *next; n; n = next) {
        next = n->next;
        gen_event_free(n->ev);
        free(n);
    }
    gen_outcome_clear(&r->outcome);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static const http_job_ops reply_ops = {reply_progress, reply_free};

// Unicode characters of the prompt (TGI's x-compute-characters).
static size_t utf8_chars(const char *s, size_t len) {
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

// Attaches a reply to c's request; NULL: out of memory or the client left.
static http_job *reply_start(const http_routes *routes, http_conn *c, reply_kind kind, bool details,
                             const gen_request_in *in) {
    reply *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    pthread_mutex_init(&r->mu, NULL);
    r->routes = routes;
    r->kind = kind;
    r->details = details;
    r->input_chars = utf8_chars(in->inputs, in->inputs_len);
    http_job *j = http_conn_job_start(c, &reply_ops, r);
    if (!j) reply_free(r);
    return j;
}

// gen_sink and infer_waiter callbacks (batcher thread); user is the http_job.
static bool reply_send(void *user, gen_event *ev) {
    http_job *j = user;
    reply *r = http_job_payload(j);
    bool alive = http_job_alive(j);
    event_node *n = alive ? malloc(sizeof *n) : NULL;
    if (!n) {
        gen_event_free(ev);
        return alive;
    }
    n->ev = ev;
    n->next = NULL;
    pthread_mutex_lock(&r->mu);
    if (r->tail)
        r->tail->next = n;
    else
        r->head = n;
    r->tail = n;
    pthread_mutex_unlock(&r->mu);
    http_job_notify(j);
    return true;
}

static bool reply_alive(void *user) {
    return http_job_alive(user);
}

static void reply_release(void *user) {
    http_job_unref(user);
}

static void reply_done(void *user, gen_outcome *o) {
    http_job *j = user;
    reply *r = http_job_payload(j);
    pthread_mutex_lock(&r->mu);
    r->outcome = *o;
    r->outcome_ready = true;
    pthread_mutex_unlock(&r->mu);
    memset(o, 0, sizeof *o);
    http_job_notify(j);
    http_job_unref(j);
}

static void stream_progress(reply *r, http_conn *c) {
    pthread_mutex_lock(&r->mu);
    event_node *n = r->head;
    r->head = r->tail = NULL;
    pthread_mutex_unlock(&r->mu);
    bool ended = false;
    while (n) {
        event_node *next = n->next;
        gen_event *ev = n->ev;
        if (!ended) {
            if (ev->kind == GEN_EVENT_ERROR) {
                http_conn_sse_event(c, api_json_error(ev->error, gen_error_type(ev->error_kind)));
                ended = true;
            } else if (ev->kind == GEN_EVENT_TOKEN || ev->kind == GEN_EVENT_END) {
                http_conn_sse_event(c, api_json_stream_event(ev, r->details));
                ended = ev->kind == GEN_EVENT_END;
            }
        }
        gen_event_free(ev);
        free(n);
        n = next;
    }
    if (ended) http_conn_sse_end(c);
}

static void generate_progress(reply *r, http_conn *c) {
    pthread_mutex_lock(&r->mu);
    bool ready = r->outcome_ready;
    pthread_mutex_unlock(&r->mu);
    if (!ready) return;
    gen_outcome *o = &r->outcome;
    if (o->failed) {
        respond_error(c, gen_error_http_status(o->error_kind), o->error,
                      gen_error_type(o->error_kind));
        return;
    }
    char *body = api_json_generate(o, r->details);
    if (body && r->kind == REPLY_COMPAT_GENERATE) {
        char *arr = malloc(strlen(body) + 3);
        if (arr) sprintf(arr, "[%s]", body);
        free(body);
        body = arr;
    }
    const gen_result *res = &o->results[0];
    double total = res->t_end - o->t_start, infer_s = res->t_end - res->t_batched;
    char extra[512];
    snprintf(extra, sizeof extra,
             "x-compute-type: %s\r\nx-compute-characters: %zu\r\nx-compute-time: %.0f\r\n"
             "x-total-time: %.0f\r\nx-queue-time: %.0f\r\nx-inference-time: %.0f\r\n"
             "x-time-per-token: %.0f\r\n",
             r->routes->deps.info->model_device_type, r->input_chars, total * 1000, total * 1000,
             (res->t_batched - res->t_queued) * 1000, infer_s * 1000,
             res->generated_tokens ? infer_s * 1000 / res->generated_tokens : 0.0);
    respond_json(c, 200, body, extra);
}

static void reply_progress(void *payload, http_conn *c) {
    reply *r = payload;
    if (r->kind == REPLY_STREAM)
        stream_progress(r, c);
    else
        generate_progress(r, c);
}

// ---- generation ---------------------------------------------------------------------------------

static void start_stream(const http_routes *routes, http_conn *c, gen_request_in *in) {
    char extra[256];
    snprintf(extra, sizeof extra,
             "cache-control: no-cache\r\nx-accel-buffering: no\r\nx-compute-type: %s\r\n"
             "x-compute-characters: %zu\r\n",
             routes->deps.info->model_device_type, utf8_chars(in->inputs, in->inputs_len));
    http_conn_sse_begin(c, extra);
    http_job *j = reply_start(routes, c, REPLY_STREAM, in->params.details, in);
    if (!j) {
        http_conn_sse_event(c, api_json_error("out of memory", "generation"));
        http_conn_sse_end(c);
        return;
    }
    http_job_ref(j); // the sink's reference
    gen_error_kind kind;
    char msg[640];
    if (!infer_stream(routes->deps.inf, in, (gen_sink){reply_send, reply_alive, reply_release, j},
                      &kind, msg, sizeof msg)) {
        http_job_unref(j); // the sink was not used
        http_conn_sse_event(c, api_json_error(msg, gen_error_type(kind)));
        http_conn_sse_end(c);
    }
}

static void start_generate(const http_routes *routes, http_conn *c, gen_request_in *in,
                           reply_kind kind) {
    bool details = in->params.details || in->params.decoder_input_details;
    http_job *j = reply_start(routes, c, kind, details, in);
    if (!j) {
        respond_error(c, 500, "out of memory", "generation");
        return;
    }
    http_job_ref(j); // the waiter's reference
    infer_generate(routes->deps.inf, in, (infer_waiter){reply_done, reply_alive, j});
}

// Parses TGI's GenerateRequest (stream: NULL on routes without the "stream" field); answers
// 400 / 422 and returns false when the body is not one. Such rejections happen before TGI's
// handler runs (axum's Json extractor): no request metrics.
static bool parse_generate(http_conn *c, const http_request *req, gen_request_in *in,
                           bool *stream) {
    char msg[512];
    json_parse_status st =
        api_json_parse_request(req->body, req->body_len, in, stream, msg, sizeof msg);
    if (st == JSON_PARSE_OK) return true;
    respond_error(c, st == JSON_PARSE_SYNTAX ? 400 : 422, msg, "validation");
    return false;
}

static void route_generate(const http_routes *r, http_conn *c, const http_request *req) {
    gen_request_in in;
    if (!parse_generate(c, req, &in, NULL)) return;
    start_generate(r, c, &in, REPLY_GENERATE);
    gen_request_in_clear(&in);
}

static void route_generate_stream(const http_routes *r, http_conn *c, const http_request *req) {
    gen_request_in in;
    if (!parse_generate(c, req, &in, NULL)) return;
    start_stream(r, c, &in);
    gen_request_in_clear(&in);
}

// POST / and /invocations (SageMaker): /generate, or /generate_stream when "stream" is true; the
// non-streaming answer is a one-element array.
static void route_compat(const http_routes *r, http_conn *c, const http_request *req) {
    gen_request_in in;
    bool stream = false;
    if (!parse_generate(c, req, &in, &stream)) return;
    if (stream)
        start_stream(r, c, &in);
    else
        start_generate(r, c, &in, REPLY_COMPAT_GENERATE);
    gen_request_in_clear(&in);
}

// ---- status routes ------------------------------------------------------------------------------

typedef struct health_work {
    health *h;
    bool ok;
} health_work;

static void health_run(void *user) {
    health_work *w = user;
    w->ok = !w->h || health_check(w->h);
}

static void health_after(void *user, http_conn *c) {
    health_work *w = user;
    if (c) {
        if (w->ok)
            respond_empty(c, 200);
        else
            respond_error(c, 503, "unhealthy", "healthcheck");
    }
    free(w);
}

// GET / /health /ping: a liveness check of the shards, off the loop thread.
static void route_health(const http_routes *r, http_conn *c, const http_request *req) {
    health_work *w = calloc(1, sizeof *w);
    if (w) w->h = r->deps.health;
    if (!w || !http_conn_queue_work(c, health_run, health_after, w)) {
        free(w);
        respond_error(c, 503, "unhealthy", "healthcheck");
    }
}

static void route_info(const http_routes *r, http_conn *c, const http_request *req) {
    respond_json(c, 200, api_json_info(r->deps.info), NULL);
}

static void route_metrics(const http_routes *r, http_conn *c, const http_request *req) {
    size_t len = 0;
    char *text = metrics_render(&len);
    http_conn_respond(c, 200, "text/plain; version=0.0.4", text ? text : "", text ? len : 0, NULL);
    free(text);
}

// ---- the table ----------------------------------------------------------------------------------

typedef enum route_method {
    ROUTE_GET,  // GET and HEAD
    ROUTE_POST, // takes a body: refused with 413 when too large, 503 once shutting down
} route_method;

typedef struct route {
    route_method method;
    const char *path;
    void (*handle)(const http_routes *r, http_conn *c, const http_request *req);
} route;

static const route routes[] = {
    {ROUTE_GET, "/", route_health},
    {ROUTE_GET, "/health", route_health},
    {ROUTE_GET, "/ping", route_health},
    {ROUTE_GET, "/info", route_info},
    {ROUTE_GET, "/metrics", route_metrics},
    {ROUTE_POST, "/generate", route_generate},
    {ROUTE_POST, "/generate_stream", route_generate_stream},
    {ROUTE_POST, "/", route_compat},
    {ROUTE_POST, "/invocations", route_compat},
};

static const route *route_find(route_method m, const char *path) {
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (routes[i].method == m && !strcmp(routes[i].path, path)) return &routes[i];
    return NULL;
}

static void routes_handle(void *user, http_conn *c, const http_request *req) {
    const http_routes *r = user;
    if (req->parse_error) {
        respond_error(c, 400, req->parse_error, "validation");
        return;
    }
    enum http_method m = (enum http_method)req->method;
    if (m == HTTP_OPTIONS) {
        http_conn_respond(
            c, 200, NULL, "", 0,
            "access-control-allow-methods: GET, POST\r\naccess-control-allow-headers: "
            "content-type, authorization\r\n");
        return;
    }
    if (!auth_request_allowed(r->deps.auth, req->path, req->authorization)) {
        respond_json(c, 401, api_json_error("missing or wrong bearer token", "unauthorized"),
                     "www-authenticate: Bearer\r\n");
        return;
    }
    const route *rt = NULL;
    if (m == HTTP_GET || m == HTTP_HEAD)
        rt = route_find(ROUTE_GET, req->path);
    else if (m == HTTP_POST)
        rt = route_find(ROUTE_POST, req->path);
    if (!rt) {
        // A path with POST routes answers other methods 405; anything else is unknown.
        respond_empty(c, route_find(ROUTE_POST, req->path) ? 405 : 404);
        return;
    }
    if (rt->method == ROUTE_POST) {
        if (req->body_too_large) {
            http_conn_close_after_response(c);
            respond_error(c, 413, "request body too large", "validation");
            return;
        }
        if (!http_server_accepting(r->srv)) {
            http_conn_close_after_response(c);
            respond_error(c, 503, "the server is shutting down", "healthcheck");
            return;
        }
    }
    rt->handle(r, c, req);
}

static void routes_release(void *user) {
    free(user);
}

fl_code http_routes_listen(uv_loop_t *loop, const char *host, int port,
                           const http_routes_deps *deps, http_server **out, fl_error *err) {
    http_routes *r = calloc(1, sizeof *r);
    if (!r) return fl_error_set(err, FL_ENOMEM, "http: out of memory");
    r->deps = *deps;
    fl_code rc = http_server_create(loop, host, port,
                                    (http_service){routes_handle, routes_release, r}, &r->srv, err);
    if (rc != FL_OK) return rc;
    *out = r->srv;
    return FL_OK;
}
