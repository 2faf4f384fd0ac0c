// libFuzzer: the JSON bodies of the HTTP routes (POST /generate, /generate_stream, / and
// /invocations: api_json_parse_request with and without the stream flag) and, when a body
// parses, the whole validation pipeline (validate_request: parameters, tokenization, truncation,
// lengths). Any outcome but a crash, a sanitizer report or a leak is fine. The HTTP framing itself
// (router/http_conn.c) is fuzz_http_framing's.
// The OpenAI routes' bodies (/v1/chat/completions, /v1/completions: openai_parse with the ChatML
// template, then each choice's request through the same validation) are fuzzed from the same
// input.
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "router/api_json.h"
#include "router/openai_api.h"
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

static const chat_template *chatml(void) {
    static chat_template *t;
    fl_error err = {0};
    if (!t && chat_template_create("chatml", &t, &err) != FL_OK) abort();
    return t;
}

static void fuzz_one_openai(const char *body, size_t len, openai_kind kind) {
    static const validate_limits lim = {.max_best_of = 2,
                                        .max_stop_sequences = 4,
                                        .max_input_length = 1024,
                                        .max_total_tokens = 2048};
    static const openai_limits olim = {.max_n = 2, .default_max_tokens = 1024};
    openai_request req;
    openai_error oerr;
    memset(&req, 0, sizeof req);
    if (!openai_parse(kind, body, len, &olim, kind == OPENAI_CHAT ? chatml() : NULL, &req, &oerr))
        return;
    for (int i = 0; i < req.n; i++) {
        gen_request_in in;
        gen_request_in_init(&in);
        if (openai_request_choice(&req, i, &in)) {
            gen_request *r = NULL;
            fl_error err = {0};
            if (validate_request(&lim, fuzz_tokenizer(), &in, &r, &err) == FL_OK)
                gen_request_free(r);
        }
        gen_request_in_clear(&in);
    }
    openai_request_clear(&req);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_tokenizer();
    chatml();
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
    fuzz_one_openai(body, size, OPENAI_CHAT);
    fuzz_one_openai(body, size, OPENAI_COMPLETION);
    free(body);
    return 0;
}
