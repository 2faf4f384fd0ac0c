#include "tools/client_rpc.h"

#include <stdlib.h>
#include <string.h>

#include "proto/generate.pb-c.h"
#include "proto/health.pb-c.h"
#include "proto/rpc_client.h"
#include "tools/cli_common.h"

#define METHOD_GENERATE        "/falconlite.v1.TextGeneration/Generate"
#define METHOD_GENERATE_STREAM "/falconlite.v1.TextGeneration/GenerateStream"
#define METHOD_TOKENIZE        "/falconlite.v1.TextGeneration/Tokenize"
#define METHOD_INFO            "/falconlite.v1.TextGeneration/Info"
#define METHOD_HEALTH_CHECK    "/grpc.health.v1.Health/Check"

struct client_rpc {
    rpc_channel *ch;
};

client_rpc *client_rpc_connect(const char *addr, int timeout_ms, fl_error *err) {
    client_rpc *c = calloc(1, sizeof *c);
    if (!c) {
        fl_error_set(err, FL_ENOMEM, "out of memory");
        return NULL;
    }
    c->ch = rpc_channel_create(addr, err);
    if (!c->ch || rpc_channel_wait_ready(c->ch, timeout_ms, err) != FL_OK) {
        client_rpc_free(c);
        return NULL;
    }
    return c;
}

void client_rpc_free(client_rpc *c) {
    if (!c) return;
    if (c->ch) rpc_channel_free(c->ch);
    free(c);
}

const char *client_finish_name(client_finish f) {
    switch (f) {
    case CLIENT_FINISH_LENGTH:
        return "length";
    case CLIENT_FINISH_EOS_TOKEN:
        return "eos_token";
    case CLIENT_FINISH_STOP_SEQUENCE:
        return "stop_sequence";
    default:
        return "unspecified";
    }
}

// ---- messages -> plain C ----

static client_finish finish_from(Falconlite__V1__FinishReason r) {
    switch (r) {
    case FALCONLITE__V1__FINISH_REASON__FINISH_REASON_LENGTH:
        return CLIENT_FINISH_LENGTH;
    case FALCONLITE__V1__FINISH_REASON__FINISH_REASON_EOS_TOKEN:
        return CLIENT_FINISH_EOS_TOKEN;
    case FALCONLITE__V1__FINISH_REASON__FINISH_REASON_STOP_SEQUENCE:
        return CLIENT_FINISH_STOP_SEQUENCE;
    default:
        return CLIENT_FINISH_UNSPECIFIED;
    }
}

// The token's fields; text stays borrowed from t.
static client_token token_view(const Falconlite__V1__Token *t) {
    return (client_token){.id = t->id,
                          .text = t->text,
                          .has_logprob = t->has_logprob,
                          .logprob = t->logprob,
                          .special = t->special};
}

// Copies of t[n] (texts included); NULL when out of memory.
static client_token *tokens_copy(Falconlite__V1__Token *const *t, size_t n) {
    client_token *out = calloc(n ? n : 1, sizeof *out);
    for (size_t i = 0; out && i < n; i++) {
        out[i] = token_view(t[i]);
        out[i].text = t[i]->text ? strdup(t[i]->text) : NULL;
    }
    return out;
}

static void tokens_free(client_token *t, int n) {
    for (int i = 0; t && i < n; i++)
        free((char *)t[i].text);
    free(t);
}

static void details_end(client_details *d, Falconlite__V1__FinishReason finish,
                        uint32_t generated_tokens, protobuf_c_boolean has_seed, uint64_t seed) {
    d->finish = finish_from(finish);
    d->generated_tokens = generated_tokens;
    d->has_seed = has_seed;
    d->seed = seed;
}

// A GenerateRequest (Generate and GenerateStream) into *req, its Parameters in *p; both borrow
// inputs and in's stop sequences.
static void generate_request_fill(const char *inputs, const client_params *in,
                                  Falconlite__V1__GenerateRequest *req,
                                  Falconlite__V1__Parameters *p) {
    falconlite__v1__parameters__init(p);
#define COPY(field)                                                                                \
    do {                                                                                           \
        p->has_##field = in->has_##field;                                                          \
        p->field = in->field;                                                                      \
    } while (0)
    COPY(best_of);
    COPY(do_sample);
    COPY(max_new_tokens);
    COPY(repetition_penalty);
    COPY(return_full_text);
    COPY(seed);
    COPY(temperature);
    COPY(top_k);
    COPY(top_p);
    COPY(truncate);
    COPY(typical_p);
    COPY(watermark);
    COPY(details);
    COPY(decoder_input_details);
    COPY(ignore_eos);
#undef COPY
    p->n_stop = (size_t)in->n_stop;
    p->stop = (char **)in->stop;
    falconlite__v1__generate_request__init(req);
    req->inputs = (char *)inputs;
    req->parameters = p;
}

// ---- Generate, GenerateStream ----

void client_generation_clear(client_generation *g) {
    free(g->text);
    tokens_free(g->details.prefill, g->details.n_prefill);
    tokens_free(g->details.tokens, g->details.n_tokens);
    memset(g, 0, sizeof *g);
}

fl_code client_rpc_generate(client_rpc *c, const char *inputs, const client_params *p,
                            int timeout_ms, client_generation *out, fl_error *err) {
    Falconlite__V1__GenerateRequest req;
    Falconlite__V1__Parameters params;
    generate_request_fill(inputs, p, &req, &params);
    memset(out, 0, sizeof *out);
    rpc_result res;
    fl_code rc = rpc_unary(c->ch, METHOD_GENERATE, &req.base,
                           &falconlite__v1__generate_response__descriptor, timeout_ms, &res, err);
    if (rc != FL_OK) return rc;
    const Falconlite__V1__GenerateResponse *r = (const Falconlite__V1__GenerateResponse *)res.resp;
    const Falconlite__V1__Details *d = r->details;
    out->text = strdup(r->generated_text ? r->generated_text : "");
    bool oom = !out->text;
    if (d) {
        client_details *o = &out->details;
        out->has_details = true;
        details_end(o, d->finish_reason, d->generated_tokens, d->has_seed, d->seed);
        o->prefill = tokens_copy(d->prefill, d->n_prefill);
        o->n_prefill = o->prefill ? (int)d->n_prefill : 0;
        o->tokens = tokens_copy(d->tokens, d->n_tokens);
        o->n_tokens = o->tokens ? (int)d->n_tokens : 0;
        oom = oom || !o->prefill || !o->tokens;
    }
    rpc_result_clear(&res);
    if (oom) {
        client_generation_clear(out);
        return fl_error_set(err, FL_ENOMEM, "Generate: out of memory");
    }
    return FL_OK;
}

// Calls fn with m's events; false when fn asked to stop.
static bool stream_message_emit(const Falconlite__V1__GenerateStreamResponse *m, double t,
                                int *n_tokens, client_event_fn fn, void *user) {
    if (m->token) {
        client_event ev = {.kind = CLIENT_EVENT_TOKEN,
                           .time_s = t,
                           .index = (*n_tokens)++,
                           .token = token_view(m->token)};
        if (!fn(user, &ev)) return false;
    }
    if (!m->generated_text && !m->details) return true;
    client_details d = {0};
    if (m->details)
        details_end(&d, m->details->finish_reason, m->details->generated_tokens,
                    m->details->has_seed, m->details->seed);
    client_event ev = {.kind = CLIENT_EVENT_END,
                       .time_s = t,
                       .text = m->generated_text,
                       .details = m->details ? &d : NULL};
    return fn(user, &ev);
}

fl_code client_rpc_stream(client_rpc *c, const char *inputs, const client_params *p, int timeout_ms,
                          client_event_fn fn, void *user, fl_error *err) {
    Falconlite__V1__GenerateRequest req;
    Falconlite__V1__Parameters params;
    generate_request_fill(inputs, p, &req, &params);
    rpc_stream *s =
        rpc_stream_start(c->ch, METHOD_GENERATE_STREAM, &req.base,
                         &falconlite__v1__generate_stream_response__descriptor, timeout_ms, err);
    if (!s) return err ? err->code : FL_EBACKEND;
    fl_code rc;
    int n_tokens = 0;
    for (;;) {
        ProtobufCMessage *m = NULL;
        if ((rc = rpc_stream_read(s, &m, err)) || !m) break;
        double t = cli_now_s();
        bool more = stream_message_emit((const Falconlite__V1__GenerateStreamResponse *)m, t,
                                        &n_tokens, fn, user);
        protobuf_c_message_free_unpacked(m, NULL);
        if (!more) break;
    }
    rpc_stream_free(s);
    return rc;
}

// ---- Tokenize, Info, Health ----

void client_tokens_clear(client_tokens *t) {
    for (int i = 0; t->tokens && i < t->n_tokens; i++)
        free(t->tokens[i]);
    free(t->tokens);
    free(t->ids);
    memset(t, 0, sizeof *t);
}

fl_code client_rpc_tokenize(client_rpc *c, const char *text, int timeout_ms, client_tokens *out,
                            fl_error *err) {
    Falconlite__V1__TokenizeRequest req = FALCONLITE__V1__TOKENIZE_REQUEST__INIT;
    req.inputs = (char *)text;
    memset(out, 0, sizeof *out);
    rpc_result res;
    fl_code rc = rpc_unary(c->ch, METHOD_TOKENIZE, &req.base,
                           &falconlite__v1__tokenize_response__descriptor, timeout_ms, &res, err);
    if (rc != FL_OK) return rc;
    const Falconlite__V1__TokenizeResponse *r = (const Falconlite__V1__TokenizeResponse *)res.resp;
    out->ids = malloc(sizeof *out->ids * (r->n_ids ? r->n_ids : 1));
    out->tokens = calloc(r->n_tokens ? r->n_tokens : 1, sizeof *out->tokens);
    bool oom = !out->ids || !out->tokens;
    if (!oom) {
        memcpy(out->ids, r->ids, sizeof *out->ids * r->n_ids);
        out->n_ids = (int)r->n_ids;
        out->n_tokens = (int)r->n_tokens;
        for (size_t i = 0; i < r->n_tokens; i++)
            oom |= !(out->tokens[i] = strdup(r->tokens[i] ? r->tokens[i] : ""));
    }
    rpc_result_clear(&res);
    if (oom) {
        client_tokens_clear(out);
        return fl_error_set(err, FL_ENOMEM, "Tokenize: out of memory");
    }
    return FL_OK;
}

// The set scalar fields of msg (strings, integers, floats, bools) as one JSON object keyed by
// the proto field names; repeated and message fields are left out.
static cJSON *json_scalars(const ProtobufCMessage *msg) {
    cJSON *o = cJSON_CreateObject();
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    const char *base = (const char *)msg;
    for (unsigned i = 0; o && i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const void *v = base + f->offset;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) continue;
        // proto2 optional scalars carry a has_ flag; strings are set when non-NULL.
        if (f->type == PROTOBUF_C_TYPE_STRING) {
            const char *s = *(char *const *)v;
            if (s) cJSON_AddStringToObject(o, f->name, s);
            continue;
        }
        if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset &&
            !*(const protobuf_c_boolean *)(base + f->quantifier_offset))
            continue;
        switch (f->type) {
        case PROTOBUF_C_TYPE_UINT32:
            cJSON_AddNumberToObject(o, f->name, *(const uint32_t *)v);
            break;
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_ENUM:
            cJSON_AddNumberToObject(o, f->name, *(const int32_t *)v);
            break;
        case PROTOBUF_C_TYPE_UINT64:
            cJSON_AddNumberToObject(o, f->name, (double)*(const uint64_t *)v);
            break;
        case PROTOBUF_C_TYPE_FLOAT:
            cJSON_AddNumberToObject(o, f->name, *(const float *)v);
            break;
        case PROTOBUF_C_TYPE_BOOL:
            cJSON_AddBoolToObject(o, f->name, *(const protobuf_c_boolean *)v);
            break;
        default: // nested messages, bytes, doubles: none in the messages printed this way
            break;
        }
    }
    return o;
}

void client_info_clear(client_info *info) {
    cJSON_Delete(info->fields);
    memset(info, 0, sizeof *info);
}

fl_code client_rpc_info(client_rpc *c, int timeout_ms, client_info *out, fl_error *err) {
    Falconlite__V1__InfoRequest req = FALCONLITE__V1__INFO_REQUEST__INIT;
    memset(out, 0, sizeof *out);
    rpc_result res;
    fl_code rc = rpc_unary(c->ch, METHOD_INFO, &req.base,
                           &falconlite__v1__info_response__descriptor, timeout_ms, &res, err);
    if (rc != FL_OK) return rc;
    const Falconlite__V1__InfoResponse *r = (const Falconlite__V1__InfoResponse *)res.resp;
    out->max_concurrent_requests = r->max_concurrent_requests;
    out->max_input_length = r->max_input_length;
    out->max_total_tokens = r->max_total_tokens;
    out->max_batch_total_tokens = r->max_batch_total_tokens;
    out->num_shard = r->num_shard;
    out->fields = json_scalars(&r->base);
    rpc_result_clear(&res);
    if (!out->fields) return fl_error_set(err, FL_ENOMEM, "Info: out of memory");
    return FL_OK;
}

fl_code client_rpc_health(client_rpc *c, int timeout_ms, client_health *out, fl_error *err) {
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    rpc_result res;
    fl_code rc =
        rpc_unary(c->ch, METHOD_HEALTH_CHECK, &req.base,
                  &grpc__health__v1__health_check_response__descriptor, timeout_ms, &res, err);
    if (rc != FL_OK) return rc;
    int st = ((const Grpc__Health__V1__HealthCheckResponse *)res.resp)->status;
    rpc_result_clear(&res);
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
        &grpc__health__v1__health_check_response__serving_status__descriptor, st);
    out->status = v ? v->name : "UNKNOWN";
    out->serving = st == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    return FL_OK;
}
