#include "router/http_conn.h"

#include <http_parser.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "router/tls.h"

enum {
    DEFAULT_MAX_BODY = 8 << 20,
    DEFAULT_HEADER_TIMEOUT_MS = 10000,
    DEFAULT_BODY_TIMEOUT_MS = 30000,
    DEFAULT_MAX_HEADER = 64 << 10, // request line and headers (431 beyond)
    MAX_PENDING = 1 << 20,       // bytes buffered while a request is answered (reading pauses)
    LINGER_MS = 2000,            // after a refusal: input discarded until EOF or this long
    SSE_KEEPALIVE_MS = 15000,    // axum KeepAlive::default()
    MAX_ORIGIN = 256,
    MAX_AUTHORIZATION = 512, // "Bearer " + an --api-key (at most 255 bytes)
};

// Where a connection is in its life. IDLE -> HEADERS -> BODY (bytes are parsed in these three
// reading states) -> ANSWERING or STREAMING (a request arrived) -> IDLE (answered, keep-alive) or
// DRAINING (answered, `connection: close`) -> CLOSED. A request refused before it was read in
// full goes DRAINING -> LINGERING -> CLOSED, so that the client reads the answer before the
// close. Any state -> CLOSED when the client goes away or the server closes. The deadline timer
// follows the state: IDLE and HEADERS the header timeout, BODY the body timeout (restarted by
// every piece of body), LINGERING the linger time.
typedef enum conn_state {
    CONN_IDLE,      // waiting for the first byte of a request (closes after the header timeout)
    CONN_HEADERS,   // a request line and headers are arriving
    CONN_BODY,      // a body is arriving
    CONN_ANSWERING, // a request is being answered; later bytes wait in pending
    CONN_STREAMING, // answering with an open SSE stream (keep-alive comments run)
    CONN_DRAINING,  // the last response is queued: close (or linger) once it is written
    CONN_LINGERING, // write side shut after a refusal: input is discarded until EOF
    CONN_CLOSED,    // handles closing; freed once no handle, write or work is left
} conn_state;

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

// The header being parsed (http-parser may hand a name or value over in pieces).
typedef struct header_acc {
    char name[16]; // only short names matter (expect, origin, authorization)
    size_t name_len;
    char value[MAX_AUTHORIZATION];
    size_t value_len;
    bool in_value, value_overflow;
} header_acc;

struct http_conn {
    uv_tcp_t tcp;
    uv_timer_t keepalive; // SSE comments
    uv_timer_t deadline;  // read timeouts and linger (see conn_state)
    uv_shutdown_t shutdown;
    http_server *srv;
    http_parser parser;
    conn_state state;
    bool keep_alive;      // of the request being answered
    bool expect_continue; // "Expect: 100-continue": the client waits for "100 Continue"
    bool refused;         // the request being answered was refused: linger after the answer
    bool peer_eof;        // the client shut its write side (it may still read)
    bool reading;         // uv_read_start is in effect
    header_acc hdr;
    char origin[MAX_ORIGIN]; // "" when absent or too long
    bool has_origin;
    char authorization[MAX_AUTHORIZATION]; // "" when absent or too long
    size_t header_bytes;
    char *url;
    size_t url_len;
    char *body;
    size_t body_len, body_cap;
    char *pending; // received, not yet parsed (held while a request is answered)
    size_t pending_len;
    int writes;  // uv_write and uv_shutdown requests in flight
    int handles; // open uv handles (tcp, timers)
    int work;    // thread-pool work in flight
    uint64_t last_event_ms;
    http_job *job;
    tls_conn *tls; // NULL: plaintext
    // Detached connections (http_conn_create_detached): no socket; output goes to sink.
    void (*sink)(void *user, const char *data, size_t len);
    void *sink_user;
    http_conn *prev, *next;
};

struct http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_async_t async;
    http_service svc;
    size_t max_body, max_header;
    int header_timeout_ms, body_timeout_ms;
    char **origins; // [n_origins] allowed CORS origins
    int n_origins;
    bool any_origin; // "*" was given
    bool accepting, closing;
    int busy;
    int handles;
    http_conn *conns;
    tls_ctx *tls; // NULL: plaintext HTTP
    pthread_mutex_t ready_mu;
    http_job **ready;
    int n_ready, cap_ready;
    http_parser_settings settings;
};

static void conn_maybe_free(http_conn *c);
static void conn_close(http_conn *c);
static void conn_process(http_conn *c);
static void conn_tls_flush(http_conn *c);
static void conn_enter(http_conn *c, conn_state st);
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

static void on_shutdown(uv_shutdown_t *req, int status) {
    http_conn *c = req->data;
    c->writes--;
    conn_maybe_free(c);
}

// The response is written: close, or after a refusal shut the write side and discard the rest
// of the request (closing with unread input would reset the connection, and the client could
// lose the answer).
static void conn_drained(http_conn *c) {
    if (!c->refused || c->peer_eof || c->sink) {
        conn_close(c);
        return;
    }
    if (c->tls) {
        tls_conn_shutdown(c->tls);
        conn_tls_flush(c);
    }
    c->shutdown.data = c;
    if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        conn_close(c);
        return;
    }
    c->writes++;
    conn_enter(c, CONN_LINGERING);
}

static void on_write(uv_write_t *req, int status) {
    write_req *w = (write_req *)req;
    http_conn *c = w->conn;
    free(w);
    c->writes--;
    if (status < 0)
        conn_close(c);
    else if (c->state == CONN_DRAINING && c->writes == 0)
        conn_drained(c);
    conn_maybe_free(c);
}

// Puts bytes on the socket as they are (ciphertext on a TLS connection).
static void conn_write_raw(http_conn *c, const char *data, size_t len) {
    if (c->state == CONN_CLOSED || len == 0) return;
    if (c->sink) {
        c->sink(c->sink_user, data, len);
        return;
    }
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

// Sends what the TLS layer has for the socket (records, handshake messages, alerts).
static void conn_tls_flush(http_conn *c) {
    char *out;
    size_t n = tls_conn_take_output(c->tls, &out);
    if (n > 0) conn_write_raw(c, out, n);
    free(out);
}

static void conn_write(http_conn *c, const char *data, size_t len) {
    if (c->state == CONN_CLOSED || c->state == CONN_LINGERING || len == 0) return;
    if (!c->tls) {
        conn_write_raw(c, data, len);
        return;
    }
    if (!tls_conn_write(c->tls, data, len)) {
        conn_close(c);
        return;
    }
    conn_tls_flush(c);
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
    static const struct {
        int status;
        const char *text;
    } texts[] = {
        {200, "OK"},
        {204, "No Content"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {413, "Payload Too Large"},
        {422, "Unprocessable Entity"},
        {424, "Failed Dependency"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        if (texts[i].status == status) return texts[i].text;
    return "Service Unavailable";
}

http_cors http_conn_cors(const http_conn *c) {
    const http_server *s = c->srv;
    if (!c->has_origin) return HTTP_CORS_NONE;
    if (s->any_origin) return HTTP_CORS_ALLOWED;
    for (int i = 0; i < s->n_origins; i++)
        if (!strcmp(s->origins[i], c->origin)) return HTTP_CORS_ALLOWED;
    return HTTP_CORS_DENIED;
}

// The CORS headers of a response to c's request (an allowed Origin is echoed; the answer varies
// with Origin unless any origin is allowed).
static void cors_headers(const http_conn *c, char *out, size_t cap) {
    const http_server *s = c->srv;
    bool allowed = http_conn_cors(c) == HTTP_CORS_ALLOWED;
    snprintf(out, cap, "%s%s%s%s", allowed ? "access-control-allow-origin: " : "",
             allowed ? (s->any_origin ? "*" : c->origin) : "", allowed ? "\r\n" : "",
             s->n_origins && !s->any_origin ? "vary: origin\r\n" : "");
}

// content_length < 0: chunked.
static void write_head(http_conn *c, int status, const char *content_type, long content_length,
                       const char *extra) {
    char len_hdr[64] = "transfer-encoding: chunked\r\n";
    if (content_length >= 0)
        snprintf(len_hdr, sizeof len_hdr, "content-length: %ld\r\n", content_length);
    char cors[MAX_ORIGIN + 64];
    cors_headers(c, cors, sizeof cors);
    conn_writef(c, "HTTP/1.1 %d %s\r\n%s%s%s%s%s%s%s\r\n", status, status_text(status),
                content_type ? "content-type: " : "", content_type ? content_type : "",
                content_type ? "\r\n" : "", len_hdr, cors,
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
    uv_timer_stop(&c->keepalive);
    if (!c->keep_alive) {
        conn_enter(c, CONN_DRAINING);
        if (c->writes == 0) conn_drained(c);
        return;
    }
    conn_enter(c, CONN_IDLE);
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
    conn_enter(c, CONN_STREAMING);
    c->last_event_ms = uv_now(c->srv->loop);
    uv_timer_start(&c->keepalive, on_keepalive, SSE_KEEPALIVE_MS, SSE_KEEPALIVE_MS);
}

void http_conn_sse_raw(http_conn *c, const char *data, size_t len) {
    write_chunk(c, data, len);
    c->last_event_ms = uv_now(c->srv->loop);
}

void http_conn_sse_data(http_conn *c, const char *prefix, char *json) {
    if (!json) return;
    size_t p = strlen(prefix), n = strlen(json);
    char *buf = malloc(p + n + 3);
    if (buf) {
        memcpy(buf, prefix, p);
        memcpy(buf + p, json, n);
        memcpy(buf + p + n, "\n\n", 2);
        http_conn_sse_raw(c, buf, p + n + 2);
        free(buf);
    }
    free(json);
}

void http_conn_sse_event(http_conn *c, char *json) {
    http_conn_sse_data(c, "data:", json);
}

void http_conn_sse_end(http_conn *c) {
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

static bool conn_is_reading(const http_conn *c) {
    return c->state == CONN_IDLE || c->state == CONN_HEADERS || c->state == CONN_BODY;
}

static void on_deadline(uv_timer_t *t);

// Sets the state and the deadline timer that goes with it.
static void conn_enter(http_conn *c, conn_state st) {
    if (c->state == CONN_CLOSED) return;
    c->state = st;
    const http_server *s = c->srv;
    int ms = st == CONN_IDLE || st == CONN_HEADERS ? s->header_timeout_ms
             : st == CONN_BODY                     ? s->body_timeout_ms
             : st == CONN_LINGERING                ? LINGER_MS
                                                   : 0;
    if (ms > 0)
        uv_timer_start(&c->deadline, on_deadline, (uint64_t)ms, 0);
    else
        uv_timer_stop(&c->deadline);
}

// Hands the request (or a refusal) to the service.
static void conn_dispatch(http_conn *c, int refusal, const char *reason) {
    http_server *s = c->srv;
    char path[256];
    size_t n = c->url_len < sizeof path - 1 ? c->url_len : sizeof path - 1;
    memcpy(path, c->url ? c->url : "/", n ? n : 1);
    path[n ? n : 1] = 0;
    char *q = strchr(path, '?');
    if (q) *q = 0;
    http_request req = {.method = (int)c->parser.method,
                        .path = path,
                        .body = c->body && !refusal ? c->body : "",
                        .body_len = refusal ? 0 : c->body_len,
                        .refusal = refusal,
                        .refusal_reason = reason,
                        .authorization = c->authorization[0] ? c->authorization : NULL};
    c->refused = refusal != 0;
    c->keep_alive = !refusal && http_should_keep_alive(&c->parser) && !s->closing;
    conn_enter(c, CONN_ANSWERING);
    s->svc.handle(s->svc.user, c, &req);
}

// Answers the request being read with an error and closes the connection afterwards; what the
// client still sends is discarded.
static void conn_refuse(http_conn *c, int status, const char *reason) {
    if (!conn_is_reading(c)) return;
    if (HTTP_PARSER_ERRNO(&c->parser) == HPE_OK)
        http_parser_pause(&c->parser, 1); // stops the parser when called from a callback
    c->pending_len = 0;
    conn_dispatch(c, status, reason);
}

static void on_deadline(uv_timer_t *t) {
    http_conn *c = t->data;
    switch (c->state) {
    case CONN_IDLE: // an idle keep-alive connection, or one that never sent anything
        if (c->writes == 0)
            conn_close(c);
        else
            conn_enter(c, CONN_DRAINING);
        break;
    case CONN_HEADERS:
    case CONN_BODY:
        conn_refuse(c, 408, "request timed out");
        break;
    case CONN_LINGERING:
        conn_close(c);
        break;
    default:
        break;
    }
}

static int on_message_begin(http_parser *p) {
    http_conn *c = p->data;
    c->url_len = c->body_len = 0;
    c->expect_continue = c->has_origin = false;
    c->origin[0] = 0;
    c->authorization[0] = 0;
    c->header_bytes = 0;
    memset(&c->hdr, 0, sizeof c->hdr);
    conn_enter(c, CONN_HEADERS);
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

// Counts request-line and header bytes; false (the request is refused) past the limit.
static bool header_bytes_add(http_conn *c, size_t n) {
    c->header_bytes += n;
    if (c->header_bytes <= c->srv->max_header) return true;
    conn_refuse(c, 431, "request header fields too large");
    return false;
}

static int on_url(http_parser *p, const char *at, size_t n) {
    http_conn *c = p->data;
    if (!header_bytes_add(c, n)) return 0;
    char *u = realloc(c->url, c->url_len + n + 1);
    if (!u) return 1;
    c->url = u;
    memcpy(c->url + c->url_len, at, n);
    c->url_len += n;
    c->url[c->url_len] = 0;
    return 0;
}

static bool header_is(const header_acc *h, const char *name) {
    return h->name_len == strlen(name) && !strncasecmp(h->name, name, h->name_len);
}

// The header in c->hdr is complete.
static void header_end(http_conn *c) {
    header_acc *h = &c->hdr;
    if (!h->in_value) return;
    if (header_is(h, "expect"))
        c->expect_continue = h->value_len == 12 && !h->value_overflow &&
                             !strncasecmp(h->value, "100-continue", 12);
    if (header_is(h, "origin")) {
        c->has_origin = true;
        bool fits = !h->value_overflow && h->value_len < sizeof c->origin;
        snprintf(c->origin, sizeof c->origin, "%.*s", fits ? (int)h->value_len : 0, h->value);
    }
    if (header_is(h, "authorization"))
        snprintf(c->authorization, sizeof c->authorization, "%.*s",
                 h->value_overflow ? 0 : (int)h->value_len, h->value);
    memset(h, 0, sizeof *h);
}

static int on_header_field(http_parser *p, const char *at, size_t n) {
    http_conn *c = p->data;
    if (!header_bytes_add(c, n)) return 0;
    header_end(c);
    header_acc *h = &c->hdr;
    size_t k = n < sizeof h->name - h->name_len ? n : sizeof h->name - h->name_len;
    memcpy(h->name + h->name_len, at, k);
    h->name_len += k;
    if (k < n) h->name_len = sizeof h->name; // too long for a name that matters
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n) {
    http_conn *c = p->data;
    if (!header_bytes_add(c, n)) return 0;
    header_acc *h = &c->hdr;
    h->in_value = true;
    if (h->value_len + n >= sizeof h->value) {
        h->value_overflow = true;
        return 0;
    }
    memcpy(h->value + h->value_len, at, n);
    h->value_len += n;
    return 0;
}

static int on_headers_complete(http_parser *p) {
    http_conn *c = p->data;
    header_end(c);
    bool chunked = (p->flags & F_CHUNKED) != 0;
    if (!chunked && p->content_length != ULLONG_MAX && p->content_length > c->srv->max_body) {
        conn_refuse(c, 413, "request body too large");
        return 0;
    }
    // curl sends "Expect: 100-continue" with larger bodies and waits a second unless answered.
    if (c->expect_continue) conn_writef(c, "HTTP/1.1 100 Continue\r\n\r\n");
    conn_enter(c, CONN_BODY);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
    http_conn *c = p->data;
    if (c->state != CONN_BODY) return 0; // refused
    if (c->body_len + n > c->srv->max_body) {
        conn_refuse(c, 413, "request body too large");
        return 0;
    }
    conn_enter(c, CONN_BODY); // progress restarts the body timeout
    return buf_append(&c->body, &c->body_len, &c->body_cap, at, n) ? 0 : 1;
}

static int on_message_complete(http_parser *p) {
    http_conn *c = p->data;
    if (!conn_is_reading(c)) return 0; // refused
    conn_dispatch(c, 0, NULL);
    http_parser_pause(p, 1); // one request at a time: resume when it is answered
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

// Reading resumes once a request is answered (it pauses while MAX_PENDING bytes wait).
static void conn_read_resume(http_conn *c) {
    if (c->reading || c->peer_eof || c->sink || c->state == CONN_CLOSED) return;
    c->reading = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0;
    if (!c->reading) conn_close(c);
}

// Parses pending bytes while no request is being answered.
static void conn_process(http_conn *c) {
    while (conn_is_reading(c) && c->pending_len > 0) {
        size_t n = http_parser_execute(&c->parser, &c->srv->settings, c->pending, c->pending_len);
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (e == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
        } else if (e != HPE_OK) {
            conn_refuse(c, e == HPE_HEADER_OVERFLOW ? 431 : 400, http_errno_description(e));
            return;
        }
        if (c->state == CONN_CLOSED || c->refused) {
            c->pending_len = 0; // a refused request's bytes are not parsed
            return;
        }
        memmove(c->pending, c->pending + n, c->pending_len - n);
        c->pending_len -= n;
        if (e == HPE_OK && n == 0) break;
    }
    if (!conn_is_reading(c)) return;
    if (c->peer_eof) {
        // A half-closed client got every answer: the connection ends (a request cut short by
        // the client's EOF can never complete).
        if (c->state == CONN_IDLE && c->writes > 0)
            conn_enter(c, CONN_DRAINING);
        else
            conn_close(c);
        return;
    }
    conn_read_resume(c);
}

// ---- connections ----------------------------------------------------------------------------

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    buf->base = malloc(suggested);
    buf->len = buf->base ? suggested : 0;
}

// Plaintext received: parsed now, or held while a request is being answered.
static void conn_feed_plain(void *user, const char *data, size_t len) {
    http_conn *c = user;
    bool keep = len > 0 && c->state != CONN_CLOSED && c->state != CONN_DRAINING &&
                c->state != CONN_LINGERING;
    if (!keep) return;
    char *p = realloc(c->pending, c->pending_len + len);
    if (!p) {
        conn_close(c);
        return;
    }
    c->pending = p;
    memcpy(c->pending + c->pending_len, data, len);
    c->pending_len += len;
    if (conn_is_reading(c)) {
        conn_process(c);
    } else if (c->pending_len > MAX_PENDING && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp); // a client far ahead of its answers waits
        c->reading = false;
    }
}

// The client shut its write side: answers still go out (half-close).
static void conn_feed_eof(http_conn *c) {
    c->peer_eof = true;
    if (c->reading) uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
    if (c->state == CONN_LINGERING)
        conn_close(c);
    else if (conn_is_reading(c))
        conn_process(c);
}

// Bytes from the client: decrypted first on a TLS connection. A failed handshake (or a broken
// record) closes the connection with one log line and no answer.
static void conn_feed(http_conn *c, const char *data, size_t len) {
    if (!c->tls) {
        conn_feed_plain(c, data, len);
        return;
    }
    if (c->state == CONN_CLOSED || c->state == CONN_LINGERING) return;
    fl_error err = {0};
    tls_status st = tls_conn_read(c->tls, data, len, conn_feed_plain, c, &err);
    conn_tls_flush(c);
    if (st == TLS_FAILED) {
        log_info("http %s; connection closed", err.msg);
        conn_close(c);
    } else if (st == TLS_CLOSED && !c->peer_eof) {
        conn_feed_eof(c);
    }
}

void http_conn_feed(http_conn *c, const char *data, size_t len) {
    conn_feed(c, data, len);
}

void http_conn_feed_eof(http_conn *c) {
    if (c->state != CONN_CLOSED && !c->peer_eof) conn_feed_eof(c);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
    http_conn *c = st->data;
    if (nread == UV_EOF)
        http_conn_feed_eof(c);
    else if (nread < 0)
        conn_close(c);
    else
        conn_feed(c, buf->base, (size_t)nread);
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
    tls_conn_free(c->tls);
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
    if (!c->sink) uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->keepalive, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->deadline, on_conn_handle_closed);
}

// A connection in IDLE with its timers (and its socket unless detached); NULL: out of memory.
static http_conn *conn_create(http_server *s, bool detached) {
    http_conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    if (s->tls && !(c->tls = tls_conn_create(s->tls))) {
        free(c);
        return NULL;
    }
    c->srv = s;
    if (!detached) uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->keepalive);
    uv_timer_init(s->loop, &c->deadline);
    c->tcp.data = c->keepalive.data = c->deadline.data = c;
    c->handles = detached ? 2 : 3;
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    conn_enter(c, CONN_IDLE);
    return c;
}

http_conn *http_conn_create_detached(http_server *s,
                                     void (*sink)(void *user, const char *data, size_t len),
                                     void *user) {
    http_conn *c = conn_create(s, true);
    if (!c) return NULL;
    c->sink = sink;
    c->sink_user = user;
    return c;
}

void http_conn_close(http_conn *c) {
    conn_close(c);
}

static void on_connection(uv_stream_t *server, int status) {
    http_server *s = server->data;
    if (status < 0) return;
    http_conn *c = conn_create(s, false);
    if (!c) return;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    conn_read_resume(c);
    uv_tcp_nodelay(&c->tcp, 1);
}

// ---- server ---------------------------------------------------------------------------------

static void service_release(http_service svc) {
    if (svc.release) svc.release(svc.user);
}

// The server is freed once its own handles are closed and its last connection is gone.
static void origins_free(http_server *s) {
    for (int i = 0; i < s->n_origins; i++)
        free(s->origins[i]);
    free(s->origins);
}

// Splits the comma list into s->origins (spaces around entries ignored).
static bool origins_parse(http_server *s, const char *list) {
    for (const char *p = list; p && *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        while (n && (*p == ' ' || *p == '\t'))
            p++, n--;
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n == 1 && *p == '*') s->any_origin = true;
        if (n) {
            char **v = realloc(s->origins, sizeof *v * (size_t)(s->n_origins + 1));
            if (!v) return false;
            s->origins = v;
            if (!(v[s->n_origins] = strndup(p, n))) return false;
            s->n_origins++;
        }
        p = end ? end + 1 : p + n;
    }
    return true;
}

static void server_maybe_free(http_server *s) {
    if (!s->closing || s->handles > 0 || s->conns) return;
    origins_free(s);
    tls_ctx_free(s->tls);
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

fl_code http_server_create(uv_loop_t *loop, const char *host, int port,
                           const http_server_opts *opts, http_service svc, http_server **out,
                           fl_error *err) {
    http_server_opts o = opts ? *opts : (http_server_opts){0};
    http_server *s = calloc(1, sizeof *s);
    if (!s || !origins_parse(s, o.cors_allow_origin)) {
        if (s) origins_free(s);
        free(s);
        service_release(svc);
        return fl_error_set(err, FL_ENOMEM, "http: out of memory");
    }
    s->max_body = o.max_body ? o.max_body : DEFAULT_MAX_BODY;
    s->max_header = o.max_header ? o.max_header : DEFAULT_MAX_HEADER;
    s->header_timeout_ms = o.header_timeout_ms ? o.header_timeout_ms : DEFAULT_HEADER_TIMEOUT_MS;
    s->body_timeout_ms = o.body_timeout_ms ? o.body_timeout_ms : DEFAULT_BODY_TIMEOUT_MS;
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
    if (o.tls_cert && o.tls_cert[0]) {
        fl_code tc = tls_ctx_create(o.tls_cert, o.tls_key ? o.tls_key : "", &s->tls, err);
        if (tc != FL_OK) {
            pthread_mutex_destroy(&s->ready_mu);
            origins_free(s);
            free(s);
            service_release(svc);
            return tc;
        }
    }
    uv_async_init(loop, &s->async, on_async);
    s->async.data = s;
    s->handles = 1;
    if (!host) { // detached: connections come from http_conn_create_detached only
        s->accepting = false;
        *out = s;
        return FL_OK;
    }
    struct sockaddr_storage addr;
    int rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&addr);
    if (rc != 0) rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr);
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    s->handles = 2;
    if (rc != 0) {
        fl_error_set(err, FL_EINVAL, "http: bad --hostname %s", host);
        s->accepting = false;
        http_server_close(s);
        return FL_EINVAL;
    }
    rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&s->listener, 1024, on_connection);
    if (rc != 0) {
        fl_error_set(err, FL_EIO, "http: cannot listen on %s:%d: %s", host, port, uv_strerror(rc));
        s->accepting = false;
        http_server_close(s);
        return err ? err->code : FL_EIO;
    }
    log_info("http listening host=%s port=%d tls=%s", host, port, s->tls ? "on" : "off");
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
    } else if (s->listener.loop && !uv_is_closing((uv_handle_t *)&s->listener)) {
        uv_close((uv_handle_t *)&s->listener, on_server_handle_closed);
    }
    for (http_conn *c = s->conns; c; c = c->next)
        conn_close(c);
    uv_close((uv_handle_t *)&s->async, on_server_handle_closed);
}
