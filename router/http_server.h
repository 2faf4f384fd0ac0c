// TGI-0.9.2-compatible HTTP/1.1 API on libuv + http-parser: POST /generate, /generate_stream
// (SSE `data:{json}\n\n`, keep-alive comments), / and /invocations (compat, "stream" flag),
// GET / /health /ping /info /metrics. Runs on the loop thread; generation events arrive from the
// batcher thread through a locked per-request queue and one uv_async.
#pragma once
#include <uv.h>

#include "common/status.h"
#include "router/health.h"
#include "router/infer.h"
#include "router/server_info.h"

typedef struct http_server http_server;

typedef struct http_server_deps {
    infer *inf;
    health *health; // NULL: always healthy
    const server_info *info;
} http_server_deps;

fl_code http_server_create(uv_loop_t *loop, const char *host, int port,
                           const http_server_deps *deps, http_server **out, fl_error *err);
// Graceful shutdown, step 1: stop accepting connections; later requests get 503 and requests in
// flight run to completion.
void http_server_stop_accepting(http_server *s);
// Requests accepted and not yet fully answered.
int http_server_busy(const http_server *s);
// Closes every connection and handle; the loop must run afterwards for the close callbacks,
// after which the server frees itself.
void http_server_close(http_server *s);
