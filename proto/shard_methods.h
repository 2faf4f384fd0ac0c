// The router <-> shard contract (proto/shard.proto, service falconlite.shard.v1.Shard) as one
// table: each method's path and request / response message types. The shard registers its
// handlers from it and the router's shard_client calls through it, so both sides agree by
// construction.
#pragma once
#include <protobuf-c/protobuf-c.h>

typedef enum shard_method {
    SHARD_INFO = 0,
    SHARD_HEALTH,
    SHARD_SERVICE_DISCOVERY,
    SHARD_CLEAR_CACHE,
    SHARD_FILTER_BATCH,
    SHARD_WARMUP,
    SHARD_PREFILL,
    SHARD_DECODE,
    SHARD_N_METHODS,
} shard_method;

typedef struct shard_method_spec {
    const char *path;                           // "/falconlite.shard.v1.Shard/<Method>"
    const ProtobufCMessageDescriptor *request;  // <Method>Request
    const ProtobufCMessageDescriptor *response; // <Method>Response
} shard_method_spec;

// m < SHARD_N_METHODS.
const shard_method_spec *shard_method_get(shard_method m);
