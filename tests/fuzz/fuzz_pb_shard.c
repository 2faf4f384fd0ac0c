// libFuzzer: the shard's side of the shard RPC contract (proto/shard.proto): a request decoded as
// the shard does (shard/pb_convert.c). The first byte picks the method (byte >> 1, so the seeds
// share their layout with fuzz_pb_shard_replies); the rest is the wire message.
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "shard/pb_convert.h"
#include "tests/fuzz/fuzz_shard.h"

static void shard_side(shard_method m, const ProtobufCMessage *msg) {
    fl_error err = {0};
    svc_batch b;
    uint32_t max_total = 0;
    switch (m) {
    case SHARD_PREFILL:
        if (pb_prefill_request_decode(msg, &b, &err) == FL_OK) svc_batch_clear(&b);
        break;
    case SHARD_WARMUP:
        if (pb_warmup_request_decode(msg, &b, &max_total, &err) == FL_OK) svc_batch_clear(&b);
        break;
    case SHARD_DECODE: {
        int n = 0;
        free(pb_decode_request_ids(msg, &n));
        break;
    }
    case SHARD_FILTER_BATCH: {
        uint64_t id;
        const uint64_t *keep;
        int n;
        pb_filter_request_decode(msg, &id, &keep, &n);
        break;
    }
    case SHARD_CLEAR_CACHE: {
        const uint64_t *ids;
        int n;
        pb_clear_request_decode(msg, &ids, &n);
        break;
    }
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_shard_message(data, size, false, shard_side);
}
