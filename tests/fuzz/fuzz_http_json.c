// libFuzzer: the JSON bodies of the HTTP routes (POST /generate, /generate_stream, / and
// /invocations: api_json_parse_request with and without the stream flag) and, when a body
// parses, the whole validation pipeline (validate_request: parameters, tokenization, truncation,
// lengths). Any outcome but a crash, a sanitizer report or a leak is fine. The HTTP framing itself
// (router/http_conn.c) has no entry point that takes a buffer yet; its parser is http-parser's.
// Hook: when the OpenAI-compatible routes (router/openai*.c) land, call their body parser from
// fuzz_one_body below.
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "router/api_json.h"
#include "router/validate.h"
#include "tests/fuzz/fuzz_common.h"

static void fuzz_one_body(const char *body, size_t len, bool with_stream) {
    static const validate_limits lim = {.max_best_of = 2,
                                        .max_stop_sequences = 4,
                                        .max_input_length = 1024,
                                        .max_total_tokens = 2048};
    gen_request_in in;
    gen_request_in_init(&in);
    bool stream = false;
    char msg[256];
    if (api_json_parse_request(body, len, &in, with_stream ? &stream : NULL, msg, sizeof msg) ==
        JSON_PARSE_OK) {
        gen_request *r = NULL;
        fl_error err = {0};
        if (validate_request(&lim, fuzz_tokenizer(), &in, &r, &err) == FL_OK) gen_request_free(r);
    }
    gen_request_in_clear(&in);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_tokenizer();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    // The transport hands the routes a NUL-terminated body.
    char *body = malloc(size + 1);
    if (!body) return 0;
    memcpy(body, data, size);
    body[size] = 0;
    fuzz_one_body(body, size, true);
    fuzz_one_body(body, size, false);
    free(body);
    return 0;
}
