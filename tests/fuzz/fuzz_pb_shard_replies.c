// libFuzzer: the router's side of the shard RPC contract (proto/shard.proto): a shard's reply
// decoded as the router does (router/pb_shard.c). The first byte picks the method (byte >> 1);
// the rest is the wire message.
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "proto/shard_methods.h"
#include "router/pb_shard.h"
#include "tests/fuzz/fuzz_common.h"

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

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_quiet();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    shard_method m = (shard_method)((data[0] >> 1) % SHARD_N_METHODS);
    const shard_method_spec *spec = shard_method_get(m);
    ProtobufCMessage *msg = protobuf_c_message_unpack(spec->response, NULL, size - 1, data + 1);
    if (!msg) return 0;
    router_side(m, msg);
    protobuf_c_message_free_unpacked(msg, NULL);
    return 0;
}
