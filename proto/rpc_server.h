// A gRPC server on one completion-queue thread: methods are registered by path
// ("/falconlite.shard.v1.Shard/Prefill") with the request type, and their handlers run on the
// server thread with the unpacked request. Replies (unary or server-streaming) may be sent from
// the handler or later from any thread; sends on one call are queued and issued in order.
#pragma once
#include <grpc/status.h>
#include <stdbool.h>
#include <protobuf-c/protobuf-c.h>

#include "common/status.h"

typedef struct rpc_server rpc_server;
typedef struct rpc_call rpc_call;

// Runs on the server thread. req stays valid until the call is finished; the handler (or whoever
// it hands the call to) must call rpc_call_finish or rpc_call_fail exactly once, also after a
// cancellation.
typedef void (*rpc_handler_fn)(rpc_call *call, const ProtobufCMessage *req, void *user);

rpc_server *rpc_server_create(fl_error *err);
// Registers a method before rpc_server_start. path: "/<package>.<Service>/<Method>".
fl_code rpc_server_add_method(rpc_server *s, const char *path,
                              const ProtobufCMessageDescriptor *req_desc, rpc_handler_fn fn,
                              void *user, fl_error *err);
// Transport security and per-call authorization of a public server (none by default).
typedef struct rpc_security {
    const char *tls_cert_file; // PEM certificate chain; with tls_key_file: TLS (else plaintext)
    const char *tls_key_file;  // PEM private key
    // Called on the server thread before a call's handler: false fails the call with
    // UNAUTHENTICATED. authorization is the call's "authorization" metadata (NULL: absent).
    bool (*authorize)(void *user, const char *method, const char *authorization);
    void *user;
} rpc_security;

// Sets security before rpc_server_listen (the PEM files are read here; sec is copied).
fl_code rpc_server_secure(rpc_server *s, const rpc_security *sec, fl_error *err);
// Binds an address before rpc_server_start: "unix:/path/sock" or "host:port" (TLS when
// rpc_server_secure gave a certificate, else insecure).
fl_code rpc_server_listen(rpc_server *s, const char *addr, fl_error *err);
// Starts serving on a new thread.
fl_code rpc_server_start(rpc_server *s, fl_error *err);
// Stops accepting calls, lets calls in flight finish for up to grace_ms, then cancels the rest
// and joins the server thread. Never call it from a handler.
void rpc_server_shutdown(rpc_server *s, int grace_ms);
// Shuts down (when still running) and frees.
void rpc_server_free(rpc_server *s);

// Streaming: queues one message of the response stream.
void rpc_call_send(rpc_call *c, const ProtobufCMessage *msg);
// Ends the call with status OK, after sending msg when it is not NULL (the unary response).
void rpc_call_finish(rpc_call *c, const ProtobufCMessage *msg);
// Ends the call with a non-OK status and message.
void rpc_call_fail(rpc_call *c, grpc_status_code code, const char *msg);
// 1 once the peer has cancelled or gone away (sends then go nowhere).
int rpc_call_cancelled(rpc_call *c);
// The method path of the call (for logs).
const char *rpc_call_method(const rpc_call *c);
