// The public gRPC API (proto/generate.proto falconlite.v1.TextGeneration: Generate,
// GenerateStream, Tokenize, Info) and grpc.health.v1.Health, served by fl_rpc's server thread.
// Stream tokens go from the batcher thread straight to the call (rpc_call_send), no loop hop.
#pragma once
#include "common/status.h"
#include "proto/rpc_server.h"
#include "router/health.h"
#include "router/infer.h"
#include "router/server_info.h"

typedef struct grpc_api grpc_api;

typedef struct grpc_api_deps {
    infer *inf;
    health *health; // NULL: always serving
    const server_info *info;
    const rpc_security *security; // NULL: plaintext, no authentication
} grpc_api_deps;

// addr: "host:port" (e.g. "0.0.0.0:50051") or "unix:/path".
fl_code grpc_api_start(const char *addr, const grpc_api_deps *deps, grpc_api **out, fl_error *err);
// Stops accepting calls, lets calls in flight run for up to grace_ms, then cancels them.
void grpc_api_stop(grpc_api *api, int grace_ms);
void grpc_api_free(grpc_api *api);
