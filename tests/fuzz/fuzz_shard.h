// The entry point both shard-contract targets share: the first byte picks the method (byte >> 1,
// so both corpora share one layout); the rest is the wire message of its request or its response,
// decoded and handed to check (the shard's or the router's conversion).
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/shard_methods.h"
#include "tests/fuzz/fuzz_common.h"

static int fuzz_shard_message(const uint8_t *data, size_t size, bool response,
                              void (*check)(shard_method m, const ProtobufCMessage *msg)) {
    if (size < 1) return 0;
    shard_method m = (shard_method)((data[0] >> 1) % SHARD_N_METHODS);
    const shard_method_spec *spec = shard_method_get(m);
    ProtobufCMessage *msg = protobuf_c_message_unpack(response ? spec->response : spec->request,
                                                      NULL, size - 1, data + 1);
    if (!msg) return 0;
    check(m, msg);
    protobuf_c_message_free_unpacked(msg, NULL);
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_quiet();
    return 0;
}
