// libFuzzer: the HTTP/1.1 request framing of router/http_conn.c through its buffer-driven entry
// point (http_conn_feed, the path every socket read takes): pipelined requests, chunked and
// content-length bodies, Expect: 100-continue, oversized headers and bodies (small limits here so
// that 431 and 413 are reached), half-close, garbage. The input is fed in pieces whose sizes come
// from its first byte, to a detached connection of a server without a listener; a stub service
// answers each request at once (a whole response, or an SSE stream on /sse, `connection: close`
// on /close). Any outcome but a crash, a sanitizer report, a leak or a response that does not
// start with a status line is fine.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "router/http_conn.h"
#include "tests/fuzz/fuzz_common.h"

typedef struct sink {
    size_t bytes;
} sink;

static void sink_write(void *user, const char *data, size_t len) {
    sink *s = user;
    // The first bytes out of a connection are a status line (or 100 Continue).
    if (s->bytes == 0 && (len < 9 || memcmp(data, "HTTP/1.1 ", 9) != 0)) abort();
    s->bytes += len;
}

static void stub_handle(void *user, http_conn *c, const http_request *req) {
    if (req->refusal) {
        http_conn_respond(c, req->refusal, "text/plain", req->refusal_reason,
                          strlen(req->refusal_reason), NULL);
        return;
    }
    if (!strcmp(req->path, "/close")) http_conn_close_after_response(c);
    if (!strcmp(req->path, "/sse")) {
        http_conn_sse_begin(c, NULL);
        http_conn_sse_event(c, strdup("{\"token\":1}"));
        http_conn_sse_raw(c, req->body, req->body_len);
        http_conn_sse_end(c);
        return;
    }
    http_conn_respond(c, 200, "application/json", req->body, req->body_len, NULL);
}

static uv_loop_t *loop;
static http_server *srv;

static void setup(void) {
    fuzz_quiet();
    loop = calloc(1, sizeof *loop);
    if (!loop || uv_loop_init(loop) != 0) abort();
    http_server_opts o = {.max_body = 2048, .max_header = 1024, .cors_allow_origin = "http://a"};
    fl_error err = {0};
    if (http_server_create(loop, NULL, 0, &o, (http_service){stub_handle, NULL, NULL}, &srv, &err) !=
        FL_OK)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!srv) setup();
    if (size == 0) return 0;
    size_t piece = (size_t)(data[0] & 0x3f) + 1; // 1..64 bytes per read
    bool eof = data[0] & 0x40;                    // the client half-closes after its bytes
    data++, size--;
    sink out = {0};
    http_conn *c = http_conn_create_detached(srv, sink_write, &out);
    if (!c) return 0;
    for (size_t off = 0; off < size; off += piece)
        http_conn_feed(c, (const char *)data + off, size - off < piece ? size - off : piece);
    if (eof) http_conn_feed_eof(c);
    http_conn_close(c);
    uv_run(loop, UV_RUN_NOWAIT); // the connection's timers close and it is freed
    return 0;
}
