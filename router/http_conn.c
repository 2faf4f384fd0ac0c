#include "router/http_conn.h"

#include <http_parser.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"

enum {
    MAX_BODY = 8 << 20,       // larger bodies are flagged body_too_large
    SSE_KEEPALIVE_MS = 15000, // axum KeepAlive::default()
};

// Where a connection is in its life. READING -> ANSWERING or STREAMING (a request arrived) ->
// READING (answered, keep-alive) or DRAINING (answered, `connection: close`) -> CLOSED; any state
// -> CLOSED when the client goes away or the server closes.
typedef enum conn_state {
    CONN_READING,   // no request being answered: received bytes are parsed
    CONN_ANSWERING, // a request is being answered; later bytes wait in pending
    CONN_STREAMING, // answering with an open SSE stream (keep-alive comments run)
    CONN_DRAINING,  // the last response is queued: close once it is written
    CONN_CLOSED,    // handles closing; freed once no handle, write or work is left
} conn_state;

// The Expect header, followed while a request's headers are parsed.
typedef enum expect_state {
    EXPECT_NONE,
    EXPECT_VALUE,    // the header being parsed is Expect: its value comes next
    EXPECT_CONTINUE, // "Expect: 100-continue": the client waits for "100 Continue"
} expect_state;

enum { AUTHORIZATION_MAX = 1024 };

struct http_job {
    atomic_int refs;
    atomic_bool closed; // the client went away
    http_job_ops ops;
    void *payload;
    // Loop thread only.
    http_server *srv;
    http_conn *conn; // NULL once the request is answered or the connection closed
    bool in_ready;   // guarded by srv->ready_mu
};

struct http_conn {
    uv_tcp_t tcp;
    uv_timer_t keepalive;
    http_server *srv;
    http_parser parser;
    conn_state state;
    expect_state expect;
    bool in_authorization;                 // the header being parsed is Authorization
    char authorization[AUTHORIZATION_MAX]; // its value ("" absent; AUTHORIZATION_MAX-1: too long)
    size_t authorization_len;
    bool keep_alive; // of the request being answered
    char *url;
    size_t url_len;
    char *body;
    size_t body_len, body_cap;
    bool body_too_large;
    char *pending; // received, not yet parsed (held while a request is answered)
    size_t pending_len;
    int writes;  // uv_write requests in flight
    int handles; // open uv handles (tcp, timer)
    int work;    // thread-pool work in flight
    uint64_t last_event_ms;
    http_job *job;
    http_conn *prev, *next;
};

struct http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_async_t async;
    http_service svc;
    bool accepting, closing;
    int busy;
    int handles;
    http_conn *conns;
    pthread_mutex_t ready_mu;
    http_job **ready;
    int n_ready, cap_ready;
    http_parser_settings settings;
};

static void conn_maybe_free(http_conn *c);
static void conn_close(http_conn *c);
static void conn_process(http_conn *c);
static void server_maybe_free(http_server *s);

// ---- jobs -----------------------------------------------------------------------------------

http_job *http_conn_job_start(http_conn *c, const http_job_ops *ops, void *payload) {
    http_job *j = c->state == CONN_CLOSED ? NULL : calloc(1, sizeof *j);
    if (!j) return NULL;
    atomic_init(&j->refs, 1); // the connection's reference
    atomic_init(&j->closed, false);
    j->ops = *ops;
    j->payload = payload;
    j->srv = c->srv;
    j->conn = c;
    c->job = j;
    c->srv->busy++;
    return j;
}

void http_job_ref(http_job *j) {
    atomic_fetch_add(&j->refs, 1);
}

void http_job_unref(http_job *j) {
    if (atomic_fetch_sub(&j->refs, 1) != 1) return;
    j->ops.free(j->payload);
    free(j);
}

void *http_job_payload(http_job *j) {
    return j->payload;
}

bool http_job_alive(const http_job *j) {
    return !atomic_load(&j->closed);
}

void http_job_notify(http_job *j) {
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
            http_job_ref(j);
            s->ready[s->n_ready++] = j;
        }
    }
    pthread_mutex_unlock(&s->ready_mu);
    uv_async_send(&s->async);
}

// The request is over (answered or abandoned): the job leaves the connection.
static void conn_job_detach(http_conn *c) {
    http_job *j = c->job;
    if (!j) return;
    j->conn = NULL;
    c->job = NULL;
    c->srv->busy--;
    http_job_unref(j);
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
        http_job *j = jobs[i];
        http_conn *c = j->conn;
        if (c && c->job == j) {
            j->ops.progress(j->payload, c);
            conn_process(c); // answered: a pipelined request may follow
        }
        http_job_unref(j);
    }
    free(jobs);
}

// ---- writing --------------------------------------------------------------------------------

typedef struct write_req {
    uv_write_t req;
    http_conn *conn;
    char data[];
} write_req;

static void on_write(uv_write_t *req, int status) {
    write_req *w = (write_req *)req;
    http_conn *c = w->conn;
    free(w);
    c->writes--;
    if (status < 0 || (c->state == CONN_DRAINING && c->writes == 0)) conn_close(c);
    conn_maybe_free(c);
}

static void conn_write(http_conn *c, const char *data, size_t len) {
    if (c->state == CONN_CLOSED || len == 0) return;
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
    case 401:
        return "Unauthorized";
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

// content_length < 0: chunked.
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

static void write_chunk(http_conn *c, const char *data, size_t len) {
    char head[32];
    int n = snprintf(head, sizeof head, "%zx\r\n", len);
    conn_write(c, head, (size_t)n);
    conn_write(c, data, len);
    conn_write(c, "\r\n", 2);
}

// Ends the current request: the connection then reads the next one (or closes). The caller's
// entry point (on_read, on_async, work_after) resumes parsing.
static void conn_request_done(http_conn *c) {
    if (c->state == CONN_CLOSED) return;
    conn_job_detach(c);
    if (!c->keep_alive) {
        c->state = CONN_DRAINING;
        if (c->writes == 0) conn_close(c);
        return;
    }
    c->state = CONN_READING;
}

void http_conn_close_after_response(http_conn *c) {
    c->keep_alive = false;
}

void http_conn_respond(http_conn *c, int status, const char *content_type, const char *body,
                       size_t len, const char *extra_headers) {
    write_head(c, status, content_type, (long)len, extra_headers);
    conn_write(c, body, len);
    conn_request_done(c);
}

static void on_keepalive(uv_timer_t *t) {
    http_conn *c = t->data;
    if (c->state == CONN_STREAMING && uv_now(c->srv->loop) - c->last_event_ms >= SSE_KEEPALIVE_MS) {
        write_chunk(c, ":\n\n", 3);
        c->last_event_ms = uv_now(c->srv->loop);
    }
}

void http_conn_sse_begin(http_conn *c, const char *extra_headers) {
    write_head(c, 200, "text/event-stream", -1, extra_headers);
    if (c->state != CONN_ANSWERING) return; // closed meanwhile
    c->state = CONN_STREAMING;
    c->last_event_ms = uv_now(c->srv->loop);
    uv_timer_start(&c->keepalive, on_keepalive, SSE_KEEPALIVE_MS, SSE_KEEPALIVE_MS);
}

void http_conn_sse_event(http_conn *c, char *json) {
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

void http_conn_sse_end(http_conn *c) {
    uv_timer_stop(&c->keepalive);
    conn_write(c, "0\r\n\r\n", 5);
    conn_request_done(c);
}

// ---- thread-pool work -------------------------------------------------------------------------

typedef struct conn_work {
    uv_work_t req;
    http_conn *conn;
    void (*work)(void *user);
    void (*after)(void *user, http_conn *c);
    void *user;
} conn_work;

static void work_run(uv_work_t *req) {
    conn_work *w = req->data;
    w->work(w->user);
}

static void work_after(uv_work_t *req, int status) {
    conn_work *w = req->data;
    http_conn *c = w->conn;
    c->work--;
    bool open = c->state != CONN_CLOSED;
    w->after(w->user, open ? c : NULL);
    free(w);
    if (open) conn_process(c);
    conn_maybe_free(c);
}

bool http_conn_queue_work(http_conn *c, void (*work)(void *user),
                          void (*after)(void *user, http_conn *c), void *user) {
    conn_work *w = calloc(1, sizeof *w);
    if (!w) return false;
    w->req.data = w;
    w->conn = c;
    w->work = work;
    w->after = after;
    w->user = user;
    if (uv_queue_work(c->srv->loop, &w->req, work_run, work_after) != 0) {
        free(w);
        return false;
    }
    c->work++;
    return true;
}

// ---- request framing ---------------------------------------------------------------------------

static void conn_dispatch(http_conn *c, const char *parse_error) {
    http_server *s = c->srv;
    char path[256];
    size_t n = c->url_len < sizeof path - 1 ? c->url_len : sizeof path - 1;
    memcpy(path, c->url ? c->url : "/", n ? n : 1);
    path[n ? n : 1] = 0;
    char *q = strchr(path, '?');
    if (q) *q = 0;
    http_request req = {.method = (int)c->parser.method,
                        .path = path,
                        .body = c->body ? c->body : "",
                        .body_len = c->body_len,
                        .body_too_large = c->body_too_large,
                        .parse_error = parse_error,
                        .authorization =
                            c->authorization_len && c->authorization_len < AUTHORIZATION_MAX - 1
                                ? c->authorization
                                : NULL};
    c->keep_alive = !parse_error && http_should_keep_alive(&c->parser) && !s->closing;
    c->state = CONN_ANSWERING;
    s->svc.handle(s->svc.user, c, &req);
}

static int on_message_begin(http_parser *p) {
    http_conn *c = p->data;
    c->url_len = c->body_len = 0;
    c->body_too_large = false;
    c->expect = EXPECT_NONE;
    c->in_authorization = false;
    c->authorization_len = 0;
    c->authorization[0] = 0;
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
    bool is_expect = n == 6 && !strncasecmp(at, "expect", 6);
    if (c->expect != EXPECT_CONTINUE) c->expect = is_expect ? EXPECT_VALUE : EXPECT_NONE;
    c->in_authorization = n == 13 && !strncasecmp(at, "authorization", 13);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n) {
    http_conn *c = p->data;
    if (c->expect == EXPECT_VALUE)
        c->expect = n == 12 && !strncasecmp(at, "100-continue", 12) ? EXPECT_CONTINUE : EXPECT_NONE;
    if (c->in_authorization) { // values may arrive in pieces; one too long is dropped whole
        size_t room = AUTHORIZATION_MAX - 1 - c->authorization_len;
        size_t k = n < room ? n : room;
        memcpy(c->authorization + c->authorization_len, at, k);
        c->authorization_len += k;
        c->authorization[c->authorization_len] = 0;
    }
    return 0;
}

// curl sends "Expect: 100-continue" with larger bodies and waits a second unless answered.
static int on_headers_complete(http_parser *p) {
    http_conn *c = p->data;
    if (c->expect == EXPECT_CONTINUE) conn_writef(c, "HTTP/1.1 100 Continue\r\n\r\n");
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
    http_conn *c = p->data;
    if (c->body_len + n > MAX_BODY) {
        c->body_too_large = true;
        return 0;
    }
    return buf_append(&c->body, &c->body_len, &c->body_cap, at, n) ? 0 : 1;
}

static int on_message_complete(http_parser *p) {
    http_conn *c = p->data;
    conn_dispatch(c, NULL);
    http_parser_pause(p, 1); // one request at a time: resume when it is answered
    return 0;
}

// Parses pending bytes while no request is being answered.
static void conn_process(http_conn *c) {
    while (c->state == CONN_READING && c->pending_len > 0) {
        size_t n = http_parser_execute(&c->parser, &c->srv->settings, c->pending, c->pending_len);
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (e == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
        } else if (e != HPE_OK) {
            conn_dispatch(c, http_errno_description(e));
            return;
        }
        memmove(c->pending, c->pending + n, c->pending_len - n);
        c->pending_len -= n;
        if (e == HPE_OK && n == 0) break;
    }
}

// ---- connections ----------------------------------------------------------------------------

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
    if (nread > 0 && c->state != CONN_CLOSED) {
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
    if (c->state != CONN_CLOSED || c->handles > 0 || c->writes > 0 || c->work > 0) return;
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
    if (c->state == CONN_CLOSED) return;
    c->state = CONN_CLOSED;
    if (c->job) atomic_store(&c->job->closed, true); // the producer drops the request
    conn_job_detach(c);
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->keepalive, on_conn_handle_closed);
}

static void on_connection(uv_stream_t *server, int status) {
    http_server *s = server->data;
    if (status < 0) return;
    http_conn *c = calloc(1, sizeof *c);
    if (!c) return;
    c->srv = s;
    c->state = CONN_READING;
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

static void service_release(http_service svc) {
    if (svc.release) svc.release(svc.user);
}

// The server is freed once its own handles are closed and its last connection is gone.
static void server_maybe_free(http_server *s) {
    if (!s->closing || s->handles > 0 || s->conns) return;
    for (int i = 0; i < s->n_ready; i++)
        http_job_unref(s->ready[i]);
    free(s->ready);
    pthread_mutex_destroy(&s->ready_mu);
    service_release(s->svc);
    free(s);
}

static void on_server_handle_closed(uv_handle_t *h) {
    http_server *s = h->data;
    s->handles--;
    server_maybe_free(s);
}

fl_code http_server_create(uv_loop_t *loop, const char *host, int port, http_service svc,
                           http_server **out, fl_error *err) {
    http_server *s = calloc(1, sizeof *s);
    if (!s) {
        service_release(svc);
        return fl_error_set(err, FL_ENOMEM, "http: out of memory");
    }
    s->loop = loop;
    s->svc = svc;
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
        service_release(svc);
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

bool http_server_accepting(const http_server *s) {
    return s->accepting;
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
