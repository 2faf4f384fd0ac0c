// libFuzzer: the public gRPC API's requests (proto/generate.proto, proto/health.proto). The first
// byte picks the method; the rest is the wire message, decoded as rpc_server does
// (protobuf_c_message_unpack with the method's request type), then converted as router/grpc_api.c
// does (pb_api_*) and, for Generate and GenerateStream, validated (validate_request).
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "router/pb_api.h"
#include "router/validate.h"
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_tokenizer();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    pb_public_method m = (pb_public_method)(data[0] % PB_API_COUNT);
    ProtobufCMessage *req =
        protobuf_c_message_unpack(pb_api_request_desc(m), NULL, size - 1, data + 1);
    if (!req) return 0;
    static const validate_limits lim = {.max_best_of = 2,
                                        .max_stop_sequences = 4,
                                        .max_input_length = 1024,
                                        .max_total_tokens = 2048};
    switch (m) {
    case PB_API_GENERATE:
    case PB_API_GENERATE_STREAM: {
        gen_request_in in;
        gen_request_in_init(&in);
        fl_error err = {0};
        if (pb_api_generate_request(req, &in, &err) == FL_OK) {
            gen_request *r = NULL;
            if (validate_request(&lim, fuzz_tokenizer(), &in, &r, &err) == FL_OK)
                gen_request_free(r);
        }
        gen_request_in_clear(&in);
        break;
    }
    case PB_API_TOKENIZE: {
        const char *text = pb_api_tokenize_text(req);
        int32_t *ids = NULL;
        int n = 0;
        if (text &&
            tokenizer_encode(fuzz_tokenizer(), text, strlen(text), &ids, &n, NULL) == FL_OK) {
            pb_built *b = pb_api_tokenize_response(fuzz_tokenizer(), ids, n);
            pb_built_free(b);
        }
        free(ids);
        break;
    }
    case PB_API_HEALTH_CHECK:
    case PB_API_HEALTH_WATCH:
        (void)pb_api_health_service(req);
        break;
    default:
        break;
    }
    protobuf_c_message_free_unpacked(req, NULL);
    return 0;
}
