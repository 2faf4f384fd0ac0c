// TGI 0.9.2's HTTP API on the http_conn transport: POST /generate, /generate_stream (SSE
// `data:{json}\n\n`), / and /invocations (compat, "stream" flag), GET / /health /ping /info
// /metrics, OPTIONS (CORS), and TGI's error mapping (status + {"error","error_type"}). Routes are
// a table of (method, path, handler); generation events arrive from the batcher thread through
// http_job.
#pragma once
#include <uv.h>

#include "common/status.h"
#include "router/config.h"
#include "router/auth.h"
#include "router/health.h"
#include "router/http_conn.h"
#include "router/infer.h"
#include "router/server_info.h"

typedef struct http_routes_deps {
    infer *inf;
    health *health; // NULL: always healthy
    const server_info *info;
    const router_config *cfg; // NULL: defaults (the HTTP edge's limits, CORS, the chat template)
    const auth *auth;         // NULL: no authentication (router/auth.h)
    shard_client *shards;     // NULL: /metrics does not poll the shards' KV pool
} http_routes_deps;

// Serves the routes on host:port. The deps are borrowed and must outlive the server; stop and
// close it with http_server_stop_accepting / http_server_close (the routes go with it).
fl_code http_routes_listen(uv_loop_t *loop, const char *host, int port,
                           const http_routes_deps *deps, http_server **out, fl_error *err);
