// Conversions between the router's C structs and protobuf-c messages: the only router file that
// sees generated types (proto/shard.pb-c.h, proto/generate.pb-c.h, proto/health.pb-c.h). Other
// files handle messages as opaque ProtobufCMessage pointers.
#pragma once
#include <protobuf-c/protobuf-c.h>

#include "common/status.h"
#include "router/infer.h"
#include "router/request.h"
#include "router/server_info.h"
#include "router/shard_api.h"

// A message built by the router (not unpacked): everything it points to is freed at once.
typedef struct pb_built pb_built;
const ProtobufCMessage *pb_built_msg(const pb_built *b);
void pb_built_free(pb_built *b);

// ---- router -> shard (proto/shard.proto) ----

typedef enum pb_shard_method {
    PB_SHARD_INFO = 0,
    PB_SHARD_HEALTH,
    PB_SHARD_SERVICE_DISCOVERY,
    PB_SHARD_CLEAR_CACHE,
    PB_SHARD_FILTER_BATCH,
    PB_SHARD_WARMUP,
    PB_SHARD_PREFILL,
    PB_SHARD_DECODE,
} pb_shard_method;

// "/falconlite.shard.v1.Shard/<Method>" and the response type.
const char *pb_shard_path(pb_shard_method m);
const ProtobufCMessageDescriptor *pb_shard_response_desc(pb_shard_method m);

pb_built *pb_shard_empty_request(pb_shard_method m);          // Info, Health, ServiceDiscovery
pb_built *pb_shard_clear_request(const uint64_t *ids, int n); // n == 0: every batch
pb_built *pb_shard_filter_request(uint64_t batch_id, const uint64_t *keep, int n);
pb_built *pb_shard_prefill_request(const shard_batch *b);
pb_built *pb_shard_warmup_request(const shard_batch *b, uint32_t max_total_tokens);
pb_built *pb_shard_decode_request(const cached_batch *batches, int n);

// Prefill / Decode responses -> shard_step (copies; resp stays owned by the caller).
fl_code pb_shard_step_from(const ProtobufCMessage *resp, shard_step *out, fl_error *err);
fl_code pb_shard_filtered_from(const ProtobufCMessage *resp, cached_batch *out, fl_error *err);
uint32_t pb_shard_warmup_capacity(const ProtobufCMessage *resp);

typedef struct shard_info {
    char dtype[32];       // "float32" / "float16"
    char device_type[16]; // "cpu" / "cuda"
    char model_type[32];
    uint32_t vocab_size, eos_token_id, rank, world_size, block_size, max_total_tokens;
} shard_info;
void pb_shard_info_from(const ProtobufCMessage *resp, shard_info *out);

// ---- public API (proto/generate.proto, proto/health.proto) ----

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
