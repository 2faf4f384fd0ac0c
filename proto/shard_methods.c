#include "proto/shard_methods.h"

#include "proto/shard.pb-c.h"

// One row per rpc of service Shard: the path and message descriptors follow from its name.
#define SHARD_METHOD(Name, snake)                                                                  \
    {                                                                                              \
        "/falconlite.shard.v1.Shard/" #Name,                                                       \
            &falconlite__shard__v1__##snake##_request__descriptor,                                 \
            &falconlite__shard__v1__##snake##_response__descriptor                                 \
    }

static const shard_method_spec methods[SHARD_N_METHODS] = {
    [SHARD_INFO] = SHARD_METHOD(Info, info),
    [SHARD_HEALTH] = SHARD_METHOD(Health, health),
    [SHARD_SERVICE_DISCOVERY] = SHARD_METHOD(ServiceDiscovery, service_discovery),
    [SHARD_CLEAR_CACHE] = SHARD_METHOD(ClearCache, clear_cache),
    [SHARD_FILTER_BATCH] = SHARD_METHOD(FilterBatch, filter_batch),
    [SHARD_WARMUP] = SHARD_METHOD(Warmup, warmup),
    [SHARD_PREFILL] = SHARD_METHOD(Prefill, prefill),
    [SHARD_DECODE] = SHARD_METHOD(Decode, decode),
};

const shard_method_spec *shard_method_get(shard_method m) {
    return &methods[m];
}
