#include "router/http_server.h"

#include <http_parser.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "router/api_json.h"
#include "router/metrics.h"

enum {
    MAX_BODY = 8 << 20,       // larger bodies get 413
    SSE_KEEPALIVE_MS = 15000, // axum KeepAlive::default()
};

typedef struct http_conn http_conn;

typedef enum job_kind { JOB_GENERATE, JOB_COMPAT_GENERATE, JOB_STREAM } job_kind;

typedef struct event_node {
    gen_event *ev;
    struct event_node *next;
} event_node;

// One request being answered. Shared with the batcher thread (sink / waiter); refcounted.
typedef struct http_job {
    atomic_int refs;
    pthread_mutex_t mu;
    bool closed; // the client went away
    event_node *head, *tail;
    gen_outcome outcome;
    bool outcome_ready;
    // Loop thread only.
    http_server *srv;
    http_conn *conn;
    job_kind kind;
    bool details;
    size_t input_chars; // x-compute-characters
    bool in_ready;      // guarded by srv->ready_mu
} http_job;

struct http_conn {
    uv_tcp_t tcp;
    uv_timer_t keepalive;
    http_server *srv;
    http_parser parser;
    char *url;
    size_t url_len;
    char *body;
    size_t body_len, body_cap;
    bool too_large;
    bool header_is_expect; // the header being parsed is Expect
    bool expect_continue;  // the client waits for "100 Continue" before its body
    char *pending;         // received, not yet parsed (held while a request is answered)
    size_t pending_len;
    bool busy;       // a request is being answered
    bool in_parser;  // inside http_parser_execute (no re-entry)
    bool keep_alive; // of the request being answered
    bool closing;
    bool close_after_write;
    int writes;  // uv_write requests in flight
    int handles; // open uv handles (tcp, timer)
    int work;    // health checks in flight
    uint64_t last_event_ms;
    http_job *job;
    http_conn *prev, *next;
};

struct http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_async_t async;
    http_server_deps deps;
    bool accepting, closing;
    int busy;
    int handles;
    http_conn *conns;
    pthread_mutex_t ready_mu;
    http_job **ready;
    int n_ready, cap_ready;
    http_parser_settings settings;
};

// ---- jobs -----------------------------------------------------------------------------------

static http_job *job_create(http_server *s, http_conn *c, job_kind kind, bool details) {
    http_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    atomic_init(&j->refs, 1); // the connection's reference
    pthread_mutex_init(&j->mu, NULL);
    j->srv = s;
    j->conn = c;
    j->kind = kind;
    j->details = details;
    return j;
}

static void job_unref(http_job *j) {
    if (atomic_fetch_sub(&j->refs, 1) != 1) return;
    for (event_node *n = j->head, *next; n; n = next) {
        next = n->next;
        gen_event_free(n->ev);
        free(n);
    }
    gen_outcome_clear(&j->outcome);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

// Any thread: queue j for the loop thread.
static void job_notify(http_job *j) {
    http_server *s = j->srv;
    pthread_mutex_lock(&s->ready_mu);
    if (!j->in_ready) {
        if (s->n_ready == s->cap_ready) {
            int cap = s->cap_ready ? s->cap_ready * 2 : 64;
            http_job **p = realloc(s->ready, sizeof *p * (size_t)cap);
            if (p) s->ready = p, s->cap_ready = cap;
        }
        if (s->n_ready < s->cap_ready) {
            j->in_ready = true;
            atomic_fetch_add(&j->refs, 1);
            s->ready[s->n_ready++] = j;
        }
    }
    pthread_mutex_unlock(&s->ready_mu);
    uv_async_send(&s->async);
}

static bool job_sink_send(void *user, gen_event *ev) {
    http_job *j = user;
    event_node *n = malloc(sizeof *n);
    pthread_mutex_lock(&j->mu);
    bool closed = j->closed;
    if (!closed && n) {
        n->ev = ev;
        n->next = NULL;
        if (j->tail)
            j->tail->next = n;
        else
            j->head = n;
        j->tail = n;
    }
    pthread_mutex_unlock(&j->mu);
    if (closed || !n) {
        free(n);
        gen_event_free(ev);
        return !closed;
    }
    job_notify(j);
    return true;
}

static bool job_alive(void *user) {
    http_job *j = user;
    pthread_mutex_lock(&j->mu);
    bool alive = !j->closed;
    pthread_mutex_unlock(&j->mu);
    return alive;
}

static void job_release(void *user) {
    job_unref(user);
}

static void job_done(void *user, gen_outcome *o) {
    http_job *j = user;
    pthread_mutex_lock(&j->mu);
    j->outcome = *o;
    j->outcome_ready = true;
    pthread_mutex_unlock(&j->mu);
    memset(o, 0, sizeof *o);
    job_notify(j);
    job_unref(j);
}

// ---- writing --------------------------------------------------------------------------------

typedef struct write_req {
    uv_write_t req;
    http_conn *conn;
    char data[];
} write_req;

static void conn_maybe_free(http_conn *c);
static void conn_close(http_conn *c);
static void server_maybe_free(http_server *s);

static void on_write(uv_write_t *req, int status) {
    write_req *w = (write_req *)req;
    http_conn *c = w->conn;
    free(w);
    c->writes--;
    if (status < 0 && !c->closing)
        conn_close(c);
    else if (c->close_after_write && c->writes == 0)
        conn_close(c);
    conn_maybe_free(c);
}

static void conn_write(http_conn *c, const char *data, size_t len) {
    if (c->closing || len == 0) return;
    write_req *w = malloc(sizeof *w + len);
    if (!w) {
        conn_close(c);
        return;
    }
    memcpy(w->data, data, len);
    w->conn = c;
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_write) < 0) {
        free(w);
        conn_close(c);
        return;
    }
    c->writes++;
}

static void conn_writef(http_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void conn_writef(http_conn *c, const char *fmt, ...) {
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0) conn_write(c, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static const char *status_text(int status) {
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Payload Too Large";
    case 422:
        return "Unprocessable Entity";
    case 424:
        return "Failed Dependency";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    default:
        return "Service Unavailable";
    }
}

static void write_head(http_conn *c, int status, const char *content_type, long content_length,
                       const char *extra) {
    char len_hdr[64] = "transfer-encoding: chunked\r\n";
    if (content_length >= 0)
        snprintf(len_hdr, sizeof len_hdr, "content-length: %ld\r\n", content_length);
    conn_writef(c, "HTTP/1.1 %d %s\r\n%s%s%s%saccess-control-allow-origin: *\r\n%s%s\r\n", status,
                status_text(status), content_type ? "content-type: " : "",
                content_type ? content_type : "", content_type ? "\r\n" : "", len_hdr,
                c->keep_alive ? "" : "connection: close\r\n", extra ? extra : "");
}

// Ends the current request: the connection then reads the next one (or closes).
static void conn_request_done(http_conn *c);

static void respond(http_conn *c, int status, const char *content_type, const char *body,
                    size_t len, const char *extra) {
    write_head(c, status, content_type, (long)len, extra);
    conn_write(c, body, len);
    conn_request_done(c);
}

static void respond_json(http_conn *c, int status, char *body, const char *extra) {
    if (!body) {
        respond(c, 500, NULL, "", 0, NULL);
        return;
    }
    respond(c, status, "application/json", body, strlen(body), extra);
    free(body);
}

static void respond_error(http_conn *c, int status, const char *msg, const char *type) {
    respond_json(c, status, api_json_error(msg, type), NULL);
}

static void write_chunk(http_conn *c, const char *data, size_t len) {
    char head[32];
    int n = snprintf(head, sizeof head, "%zx\r\n", len);
    conn_write(c, head, (size_t)n);
    conn_write(c, data, len);
    conn_write(c, "\r\n", 2);
}

static void write_sse(http_conn *c, char *json) {
    if (!json) return;
    size_t n = strlen(json);
    char *buf = malloc(n + 8);
    if (buf) {
        memcpy(buf, "data:", 5);
        memcpy(buf + 5, json, n);
        memcpy(buf + 5 + n, "\n\n", 2);
        write_chunk(c, buf, n + 7);
        free(buf);
    }
    free(json);
    c->last_event_ms = uv_now(c->srv->loop);
}

static void stream_end(http_conn *c) {
    uv_timer_stop(&c->keepalive);
    conn_write(c, "0\r\n\r\n", 5);
    conn_request_done(c);
}

// ---- job progress (loop thread) --------------------------------------------------------------

static void job_progress(http_job *j) {
    http_conn *c = j->conn;
    if (!c || c->job != j) return;
    if (j->kind == JOB_STREAM) {
        pthread_mutex_lock(&j->mu);
        event_node *n = j->head;
        j->head = j->tail = NULL;
        pthread_mutex_unlock(&j->mu);
        bool ended = false;
        while (n) {
            event_node *next = n->next;
            gen_event *ev = n->ev;
            if (!ended) {
                if (ev->kind == GEN_EVENT_ERROR) {
                    write_sse(c, api_json_error(ev->error, gen_error_type(ev->error_kind)));
                    ended = true;
                } else if (ev->kind == GEN_EVENT_TOKEN || ev->kind == GEN_EVENT_END) {
                    write_sse(c, api_json_stream_event(ev, j->details));
                    ended = ev->kind == GEN_EVENT_END;
                }
            }
            gen_event_free(ev);
            free(n);
            n = next;
        }
        if (ended) stream_end(c);
        return;
    }
    pthread_mutex_lock(&j->mu);
    bool ready = j->outcome_ready;
    pthread_mutex_unlock(&j->mu);
    if (!ready) return;
    gen_outcome *o = &j->outcome;
    if (o->failed) {
        respond_error(c, gen_error_http_status(o->error_kind), o->error,
                      gen_error_type(o->error_kind));
        return;
    }
    char *body = api_json_generate(o, j->details);
    if (body && j->kind == JOB_COMPAT_GENERATE) {
        char *arr = malloc(strlen(body) + 3);
        if (arr) sprintf(arr, "[%s]", body);
        free(body);
        body = arr;
    }
    const gen_result *r = &o->results[0];
    double total = r->t_end - o->t_start, infer_s = r->t_end - r->t_batched;
    char extra[512];
    snprintf(extra, sizeof extra,
             "x-compute-type: %s\r\nx-compute-characters: %zu\r\nx-compute-time: %.0f\r\n"
             "x-total-time: %.0f\r\nx-queue-time: %.0f\r\nx-inference-time: %.0f\r\n"
             "x-time-per-token: %.0f\r\n",
             c->srv->deps.info->model_device_type, j->input_chars, total * 1000, total * 1000,
             (r->t_batched - r->t_queued) * 1000, infer_s * 1000,
             r->generated_tokens ? infer_s * 1000 / r->generated_tokens : 0.0);
    respond_json(c, 200, body, extra);
}

static void on_async(uv_async_t *a) {
    http_server *s = a->data;
    pthread_mutex_lock(&s->ready_mu);
    int n = s->n_ready;
    http_job **jobs = s->ready;
    s->ready = NULL;
    s->n_ready = s->cap_ready = 0;
    for (int i = 0; i < n; i++)
        jobs[i]->in_ready = false;
    pthread_mutex_unlock(&s->ready_mu);
    for (int i = 0; i < n; i++) {
        job_progress(jobs[i]);
        job_unref(jobs[i]);
    }
    free(jobs);
}

static void on_keepalive(uv_timer_t *t) {
    http_conn *c = t->data;
    if (c->job && c->job->kind == JOB_STREAM &&
        uv_now(c->srv->loop) - c->last_event_ms >= SSE_KEEPALIVE_MS) {
        write_chunk(c, ":\n\n", 3);
        c->last_event_ms = uv_now(c->srv->loop);
    }
}

// ---- request dispatch -------------------------------------------------------------------------

// Unicode characters of the prompt (TGI's x-compute-characters).
static size_t utf8_chars(const char *s, size_t len) {
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

static void start_stream(http_conn *c, gen_request_in *in) {
    http_server *s = c->srv;
    char extra[256];
    snprintf(extra, sizeof extra,
             "cache-control: no-cache\r\nx-accel-buffering: no\r\nx-compute-type: %s\r\n"
             "x-compute-characters: %zu\r\n",
             s->deps.info->model_device_type, utf8_chars(in->inputs, in->inputs_len));
    write_head(c, 200, "text/event-stream", -1, extra);
    http_job *j = job_create(s, c, JOB_STREAM, in->params.details);
    if (!j) {
        write_sse(c, api_json_error("out of memory", "generation"));
        stream_end(c);
        return;
    }
    c->job = j;
    s->busy++;
    c->last_event_ms = uv_now(s->loop);
    uv_timer_start(&c->keepalive, on_keepalive, SSE_KEEPALIVE_MS, SSE_KEEPALIVE_MS);
    atomic_fetch_add(&j->refs, 1); // the sink's reference
    gen_error_kind kind;
    char msg[640];
    if (!infer_stream(s->deps.inf, in, (gen_sink){job_sink_send, job_alive, job_release, j}, &kind,
                      msg, sizeof msg)) {
        job_unref(j); // the sink was not used
        write_sse(c, api_json_error(msg, gen_error_type(kind)));
        stream_end(c);
    }
}

static void start_generate(http_conn *c, gen_request_in *in, job_kind kind) {
    http_server *s = c->srv;
    http_job *j = job_create(s, c, kind, in->params.details || in->params.decoder_input_details);
    if (!j) {
        respond_error(c, 500, "out of memory", "generation");
        return;
    }
    j->input_chars = utf8_chars(in->inputs, in->inputs_len);
    c->job = j;
    s->busy++;
    atomic_fetch_add(&j->refs, 1); // the waiter's reference
    infer_generate(s->deps.inf, in, (infer_waiter){job_done, job_alive, j});
}

typedef struct health_work {
    uv_work_t req;
    http_conn *conn;
    health *h;
    bool ok;
} health_work;

static void health_run(uv_work_t *req) {
    health_work *w = req->data;
    w->ok = !w->h || health_check(w->h);
}

static void health_after(uv_work_t *req, int status) {
    health_work *w = req->data;
    http_conn *c = w->conn;
    c->work--;
    if (!c->closing) {
        if (w->ok)
            respond(c, 200, NULL, "", 0, NULL);
        else
            respond_error(c, 503, "unhealthy", "healthcheck");
    }
    free(w);
    conn_maybe_free(c);
}

static void dispatch(http_conn *c) {
    http_server *s = c->srv;
    char path[256];
    size_t n = c->url_len < sizeof path - 1 ? c->url_len : sizeof path - 1;
    memcpy(path, c->url ? c->url : "/", n ? n : 1);
    path[n ? n : 1] = 0;
    char *q = strchr(path, '?');
    if (q) *q = 0;
    enum http_method m = (enum http_method)c->parser.method;
    c->keep_alive = http_should_keep_alive(&c->parser) && !s->closing;
    c->busy = true;

    if (m == HTTP_OPTIONS) {
        respond(c, 200, NULL, "", 0,
                "access-control-allow-methods: GET, POST\r\naccess-control-allow-headers: "
                "content-type\r\n");
        return;
    }
    bool is_get = m == HTTP_GET || m == HTTP_HEAD;
    if (is_get && (!strcmp(path, "/") || !strcmp(path, "/health") || !strcmp(path, "/ping"))) {
        health_work *w = calloc(1, sizeof *w);
        if (!w) {
            respond_error(c, 503, "unhealthy", "healthcheck");
            return;
        }
        w->req.data = w;
        w->conn = c;
        w->h = s->deps.health;
        if (uv_queue_work(s->loop, &w->req, health_run, health_after) != 0) {
            free(w);
            respond_error(c, 503, "unhealthy", "healthcheck");
            return;
        }
        c->work++;
        return;
    }
    if (is_get && !strcmp(path, "/info")) {
        respond_json(c, 200, api_json_info(s->deps.info), NULL);
        return;
    }
    if (is_get && !strcmp(path, "/metrics")) {
        size_t len = 0;
        char *text = metrics_render(&len);
        respond(c, 200, "text/plain; version=0.0.4", text ? text : "", text ? len : 0, NULL);
        free(text);
        return;
    }
    bool gen = !strcmp(path, "/generate"), gen_stream = !strcmp(path, "/generate_stream"),
         compat = !strcmp(path, "/") || !strcmp(path, "/invocations");
    if (!gen && !gen_stream && !compat) {
        respond(c, 404, NULL, "", 0, NULL);
        return;
    }
    if (m != HTTP_POST) {
        respond(c, 405, NULL, "", 0, NULL);
        return;
    }
    if (c->too_large) {
        c->keep_alive = false;
        respond_error(c, 413, "request body too large", "validation");
        return;
    }
    if (!s->accepting) {
        c->keep_alive = false;
        respond_error(c, 503, "the server is shutting down", "healthcheck");
        return;
    }
    gen_request_in in;
    bool stream = false;
    char msg[512];
    json_parse_status st = api_json_parse_request(c->body ? c->body : "", c->body_len, &in,
                                                  compat ? &stream : NULL, msg, sizeof msg);
    if (st != JSON_PARSE_OK) {
        // Rejected before TGI's handler runs (axum's Json extractor): no request metrics.
        respond_error(c, st == JSON_PARSE_SYNTAX ? 400 : 422, msg, "validation");
        return;
    }
    if (gen_stream || (compat && stream))
        start_stream(c, &in);
    else
        start_generate(c, &in, compat ? JOB_COMPAT_GENERATE : JOB_GENERATE);
    gen_request_in_clear(&in);
}

// ---- connections ----------------------------------------------------------------------------

static int on_message_begin(http_parser *p) {
    http_conn *c = p->data;
    c->url_len = c->body_len = 0;
    c->too_large = c->header_is_expect = c->expect_continue = false;
    return 0;
}

static bool buf_append(char **buf, size_t *len, size_t *cap, const char *at, size_t n) {
    if (*len + n + 1 > *cap) {
        size_t nc = *cap ? *cap * 2 : 1024;
        while (nc < *len + n + 1)
            nc *= 2;
        char *b = realloc(*buf, nc);
        if (!b) return false;
        *buf = b;
        *cap = nc;
    }
    memcpy(*buf + *len, at, n);
    *len += n;
    (*buf)[*len] = 0;
    return true;
}

static int on_url(http_parser *p, const char *at, size_t n) {
    http_conn *c = p->data;
    char *u = realloc(c->url, c->url_len + n + 1);
    if (!u) return 1;
    c->url = u;
    memcpy(c->url + c->url_len, at, n);
    c->url_len += n;
    c->url[c->url_len] = 0;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n) {
    http_conn *c = p->data;
    c->header_is_expect = n == 6 && !strncasecmp(at, "expect", 6);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n) {
    http_conn *c = p->data;
    if (c->header_is_expect && n == 12 && !strncasecmp(at, "100-continue", 12))
        c->expect_continue = true;
    return 0;
}

// curl sends "Expect: 100-continue" with larger bodies and waits a second unless answered.
static int on_headers_complete(http_parser *p) {
    http_conn *c = p->data;
    if (c->expect_continue) conn_writef(c, "HTTP/1.1 100 Continue\r\n\r\n");
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
    http_conn *c = p->data;
    if (c->body_len + n > MAX_BODY) {
        c->too_large = true;
        return 0;
    }
    return buf_append(&c->body, &c->body_len, &c->body_cap, at, n) ? 0 : 1;
}

static int on_message_complete(http_parser *p) {
    http_conn *c = p->data;
    dispatch(c);
    http_parser_pause(p, 1); // one request at a time: resume when it is answered
    return 0;
}

static void conn_process(http_conn *c) {
    while (!c->busy && !c->closing && c->pending_len > 0) {
        c->in_parser = true;
        size_t n = http_parser_execute(&c->parser, &c->srv->settings, c->pending, c->pending_len);
        c->in_parser = false;
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (e == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
        } else if (e != HPE_OK) {
            c->keep_alive = false;
            c->busy = true;
            respond_error(c, 400, http_errno_description(e), "validation");
            return;
        }
        memmove(c->pending, c->pending + n, c->pending_len - n);
        c->pending_len -= n;
        if (e == HPE_OK && n == 0) break;
    }
}

static void conn_request_done(http_conn *c) {
    http_server *s = c->srv;
    if (c->job) {
        c->job->conn = NULL;
        job_unref(c->job);
        c->job = NULL;
        s->busy--;
    }
    c->busy = false;
    if (!c->keep_alive) {
        c->close_after_write = true;
        if (c->writes == 0) conn_close(c);
        return;
    }
    if (!c->in_parser) conn_process(c); // inside the parser, its loop goes on by itself
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    buf->base = malloc(suggested);
    buf->len = buf->base ? suggested : 0;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
    http_conn *c = st->data;
    if (nread < 0) {
        free(buf->base);
        conn_close(c);
        return;
    }
    if (nread > 0 && !c->closing) {
        char *p = realloc(c->pending, c->pending_len + (size_t)nread);
        if (!p) {
            free(buf->base);
            conn_close(c);
            return;
        }
        c->pending = p;
        memcpy(c->pending + c->pending_len, buf->base, (size_t)nread);
        c->pending_len += (size_t)nread;
        conn_process(c);
    }
    free(buf->base);
}

static void conn_maybe_free(http_conn *c) {
    if (!c->closing || c->handles > 0 || c->writes > 0 || c->work > 0) return;
    http_server *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    free(c->url);
    free(c->body);
    free(c->pending);
    free(c);
    server_maybe_free(s);
}

static void on_conn_handle_closed(uv_handle_t *h) {
    http_conn *c = h->data;
    c->handles--;
    conn_maybe_free(c);
}

static void conn_close(http_conn *c) {
    if (c->closing) return;
    c->closing = true;
    if (c->job) {
        http_job *j = c->job;
        pthread_mutex_lock(&j->mu);
        j->closed = true; // the batcher drops the request at its next step
        pthread_mutex_unlock(&j->mu);
        j->conn = NULL;
        c->job = NULL;
        c->srv->busy--;
        job_unref(j);
    }
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->keepalive, on_conn_handle_closed);
}

static void on_connection(uv_stream_t *server, int status) {
    http_server *s = server->data;
    if (status < 0) return;
    http_conn *c = calloc(1, sizeof *c);
    if (!c) return;
    c->srv = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->keepalive);
    c->tcp.data = c->keepalive.data = c;
    c->handles = 2;
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
}

// ---- server ---------------------------------------------------------------------------------

// The server is freed once its own handles are closed and its last connection is gone.
static void server_maybe_free(http_server *s) {
    if (!s->closing || s->handles > 0 || s->conns) return;
    for (int i = 0; i < s->n_ready; i++)
        job_unref(s->ready[i]);
    free(s->ready);
    pthread_mutex_destroy(&s->ready_mu);
    free(s);
}

static void on_server_handle_closed(uv_handle_t *h) {
    http_server *s = h->data;
    s->handles--;
    server_maybe_free(s);
}

fl_code http_server_create(uv_loop_t *loop, const char *host, int port,
                           const http_server_deps *deps, http_server **out, fl_error *err) {
    http_server *s = calloc(1, sizeof *s);
    if (!s) return fl_error_set(err, FL_ENOMEM, "http: out of memory");
    s->loop = loop;
    s->deps = *deps;
    s->accepting = true;
    pthread_mutex_init(&s->ready_mu, NULL);
    s->settings.on_message_begin = on_message_begin;
    s->settings.on_url = on_url;
    s->settings.on_header_field = on_header_field;
    s->settings.on_header_value = on_header_value;
    s->settings.on_headers_complete = on_headers_complete;
    s->settings.on_body = on_body;
    s->settings.on_message_complete = on_message_complete;
    struct sockaddr_storage addr;
    int rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&addr);
    if (rc != 0) rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr);
    if (rc != 0) {
        pthread_mutex_destroy(&s->ready_mu);
        free(s);
        return fl_error_set(err, FL_EINVAL, "http: bad --hostname %s", host);
    }
    uv_tcp_init(loop, &s->listener);
    uv_async_init(loop, &s->async, on_async);
    s->listener.data = s->async.data = s;
    s->handles = 2;
    rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&s->listener, 1024, on_connection);
    if (rc != 0) {
        fl_error_set(err, FL_EIO, "http: cannot listen on %s:%d: %s", host, port, uv_strerror(rc));
        s->accepting = false;
        http_server_close(s);
        return err ? err->code : FL_EIO;
    }
    log_info("http listening host=%s port=%d", host, port);
    *out = s;
    return FL_OK;
}

void http_server_stop_accepting(http_server *s) {
    if (!s->accepting) return;
    s->accepting = false;
    uv_close((uv_handle_t *)&s->listener, on_server_handle_closed);
}

int http_server_busy(const http_server *s) {
    return s->busy;
}

void http_server_close(http_server *s) {
    s->closing = true;
    if (s->accepting) {
        s->accepting = false;
        uv_close((uv_handle_t *)&s->listener, on_server_handle_closed);
    } else if (!uv_is_closing((uv_handle_t *)&s->listener)) {
        uv_close((uv_handle_t *)&s->listener, on_server_handle_closed);
    }
    for (http_conn *c = s->conns; c; c = c->next)
        conn_close(c);
    uv_close((uv_handle_t *)&s->async, on_server_handle_closed);
}
