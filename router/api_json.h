// TGI 0.9.2's HTTP JSON schemas (router/src/lib.rs): request parsing with serde-like type checks,
// and the bodies of /generate, /generate_stream events, errors and /info.
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "common/status.h"
#include "common/tokenizer.h"
#include "router/infer.h"
#include "router/request.h"
#include "router/server_info.h"

typedef enum json_parse_status {
    JSON_PARSE_OK = 0,
    JSON_PARSE_SYNTAX, // not JSON: HTTP 400
    JSON_PARSE_TYPE,   // JSON of the wrong shape: HTTP 422
} json_parse_status;

// Parses {"inputs": str, "parameters": {...}, "stream": bool}; *stream may be NULL (then the
// field is ignored, as on /generate). msg gets axum-style text on failure.
json_parse_status api_json_parse_request(const char *body, size_t len, gen_request_in *out,
                                         bool *stream, char *msg, size_t msg_cap);

// Parses /tokenize's {"inputs": str, "add_special_tokens": bool?}: *text (malloc'd, the caller
// frees it) and *text_len. false: msg is set, and *text is NULL when the body is not JSON (HTTP
// 400) or allocated all the same when it is JSON of the wrong shape (HTTP 422).
bool api_json_parse_tokenize(const char *body, size_t len, const char **text, size_t *text_len,
                             char *msg, size_t msg_cap);

// Bodies (malloc'd, NUL-terminated).
char *api_json_error(const char *error, const char *error_type);
// GenerateResponse; details when details || decoder_input_details.
char *api_json_generate(const gen_outcome *o, bool details);
// One SSE payload (without "data:"), for TOKEN / END events; details adds StreamDetails at END.
char *api_json_stream_event(const gen_event *ev, bool details);
char *api_json_info(const server_info *info);
// /tokenize's answer: [{"id", "text", "start", "stop"}], byte offsets into text.
char *api_json_tokens(const tokenizer *tok, const char *text, size_t len, const int32_t *ids,
                      int n);
