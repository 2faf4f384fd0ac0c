// Blocking unary gRPC calls over insecure channels (unix sockets in practice), one at a time or
// fanned out to several servers at once (the router's call to every shard rank).
#pragma once
#include <grpc/status.h>
#include <protobuf-c/protobuf-c.h>

#include "common/status.h"

typedef struct rpc_channel rpc_channel;

// target: "unix:/path/sock" or "host:port". Connecting is lazy (see rpc_channel_wait_ready).
rpc_channel *rpc_channel_create(const char *target, fl_error *err);
void rpc_channel_free(rpc_channel *ch);
const char *rpc_channel_target(const rpc_channel *ch);
// Connects and waits until the channel is ready; FL_EIO after timeout_ms.
fl_code rpc_channel_wait_ready(rpc_channel *ch, int timeout_ms, fl_error *err);

// The outcome of one unary call.
typedef struct rpc_result {
    grpc_status_code status; // GRPC_STATUS_OK on success
    ProtobufCMessage *resp;  // unpacked response when OK (free with rpc_result_clear), else NULL
    char msg[512];           // status details when not OK
} rpc_result;

void rpc_result_clear(rpc_result *r);

// Calls method on ch with req and waits (timeout_ms <= 0: no deadline). Returns FL_OK when the
// call returned OK with a decodable response of type resp_desc; otherwise FL_EBACKEND with an
// error "<target> <method>: <STATUS>: <details>" (res->status tells which status).
fl_code rpc_unary(rpc_channel *ch, const char *method, const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *resp_desc, int timeout_ms, rpc_result *res,
                  fl_error *err);
// The same call on n channels concurrently; waits for all. res[i] holds channel i's outcome.
// Returns FL_OK when all succeeded, else the error of the lowest failing index.
fl_code rpc_unary_all(rpc_channel **chs, int n, const char *method, const ProtobufCMessage *req,
                      const ProtobufCMessageDescriptor *resp_desc, int timeout_ms, rpc_result *res,
                      fl_error *err);

// The same fan-out, reusable and in two halves, so a caller that repeats one call (the router's
// Decode, every token) allocates nothing per call and can work while the servers do. start sends
// the call to every channel chs[i] (read at each start) and returns at once; finish waits for all
// of them and fills res[n] as rpc_unary_all does. Each start is followed by exactly one finish
// before the next start; one thread at a time. chs and method must outlive the fan-out / finish.
typedef struct rpc_fanout rpc_fanout;
rpc_fanout *rpc_fanout_create(rpc_channel **chs, int n, fl_error *err);
void rpc_fanout_free(rpc_fanout *f);
void rpc_fanout_start(rpc_fanout *f, const char *method, const ProtobufCMessage *req,
                      int timeout_ms);
fl_code rpc_fanout_finish(rpc_fanout *f, const ProtobufCMessageDescriptor *resp_desc,
                          rpc_result *res, fl_error *err);

// A server-streaming call, read one message at a time by one thread (threads may share the
// channel, each with its own stream).
typedef struct rpc_stream rpc_stream;

// Starts method on ch with req, whose responses are of type resp_desc; the deadline covers the
// whole stream (timeout_ms <= 0: none). Returns NULL and fills err when the call cannot start.
rpc_stream *rpc_stream_start(rpc_channel *ch, const char *method, const ProtobufCMessage *req,
                             const ProtobufCMessageDescriptor *resp_desc, int timeout_ms,
                             fl_error *err);
// Waits for the next message: FL_OK with *msg (free it with protobuf_c_message_free_unpacked), or
// FL_OK with *msg = NULL once the stream ended with OK. When it ended otherwise (or a message did
// not decode): FL_EBACKEND with "<target> <method>: <STATUS>: <details>".
fl_code rpc_stream_read(rpc_stream *s, ProtobufCMessage **msg, fl_error *err);
// The final status (GRPC_STATUS_OK until the stream has ended).
grpc_status_code rpc_stream_status(const rpc_stream *s);
// Cancels the call if it has not ended, and frees it.
void rpc_stream_free(rpc_stream *s);
