// A small blocking HTTP/1.1 client for `falconlite eval --server`: one connection per request
// (Connection: close) to the host:port of an http://host:port URL, a JSON body posted with a
// Content-Length, the response body read by Content-Length, chunked transfer coding or until the
// server closes. Every socket step has the client's timeout; failures come back as fl_error
// messages naming the URL and the step ("connect", "read", "malformed status line", ...).
#pragma once
#include <stddef.h>

#include "common/status.h"

typedef struct http_client http_client;

typedef struct http_response {
    int status;  // e.g. 200
    char *body;  // malloc'd, NUL-terminated (body_len bytes before the NUL)
    size_t body_len;
} http_response;

// url: "http://host[:port][/]" (port 80 when absent); https is refused with a clear message.
fl_code http_client_create(const char *url, int timeout_ms, http_client **out, fl_error *err);
void http_client_free(http_client *c);
// The URL as given (for messages and reports).
const char *http_client_url(const http_client *c);

// Sends METHOD path (with body and content type when body is not NULL) and reads the whole
// response into *resp (free with http_response_clear). Any status is a success here: callers
// judge resp->status.
fl_code http_client_request(http_client *c, const char *method, const char *path,
                            const char *content_type, const char *body, size_t body_len,
                            http_response *resp, fl_error *err);
void http_response_clear(http_response *r);

// Decodes a chunked transfer-coded body in place (src[0..len) -> the payload at src, *out_len
// bytes). FL_EFORMAT on a malformed or truncated chunk.
fl_code http_chunked_decode(char *src, size_t len, size_t *out_len, fl_error *err);
