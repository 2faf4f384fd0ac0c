#include "router/http_routes.h"

#include <http_parser.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/log.h"
#include "router/api_json.h"
#include "router/metrics.h"
#include "router/openai_api.h"

typedef struct http_routes {
    http_routes_deps deps;
    http_server *srv;
    chat_template *tmpl; // the served model's (OpenAI chat)
    openai_limits oa_limits;
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

static void respond_openai_error(http_conn *c, const openai_error *e) {
    respond_json(c, e->status, openai_error_json(e), NULL);
}

// Errors on OpenAI's paths take OpenAI's shape.
static bool is_openai_path(const char *path) {
    return !strncmp(path, "/v1/", 4);
}

static void respond_error_for(http_conn *c, const char *path, int status, const char *msg,
                              const char *type) {
    if (!is_openai_path(path)) {
        respond_error(c, status, msg, type);
        return;
    }
    openai_error e;
    openai_error_set(&e, status, NULL, NULL, "%s", msg);
    respond_openai_error(c, &e);
}

// ---- replies from the batcher thread ---------------------------------------------------------

typedef enum reply_kind {
    REPLY_GENERATE,
    REPLY_COMPAT_GENERATE,
    REPLY_STREAM,
    REPLY_OPENAI,        // OpenAI, one outcome per choice
    REPLY_OPENAI_STREAM, // OpenAI, one event stream per choice
} reply_kind;

typedef struct event_node {
    gen_event *ev;
    int choice;
    struct event_node *next;
} event_node;

struct reply;

// The sink / waiter of one OpenAI choice.
typedef struct choice_ref {
    http_job *job;
    int index;
} choice_ref;

// An OpenAI request's choices (loop thread, except outcomes and n_done under reply.mu).
typedef struct openai_reply {
    openai_request req;
    openai_meta meta;
    choice_ref *refs;              // [req.n]
    gen_outcome *outcomes;         // [req.n]
    int n_done;                    // outcomes in
    openai_choice_stream *streams; // [req.n]
    int n_ended;
    int prompt_tokens, completion_tokens;
    atomic_bool abandoned; // a choice could not start: the others are dropped
} openai_reply;

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
    openai_reply *oa;   // REPLY_OPENAI*
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
    if (r->oa) {
        for (int i = 0; i < r->oa->req.n; i++) {
            if (r->oa->outcomes) gen_outcome_clear(&r->oa->outcomes[i]);
            if (r->oa->streams) openai_choice_stream_clear(&r->oa->streams[i]);
        }
        free(r->oa->outcomes);
        free(r->oa->streams);
        free(r->oa->refs);
        openai_request_clear(&r->oa->req);
        free(r->oa);
    }
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

// Queues ev for the loop thread; false once the client is gone.
static bool reply_push(http_job *j, int choice, gen_event *ev) {
    reply *r = http_job_payload(j);
    bool alive = http_job_alive(j) && !(r->oa && atomic_load(&r->oa->abandoned));
    event_node *n = alive ? malloc(sizeof *n) : NULL;
    if (!n) {
        gen_event_free(ev);
        return alive;
    }
    n->ev = ev;
    n->choice = choice;
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

// gen_sink and infer_waiter callbacks (batcher thread); user is the http_job.
static bool reply_send(void *user, gen_event *ev) {
    return reply_push(user, 0, ev);
}

static bool reply_alive(void *user) {
    return http_job_alive(user);
}

// The same for one OpenAI choice; user is its choice_ref.
static bool choice_send(void *user, gen_event *ev) {
    choice_ref *ref = user;
    return reply_push(ref->job, ref->index, ev);
}

static bool choice_alive(void *user) {
    choice_ref *ref = user;
    reply *r = http_job_payload(ref->job);
    return http_job_alive(ref->job) && !atomic_load(&r->oa->abandoned);
}

static void choice_release(void *user) {
    http_job_unref(((choice_ref *)user)->job);
}

static void choice_done(void *user, gen_outcome *o) {
    choice_ref *ref = user;
    http_job *j = ref->job;
    reply *r = http_job_payload(j);
    pthread_mutex_lock(&r->mu);
    r->oa->outcomes[ref->index] = *o;
    r->outcome_ready = ++r->oa->n_done == r->oa->req.n;
    pthread_mutex_unlock(&r->mu);
    memset(o, 0, sizeof *o);
    http_job_notify(j);
    http_job_unref(j);
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

// The events queued so far (the caller frees the list).
static event_node *reply_take_events(reply *r) {
    pthread_mutex_lock(&r->mu);
    event_node *n = r->head;
    r->head = r->tail = NULL;
    pthread_mutex_unlock(&r->mu);
    return n;
}

static void stream_progress(reply *r, http_conn *c) {
    event_node *n = reply_take_events(r);
    bool ended = false;
    while (n) {
        event_node *next = n->next;
        gen_event *ev = n->ev;
        if (!ended) {
            if (ev->kind == GEN_EVENT_ERROR) {
                http_conn_sse_event(c, api_json_error(gen_error_public(ev->error_kind, ev->error),
                                                      gen_error_type(ev->error_kind)));
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
        respond_error(c, gen_error_http_status(o->error_kind),
                      gen_error_public(o->error_kind, o->error), gen_error_type(o->error_kind));
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

// ---- OpenAI replies ------------------------------------------------------------------------------

// OpenAI's framing: `data: {json}\n\n`.
static void sse_openai(http_conn *c, char *json) {
    http_conn_sse_data(c, "data: ", json);
}

static void openai_stream_end(http_conn *c) {
    http_conn_sse_raw(c, "data: [DONE]\n\n", 14);
    http_conn_sse_end(c);
}

static void openai_stream_progress(reply *r, http_conn *c) {
    openai_reply *oa = r->oa;
    event_node *n = reply_take_events(r);
    bool failed = false;
    while (n) {
        event_node *next = n->next;
        gen_event *ev = n->ev;
        if (!failed && oa->n_ended < oa->req.n) {
            if (ev->kind == GEN_EVENT_ERROR) {
                openai_error e;
                openai_error_from_gen(ev->error_kind, ev->error, &e);
                sse_openai(c, openai_error_json(&e));
                failed = true;
            } else if (ev->kind == GEN_EVENT_TOKEN || ev->kind == GEN_EVENT_END) {
                sse_openai(c, openai_chunk_event(&oa->req, &oa->meta, n->choice,
                                                 &oa->streams[n->choice], ev));
                if (ev->kind == GEN_EVENT_END) {
                    oa->n_ended++;
                    oa->prompt_tokens = ev->n_input;
                    oa->completion_tokens += (int)ev->generated_tokens;
                }
            }
        }
        gen_event_free(ev);
        free(n);
        n = next;
    }
    if (failed) {
        atomic_store(&oa->abandoned, true);
        openai_stream_end(c);
    } else if (oa->n_ended == oa->req.n) {
        if (oa->req.include_usage)
            sse_openai(c, openai_chunk_usage(&oa->req, &oa->meta, oa->prompt_tokens,
                                             oa->completion_tokens));
        openai_stream_end(c);
    }
}

static void openai_generate_progress(reply *r, http_conn *c) {
    openai_reply *oa = r->oa;
    pthread_mutex_lock(&r->mu);
    bool ready = r->outcome_ready;
    pthread_mutex_unlock(&r->mu);
    if (!ready) return;
    const gen_result *results[64];
    for (int i = 0; i < oa->req.n; i++) {
        gen_outcome *o = &oa->outcomes[i];
        if (o->failed) {
            openai_error e;
            openai_error_from_gen(o->error_kind, o->error, &e);
            respond_openai_error(c, &e);
            return;
        }
        results[i] = &o->results[0];
    }
    respond_json(c, 200, openai_response_json(&oa->req, &oa->meta, results), NULL);
}

static void reply_progress(void *payload, http_conn *c) {
    reply *r = payload;
    switch (r->kind) {
    case REPLY_STREAM:
        stream_progress(r, c);
        break;
    case REPLY_OPENAI_STREAM:
        openai_stream_progress(r, c);
        break;
    case REPLY_OPENAI:
        openai_generate_progress(r, c);
        break;
    default:
        generate_progress(r, c);
    }
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
        http_conn_sse_event(c, api_json_error(gen_error_public(kind, msg), gen_error_type(kind)));
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

// ---- OpenAI -------------------------------------------------------------------------------------

// Attaches an OpenAI reply (taking req) to c's request; NULL: out of memory or the client left.
static http_job *openai_reply_start(const http_routes *routes, http_conn *c, openai_request *req) {
    reply *r = calloc(1, sizeof *r);
    openai_reply *oa = calloc(1, sizeof *oa);
    int n = req->n;
    if (oa) {
        oa->refs = calloc((size_t)n, sizeof *oa->refs);
        oa->outcomes = calloc((size_t)n, sizeof *oa->outcomes);
        oa->streams = calloc((size_t)n, sizeof *oa->streams);
    }
    if (!r || !oa || !oa->refs || !oa->outcomes || !oa->streams) {
        if (oa) free(oa->refs), free(oa->outcomes), free(oa->streams);
        free(oa);
        free(r);
        return NULL;
    }
    pthread_mutex_init(&r->mu, NULL);
    r->routes = routes;
    r->kind = req->stream ? REPLY_OPENAI_STREAM : REPLY_OPENAI;
    r->oa = oa;
    oa->req = *req;
    memset(req, 0, sizeof *req);
    atomic_init(&oa->abandoned, false);
    openai_meta_init(&oa->meta, oa->req.kind, routes->deps.info->model_id);
    http_job *j = http_conn_job_start(c, &reply_ops, r);
    if (!j) {
        reply_free(r);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        oa->refs[i] = (choice_ref){j, i};
    return j;
}

// Starts every choice's stream; false with *err when one cannot start (the others are dropped).
static bool openai_streams_start(const http_routes *routes, http_job *j, openai_error *err) {
    reply *r = http_job_payload(j);
    openai_reply *oa = r->oa;
    for (int i = 0; i < oa->req.n; i++) {
        gen_request_in in;
        if (!openai_request_choice(&oa->req, i, &in)) {
            openai_error_set(err, 500, NULL, NULL, "out of memory");
            atomic_store(&oa->abandoned, true);
            return false;
        }
        http_job_ref(j); // the sink's reference
        gen_error_kind kind;
        char msg[640];
        bool ok = infer_stream(routes->deps.inf, &in,
                               (gen_sink){choice_send, choice_alive, choice_release, &oa->refs[i]},
                               &kind, msg, sizeof msg);
        gen_request_in_clear(&in);
        if (!ok) {
            http_job_unref(j); // the sink was not used
            openai_error_from_gen(kind, msg, err);
            atomic_store(&oa->abandoned, true);
            return false;
        }
    }
    return true;
}

static void route_openai(const http_routes *routes, http_conn *c, const http_request *req,
                         openai_kind kind) {
    openai_request oreq;
    openai_error err = {0};
    if (!openai_parse(kind, req->body, req->body_len, &routes->oa_limits, routes->tmpl, &oreq,
                      &err)) {
        respond_openai_error(c, &err);
        return;
    }
    bool stream = oreq.stream;
    int n = oreq.n;
    http_job *j = openai_reply_start(routes, c, &oreq);
    if (!j) {
        openai_request_clear(&oreq);
        openai_error_set(&err, 500, NULL, NULL, "out of memory");
        respond_openai_error(c, &err);
        return;
    }
    reply *r = http_job_payload(j);
    if (stream) {
        // Events are handled on this thread later: the stream opens once every choice started.
        if (!openai_streams_start(routes, j, &err)) {
            respond_openai_error(c, &err);
            return;
        }
        http_conn_sse_begin(c, "cache-control: no-cache\r\nx-accel-buffering: no\r\n");
        if (kind == OPENAI_CHAT)
            for (int i = 0; i < n; i++)
                sse_openai(c, openai_chunk_role(&r->oa->req, &r->oa->meta, i));
        return;
    }
    for (int i = 0; i < n; i++) {
        gen_request_in in;
        http_job_ref(j); // the waiter's reference
        if (!openai_request_choice(&r->oa->req, i, &in)) {
            gen_outcome o = {.failed = true, .error_kind = GEN_ERR_GENERATION};
            snprintf(o.error, sizeof o.error, "out of memory");
            choice_done(&r->oa->refs[i], &o);
            continue;
        }
        infer_generate(routes->deps.inf, &in,
                       (infer_waiter){choice_done, choice_alive, &r->oa->refs[i]});
        gen_request_in_clear(&in);
    }
}

static void route_chat_completions(const http_routes *r, http_conn *c, const http_request *req) {
    route_openai(r, c, req, OPENAI_CHAT);
}

static void route_completions(const http_routes *r, http_conn *c, const http_request *req) {
    route_openai(r, c, req, OPENAI_COMPLETION);
}

static void route_models(const http_routes *r, http_conn *c, const http_request *req) {
    respond_json(c, 200, openai_models_json(r->deps.info->model_id, 0), NULL);
}

// POST /tokenize (TGI's later route): {"inputs", "add_special_tokens"?} -> [{"id", "text",
// "start", "stop"}] with byte offsets into inputs.
static void route_tokenize(const http_routes *r, http_conn *c, const http_request *req) {
    char msg[512];
    const char *text = NULL;
    size_t len = 0;
    if (!api_json_parse_tokenize(req->body, req->body_len, &text, &len, msg, sizeof msg)) {
        respond_error(c, text ? 422 : 400, msg, "validation");
        return;
    }
    int32_t *ids = NULL;
    int n = 0;
    fl_error err = {0};
    if (!validate_utf8(text, len)) {
        respond_error(c, 422, "`inputs` must be valid UTF-8", "validation");
    } else if (infer_tokenize(r->deps.inf, text, len, &ids, &n, &err) != FL_OK) {
        respond_error(c, 422, err.msg, "validation");
    } else {
        respond_json(c, 200, api_json_tokens(infer_tokenizer(r->deps.inf), text, len, ids, n),
                     NULL);
    }
    free(ids);
    free((char *)text);
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

static void metrics_respond(http_conn *c) {
    size_t len = 0;
    char *text = metrics_render(&len);
    http_conn_respond(c, 200, "text/plain; version=0.0.4", text ? text : "", text ? len : 0, NULL);
    free(text);
}

// The KV gauges come from rank 0's Info at scrape time (one control RPC, off the loop thread;
// skipped while a step is past its deadline, the gauges then keep their last values).
static void kv_poll_run(void *user) {
    shard_client *shards = user;
    shard_info si;
    fl_error err = {0};
    if (shard_client_stalled(shards) || shard_client_info(shards, &si, &err) != FL_OK ||
        si.block_size == 0)
        return;
    uint32_t total = si.max_total_tokens / si.block_size;
    uint32_t free_blocks = si.free_tokens / si.block_size;
    metrics_set_kv_blocks(free_blocks < total ? total - free_blocks : 0, total);
}

static void kv_poll_after(void *user, http_conn *c) {
    if (c) metrics_respond(c);
}

static void route_metrics(const http_routes *r, http_conn *c, const http_request *req) {
    if (!r->deps.shards || !http_conn_queue_work(c, kv_poll_run, kv_poll_after, r->deps.shards))
        metrics_respond(c);
}

// ---- the table ----------------------------------------------------------------------------------

typedef enum route_method {
    ROUTE_GET,  // GET and HEAD
    ROUTE_POST, // takes a body: refused with 503 once shutting down
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
    {ROUTE_POST, "/tokenize", route_tokenize},
    {ROUTE_POST, "/v1/chat/completions", route_chat_completions},
    {ROUTE_POST, "/v1/completions", route_completions},
    {ROUTE_GET, "/v1/models", route_models},
};

static const route *route_find(route_method m, const char *path) {
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (routes[i].method == m && !strcmp(routes[i].path, path)) return &routes[i];
    return NULL;
}

static void routes_handle(void *user, http_conn *c, const http_request *req) {
    const http_routes *r = user;
    if (req->refusal) {
        respond_error_for(c, req->path, req->refusal, req->refusal_reason, "validation");
        return;
    }
    enum http_method m = (enum http_method)req->method;
    if (m == HTTP_OPTIONS) {
        // CORS preflight: answered for allowed origins only.
        if (http_conn_cors(c) == HTTP_CORS_DENIED) {
            respond_empty(c, 403);
            return;
        }
        http_conn_respond(
            c, 200, NULL, "", 0,
            "access-control-allow-methods: GET, POST\r\naccess-control-allow-headers: "
            "content-type, authorization\r\n");
        return;
    }
    if (!auth_request_allowed(r->deps.auth, req->path, req->authorization)) {
        respond_error_for(c, req->path, 401, "missing or wrong bearer token", "unauthorized");
        return;
    }
    const route *rt = NULL;
    if (m == HTTP_GET || m == HTTP_HEAD)
        rt = route_find(ROUTE_GET, req->path);
    else if (m == HTTP_POST)
        rt = route_find(ROUTE_POST, req->path);
    if (!rt) {
        // A path with POST routes answers other methods 405; anything else is unknown.
        int status = route_find(ROUTE_POST, req->path) ? 405 : 404;
        if (is_openai_path(req->path))
            respond_error_for(c, req->path, status,
                              status == 404 ? "Unknown path" : "Method not allowed", NULL);
        else
            respond_empty(c, status);
        return;
    }
    if (rt->method == ROUTE_POST) {
        if (!http_server_accepting(r->srv)) {
            http_conn_close_after_response(c);
            respond_error_for(c, req->path, 503, "the server is shutting down", "healthcheck");
            return;
        }
    }
    rt->handle(r, c, req);
}

static void routes_release(void *user) {
    http_routes *r = user;
    chat_template_free(r->tmpl);
    free(r);
}

fl_code http_routes_listen(uv_loop_t *loop, const char *host, int port,
                           const http_routes_deps *deps, http_server **out, fl_error *err) {
    http_routes *r = calloc(1, sizeof *r);
    if (!r) return fl_error_set(err, FL_ENOMEM, "http: out of memory");
    r->deps = *deps;
    const router_config *cfg = deps->cfg;
    const server_info *info = deps->info;
    r->oa_limits.max_n = info->max_best_of ? info->max_best_of : 1;
    r->oa_limits.default_max_tokens = info->max_total_tokens > info->max_input_length
                                          ? info->max_total_tokens - info->max_input_length
                                          : 1;
    // OpenAI chat renders messages with the served model's template (plain text without one).
    fl_error terr = {0};
    if (!cfg || chat_template_load(cfg->model_id, infer_tokenizer(deps->inf), &r->tmpl, &terr) !=
                    FL_OK) {
        if (cfg) log_warn("chat template: %s; chat messages are used as plain text", terr.msg);
        if (chat_template_create("none", &r->tmpl, &terr) != FL_OK) {
            free(r);
            return fl_error_set(err, FL_ENOMEM, "http: out of memory");
        }
    }
    log_info("openai chat template=%s", chat_template_kind_name(r->tmpl));
    http_server_opts opts = {0};
    if (cfg) {
        opts.header_timeout_ms = (int)(cfg->http_header_timeout * 1000);
        opts.body_timeout_ms = (int)(cfg->http_body_timeout * 1000);
        opts.cors_allow_origin = cfg->cors_allow_origin;
        opts.tls_cert = cfg->tls_cert;
        opts.tls_key = cfg->tls_key;
    }
    fl_code rc = http_server_create(loop, host, port, &opts,
                                    (http_service){routes_handle, routes_release, r}, &r->srv, err);
    if (rc != FL_OK) return rc;
    *out = r->srv;
    return FL_OK;
}
