// What `falconlite client` and `falconlite bench-server` share: the router's public gRPC method
// paths (proto/generate.proto, proto/health.proto), connecting, Tokenize and Info calls, and
// turning the router's replies into the JSON `falconlite generate --json` prints.
#pragma once
#include <cjson/cJSON.h>

#include "common/status.h"
#include "proto/generate.pb-c.h"
#include "proto/rpc_client.h"

#define CLIENT_METHOD_GENERATE        "/falconlite.v1.TextGeneration/Generate"
#define CLIENT_METHOD_GENERATE_STREAM "/falconlite.v1.TextGeneration/GenerateStream"
#define CLIENT_METHOD_TOKENIZE        "/falconlite.v1.TextGeneration/Tokenize"
#define CLIENT_METHOD_INFO            "/falconlite.v1.TextGeneration/Info"
#define CLIENT_METHOD_HEALTH_CHECK    "/grpc.health.v1.Health/Check"

// Opens a channel to the router at addr ("host:port" or "unix:/path") and waits up to timeout_ms
// for it to connect, so that a wrong address fails with a clear message instead of a deadline.
rpc_channel *client_rpc_connect(const char *addr, int timeout_ms, fl_error *err);
// Tokenize RPC: the router's token ids for text. *out: free with protobuf_c_message_free_unpacked.
fl_code client_rpc_tokenize(rpc_channel *ch, const char *text, int timeout_ms,
                            Falconlite__V1__TokenizeResponse **out, fl_error *err);
// Info RPC. *out: free with protobuf_c_message_free_unpacked.
fl_code client_rpc_info(rpc_channel *ch, int timeout_ms, Falconlite__V1__InfoResponse **out,
                        fl_error *err);
// "length", "eos_token", "stop_sequence" (TGI's names, as `falconlite generate --json`).
const char *client_finish_name(Falconlite__V1__FinishReason r);
// The set scalar fields of msg (strings, integers, floats, bools) as one JSON object keyed by
// the proto field names; repeated and message fields are left out.
cJSON *client_json_scalars(const ProtobufCMessage *msg);
