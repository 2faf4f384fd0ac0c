// libFuzzer: the router's side of the shard RPC contract (proto/shard.proto): a shard's reply
// decoded as the router does (router/pb_shard.c). The first byte picks the method (byte >> 1);
// the rest is the wire message.
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "router/pb_shard.h"
#include "tests/fuzz/fuzz_shard.h"

static void router_side(shard_method m, const ProtobufCMessage *msg) {
    fl_error err = {0};
    switch (m) {
    case SHARD_PREFILL:
    case SHARD_DECODE: {
        shard_step step = {0};
        if (pb_shard_step_from(msg, &step, &err) == FL_OK) shard_step_clear(&step);
        break;
    }
    case SHARD_FILTER_BATCH: {
        cached_batch cb = {0};
        if (pb_shard_filtered_from(msg, &cb, &err) == FL_OK) cached_batch_clear(&cb);
        break;
    }
    case SHARD_INFO: {
        shard_info info;
        pb_shard_info_from(msg, &info);
        break;
    }
    case SHARD_WARMUP:
        (void)pb_shard_warmup_capacity(msg);
        break;
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_shard_message(data, size, true, router_side);
}
