// The router's public gRPC API (proto/generate.proto, proto/health.proto) in protobuf-c terms:
// method table, request decoding and response building for router/grpc_api.c. Only this file
// and router/pb_shard.c see generated types.
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "common/status.h"
#include "common/tokenizer.h"
#include "router/infer.h"
#include "router/pb_built.h"
#include "router/request.h"
#include "router/server_info.h"

typedef enum pb_public_method {
    PB_API_GENERATE = 0,
    PB_API_GENERATE_STREAM,
    PB_API_TOKENIZE,
    PB_API_INFO,
    PB_API_HEALTH_CHECK,
    PB_API_HEALTH_WATCH,
    PB_API_COUNT,
} pb_public_method;

const char *pb_api_path(pb_public_method m);
const ProtobufCMessageDescriptor *pb_api_request_desc(pb_public_method m);

// GenerateRequest -> gen_request_in (copies).
fl_code pb_api_generate_request(const ProtobufCMessage *req, gen_request_in *out, fl_error *err);
// TokenizeRequest -> its text (borrowed from req).
const char *pb_api_tokenize_text(const ProtobufCMessage *req);
const char *pb_api_health_service(const ProtobufCMessage *req);

// details: include Details (details || decoder_input_details).
pb_built *pb_api_generate_response(const gen_outcome *o, bool details);
// One stream message for a TOKEN or END event; details: add StreamDetails to the END message.
pb_built *pb_api_stream_response(const gen_event *ev, bool details);
pb_built *pb_api_tokenize_response(const tokenizer *tok, const int32_t *ids, int n);
pb_built *pb_api_info_response(const server_info *info);
pb_built *pb_api_health_response(bool serving);
