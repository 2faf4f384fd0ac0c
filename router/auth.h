// Optional bearer-token authentication of the public APIs (--api-key): one check that the HTTP
// routes and the gRPC server both call. The health endpoints stay open so probes and load
// balancers work without the key (SECURITY.md).
#pragma once
#include <stdbool.h>
#include <stddef.h>

typedef struct auth auth;

// key: the token clients must send ("" or NULL: everything is allowed). Returns NULL when out
// of memory.
auth *auth_create(const char *key);
void auth_free(auth *a);
bool auth_enabled(const auth *a);

// True when a request for path may proceed: no key configured, path is a health endpoint
// (/health, /ping, /grpc.health.v1.Health/...), or authorization is "Bearer <key>" (the scheme
// case-insensitive, the key compared in constant time). authorization may be NULL (absent);
// a is NULL-safe (allow).
bool auth_request_allowed(const auth *a, const char *path, const char *authorization);

// The same test in the shape of proto/rpc_server.h's rpc_security.authorize (user is the auth).
bool auth_rpc_authorize(void *user, const char *method, const char *authorization);
