// HTTP/1.1 transport on libuv + http-parser, with no knowledge of the routes: a listener, one
// connection per client reading one request at a time (keep-alive, pipelining, Expect:
// 100-continue, half-closed clients), the edge's limits (a body limit checked as soon as the
// headers or the chunks show it, a header size limit, header and body read timeouts; a refused
// request is answered once and its connection closed), CORS for configured origins, response
// writing (a whole body, or a chunked SSE stream with keep-alive comments), and the hand-off of
// work done on other threads (http_job, woken through one uv_async). Everything but
// http_job_notify / http_job_alive / http_job_unref runs on the loop thread.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "common/status.h"

typedef struct http_server http_server;
typedef struct http_conn http_conn;

// One complete request, valid while the handler runs; or one the transport refuses.
typedef struct http_request {
    int method;       // enum http_method (http_parser.h)
    const char *path; // without the query string
    const char *body; // NUL-terminated
    size_t body_len;
    // Not 0: the request is refused before it was read in full, with this status (400 malformed,
    // 408 too slow, 413 body too large, 431 headers too large) and reason. The handler answers
    // it (the connection then closes); method, path and body may be incomplete.
    int refusal;
    const char *refusal_reason;
    const char *authorization; // the Authorization header (NULL: absent or too long)
} http_request;

// The edge's limits and CORS policy.
typedef struct http_server_opts {
    size_t max_body;       // bytes (0: 8 MiB)
    size_t max_header;     // bytes of request line and headers (0: 64 KiB)
    int header_timeout_ms; // from the connection (or the previous response) to the end of the
                           // headers (0: 10 s); an idle keep-alive connection closes after it
    int body_timeout_ms;   // the longest pause while a body arrives (0: 30 s)
    // Comma-separated origins that get CORS headers (the Origin echoed, Vary: Origin); "*" allows
    // any origin. NULL or "": no CORS headers.
    const char *cors_allow_origin;
    // PEM certificate chain and private key: the listener speaks HTTPS (TLS 1.2+). NULL or "":
    // plaintext HTTP. A failed handshake closes the connection (one log line, no answer); the
    // handshake counts against the header timeout.
    const char *tls_cert, *tls_key;
} http_server_opts;

// Where the Origin of the request being answered stands with the CORS policy.
typedef enum http_cors {
    HTTP_CORS_NONE = 0, // no Origin header
    HTTP_CORS_ALLOWED,
    HTTP_CORS_DENIED,
} http_cors;

// The application behind the transport: handle must answer every request it gets, at once or
// later (http_conn_respond, or http_conn_sse_begin ... http_conn_sse_end). The server owns user:
// release (may be NULL) runs once when the server frees itself, or when creating it fails.
typedef struct http_service {
    void (*handle)(void *user, http_conn *c, const http_request *req);
    void (*release)(void *user);
    void *user;
} http_service;

// opts may be NULL (defaults); its strings are copied. host NULL: no listener, connections come
// from http_conn_create_detached only.
fl_code http_server_create(uv_loop_t *loop, const char *host, int port,
                           const http_server_opts *opts, http_service svc, http_server **out,
                           fl_error *err);
// Graceful shutdown, step 1: stop accepting connections (requests on open ones still arrive).
void http_server_stop_accepting(http_server *s);
bool http_server_accepting(const http_server *s);
// Requests answered through an http_job and not yet fully answered.
int http_server_busy(const http_server *s);
// Closes every connection and handle; the loop must run afterwards for the close callbacks,
// after which the server frees itself.
void http_server_close(http_server *s);

// ---- connections without a socket (fuzzing, tests) -------------------------------------------

// A connection fed by http_conn_feed instead of a socket; what it would send goes to
// sink(user, data, len) at once. It closes like any other (http_conn_close, a refusal, the
// server's close); the loop must run for its timers to close before the server is freed.
http_conn *http_conn_create_detached(http_server *s,
                                     void (*sink)(void *user, const char *data, size_t len),
                                     void *user);
// Bytes received from the client (the path every socket read takes: TLS, framing, limits,
// dispatch to the service). Ignored once c is closed.
void http_conn_feed(http_conn *c, const char *data, size_t len);
// The client shut its write side.
void http_conn_feed_eof(http_conn *c);
void http_conn_close(http_conn *c);

// ---- answering the current request of c ------------------------------------------------------

// The response ends the connection (`connection: close`); call before the response starts.
void http_conn_close_after_response(http_conn *c);

http_cors http_conn_cors(const http_conn *c);

// A whole response. content_type may be NULL (no header); extra_headers ("name: value\r\n"...)
// may be NULL. A request from an allowed origin gets `access-control-allow-origin`.
void http_conn_respond(http_conn *c, int status, const char *content_type, const char *body,
                       size_t len, const char *extra_headers);

// A 200 text/event-stream response, chunked; a `:` comment goes out after 15 s without events.
void http_conn_sse_begin(http_conn *c, const char *extra_headers);
// Sends len bytes of events as they are (e.g. "data: {...}\n\n").
void http_conn_sse_raw(http_conn *c, const char *data, size_t len);
// Sends `{prefix}{json}\n\n` and frees json (NULL: nothing is sent).
void http_conn_sse_data(http_conn *c, const char *prefix, char *json);
// Sends `data:{json}\n\n` (TGI's framing) and frees json (NULL: nothing is sent).
void http_conn_sse_event(http_conn *c, char *json);
void http_conn_sse_end(http_conn *c);

// Runs work(user) on libuv's thread pool, then after(user, c) on the loop thread, c being NULL
// when the connection closed meanwhile. Returns false when the work could not be queued.
bool http_conn_queue_work(http_conn *c, void (*work)(void *user),
                          void (*after)(void *user, http_conn *c), void *user);

// ---- answering from other threads ------------------------------------------------------------

// A request answered with data produced on other threads. The producer holds references and calls
// http_job_notify when there is something new; progress(payload, c) then runs on the loop thread
// while the request is still being answered. Refcounted; free(payload) runs with the last
// reference.
typedef struct http_job http_job;

typedef struct http_job_ops {
    void (*progress)(void *payload, http_conn *c);
    void (*free)(void *payload);
} http_job_ops;

// Attaches a job to c's current request (counted in http_server_busy until the response ends)
// and returns it holding one reference, the connection's. NULL: out of memory or the connection
// closed (payload is then not taken).
http_job *http_conn_job_start(http_conn *c, const http_job_ops *ops, void *payload);
void http_job_ref(http_job *j);
void http_job_unref(http_job *j);
void *http_job_payload(http_job *j);
// Any thread: wakes the loop thread to run progress.
void http_job_notify(http_job *j);
// Any thread: false once the client went away.
bool http_job_alive(const http_job *j);
