#include "router/grpc_api.h"

#include <stdlib.h>
#include <string.h>

#include "proto/rpc_server.h"
#include "router/pb_api.h"

struct grpc_api {
    rpc_server *srv;
    grpc_api_deps deps;
};

static grpc_status_code status_for(gen_error_kind k) {
    switch (k) {
    case GEN_ERR_VALIDATION:
        return GRPC_STATUS_INVALID_ARGUMENT;
    case GEN_ERR_OVERLOADED:
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case GEN_ERR_GENERATION:
        return GRPC_STATUS_INTERNAL;
    default:
        return GRPC_STATUS_UNAVAILABLE;
    }
}

static void finish_built(rpc_call *call, pb_built *b) {
    if (b)
        rpc_call_finish(call, pb_built_msg(b));
    else
        rpc_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    pb_built_free(b);
}

// ---- Generate ----

typedef struct unary_ctx {
    rpc_call *call;
    bool details;
} unary_ctx;

static void unary_done(void *user, gen_outcome *o) {
    unary_ctx *u = user;
    if (o->failed)
        rpc_call_fail(u->call, status_for(o->error_kind),
                      gen_error_public(o->error_kind, o->error));
    else
        finish_built(u->call, pb_api_generate_response(o, u->details));
    gen_outcome_clear(o);
    free(u);
}

static bool unary_alive(void *user) {
    return !rpc_call_cancelled(((unary_ctx *)user)->call);
}

static void on_generate(rpc_call *call, const ProtobufCMessage *req, void *user) {
    grpc_api *api = user;
    gen_request_in in;
    fl_error err = {0};
    unary_ctx *u = calloc(1, sizeof *u);
    if (!u || pb_api_generate_request(req, &in, &err) != FL_OK) {
        free(u);
        rpc_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    u->call = call;
    u->details = in.params.details || in.params.decoder_input_details;
    infer_generate(api->deps.inf, &in, (infer_waiter){unary_done, unary_alive, u});
    gen_request_in_clear(&in);
}

// ---- GenerateStream ----

typedef struct stream_ctx {
    rpc_call *call;
    bool details;
    bool ended; // the call got its final status
} stream_ctx;

static bool stream_send(void *user, gen_event *ev) {
    stream_ctx *s = user;
    if (ev->kind == GEN_EVENT_ERROR) {
        rpc_call_fail(s->call, status_for(ev->error_kind),
                      gen_error_public(ev->error_kind, ev->error));
        s->ended = true;
    } else if (ev->kind == GEN_EVENT_TOKEN || ev->kind == GEN_EVENT_END) {
        pb_built *b = pb_api_stream_response(ev, s->details);
        if (b) rpc_call_send(s->call, pb_built_msg(b));
        pb_built_free(b);
        if (ev->kind == GEN_EVENT_END) {
            rpc_call_finish(s->call, NULL);
            s->ended = true;
        }
    }
    gen_event_free(ev);
    return s->ended || !rpc_call_cancelled(s->call);
}

static bool stream_alive(void *user) {
    stream_ctx *s = user;
    return s->ended || !rpc_call_cancelled(s->call);
}

static void stream_release(void *user) {
    stream_ctx *s = user;
    if (!s->ended) rpc_call_fail(s->call, GRPC_STATUS_CANCELLED, "cancelled");
    free(s);
}

static void on_generate_stream(rpc_call *call, const ProtobufCMessage *req, void *user) {
    grpc_api *api = user;
    gen_request_in in;
    fl_error err = {0};
    stream_ctx *s = calloc(1, sizeof *s);
    if (!s || pb_api_generate_request(req, &in, &err) != FL_OK) {
        free(s);
        rpc_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    s->call = call;
    s->details = in.params.details;
    gen_error_kind kind;
    char msg[640];
    if (!infer_stream(api->deps.inf, &in, (gen_sink){stream_send, stream_alive, stream_release, s},
                      &kind, msg, sizeof msg)) {
        free(s);
        rpc_call_fail(call, status_for(kind), gen_error_public(kind, msg));
    }
    gen_request_in_clear(&in);
}

// ---- Tokenize, Info, Health ----

static void on_tokenize(rpc_call *call, const ProtobufCMessage *req, void *user) {
    grpc_api *api = user;
    const char *text = pb_api_tokenize_text(req);
    int32_t *ids = NULL;
    int n = 0;
    fl_error err = {0};
    if (!validate_utf8(text, strlen(text))) {
        rpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "`inputs` must be valid UTF-8");
        return;
    }
    if (infer_tokenize(api->deps.inf, text, strlen(text), &ids, &n, &err) != FL_OK) {
        rpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, err.msg);
        return;
    }
    finish_built(call, pb_api_tokenize_response(infer_tokenizer(api->deps.inf), ids, n));
    free(ids);
}

static void on_info(rpc_call *call, const ProtobufCMessage *req, void *user) {
    grpc_api *api = user;
    finish_built(call, pb_api_info_response(api->deps.info));
}

static void on_health_check(rpc_call *call, const ProtobufCMessage *req, void *user) {
    grpc_api *api = user;
    const char *service = pb_api_health_service(req);
    if (!validate_utf8(service, strlen(service))) {
        rpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "`service` must be valid UTF-8");
        return;
    }
    if (*service && strcmp(service, "falconlite.v1.TextGeneration") != 0) {
        rpc_call_fail(call, GRPC_STATUS_NOT_FOUND, "unknown service");
        return;
    }
    // Probes are rare and a shard Health RPC is fast; checking on the server thread is fine.
    bool ok = !api->deps.health || health_check(api->deps.health);
    finish_built(call, pb_api_health_response(ok));
}

fl_code grpc_api_start(const char *addr, const grpc_api_deps *deps, grpc_api **out, fl_error *err) {
    grpc_api *api = calloc(1, sizeof *api);
    if (!api) return fl_error_set(err, FL_ENOMEM, "grpc api: out of memory");
    api->deps = *deps;
    api->srv = rpc_server_create(err);
    if (!api->srv) {
        free(api);
        return err ? err->code : FL_EIO;
    }
    static const struct {
        pb_public_method m;
        rpc_handler_fn fn;
    } methods[] = {
        {PB_API_GENERATE, on_generate},         {PB_API_GENERATE_STREAM, on_generate_stream},
        {PB_API_TOKENIZE, on_tokenize},         {PB_API_INFO, on_info},
        {PB_API_HEALTH_CHECK, on_health_check},
    };
    fl_code rc = FL_OK;
    for (size_t i = 0; rc == FL_OK && i < sizeof methods / sizeof methods[0]; i++)
        rc = rpc_server_add_method(api->srv, pb_api_path(methods[i].m),
                                   pb_api_request_desc(methods[i].m), methods[i].fn, api, err);
    if (rc == FL_OK && deps->security) rc = rpc_server_secure(api->srv, deps->security, err);
    if (rc == FL_OK) rc = rpc_server_listen(api->srv, addr, err);
    if (rc == FL_OK) rc = rpc_server_start(api->srv, err);
    if (rc != FL_OK) {
        grpc_api_free(api);
        return rc;
    }
    *out = api;
    return FL_OK;
}

void grpc_api_stop(grpc_api *api, int grace_ms) {
    rpc_server_shutdown(api->srv, grace_ms);
}

void grpc_api_free(grpc_api *api) {
    if (!api) return;
    rpc_server_free(api->srv);
    free(api);
}
