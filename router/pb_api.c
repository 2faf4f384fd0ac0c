#include "router/pb_api.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "proto/generate.pb-c.h"
#include "proto/health.pb-c.h"

static const char *api_paths[PB_API_COUNT] = {
    "/falconlite.v1.TextGeneration/Generate", "/falconlite.v1.TextGeneration/GenerateStream",
    "/falconlite.v1.TextGeneration/Tokenize", "/falconlite.v1.TextGeneration/Info",
    "/grpc.health.v1.Health/Check",           "/grpc.health.v1.Health/Watch",
};

const char *pb_api_path(pb_public_method m) {
    return api_paths[m];
}

const ProtobufCMessageDescriptor *pb_api_request_desc(pb_public_method m) {
    switch (m) {
    case PB_API_GENERATE:
    case PB_API_GENERATE_STREAM:
        return &falconlite__v1__generate_request__descriptor;
    case PB_API_TOKENIZE:
        return &falconlite__v1__tokenize_request__descriptor;
    case PB_API_INFO:
        return &falconlite__v1__info_request__descriptor;
    default:
        return &grpc__health__v1__health_check_request__descriptor;
    }
}

fl_code pb_api_generate_request(const ProtobufCMessage *msg, gen_request_in *out, fl_error *err) {
    const Falconlite__V1__GenerateRequest *r = (const void *)msg;
    gen_request_in_init(out);
    const char *inputs = r->inputs ? r->inputs : "";
    out->inputs = strdup(inputs);
    out->inputs_len = strlen(inputs);
    if (!out->inputs) return fl_error_set(err, FL_ENOMEM, "out of memory");
    const Falconlite__V1__Parameters *p = r->parameters;
    if (!p) return FL_OK;
    gen_params_in *o = &out->params;
    o->has_best_of = p->has_best_of, o->best_of = p->best_of;
    o->do_sample = p->has_do_sample && p->do_sample;
    o->has_max_new_tokens = p->has_max_new_tokens, o->max_new_tokens = p->max_new_tokens;
    o->has_repetition_penalty = p->has_repetition_penalty;
    o->repetition_penalty = p->repetition_penalty;
    o->return_full_text = p->has_return_full_text && p->return_full_text;
    o->has_seed = p->has_seed, o->seed = p->seed;
    o->has_temperature = p->has_temperature, o->temperature = p->temperature;
    o->has_top_k = p->has_top_k, o->top_k = p->top_k;
    o->has_top_p = p->has_top_p, o->top_p = p->top_p;
    o->has_truncate = p->has_truncate, o->truncate = p->truncate;
    o->has_typical_p = p->has_typical_p, o->typical_p = p->typical_p;
    o->watermark = p->has_watermark && p->watermark;
    o->details = p->has_details && p->details;
    o->decoder_input_details = p->has_decoder_input_details && p->decoder_input_details;
    o->ignore_eos = p->has_ignore_eos && p->ignore_eos;
    if (p->n_stop > 0) {
        o->stop = calloc(p->n_stop, sizeof(char *));
        if (!o->stop) return fl_error_set(err, FL_ENOMEM, "out of memory");
        for (size_t i = 0; i < p->n_stop; i++)
            o->stop[i] = strdup(p->stop[i] ? p->stop[i] : "");
        o->n_stop = (int)p->n_stop;
    }
    return FL_OK;
}

const char *pb_api_tokenize_text(const ProtobufCMessage *req) {
    const Falconlite__V1__TokenizeRequest *r = (const void *)req;
    return r->inputs ? r->inputs : "";
}

const char *pb_api_health_service(const ProtobufCMessage *req) {
    const Grpc__Health__V1__HealthCheckRequest *r = (const void *)req;
    return r->service ? r->service : "";
}

static Falconlite__V1__FinishReason finish_to(finish_reason r) {
    switch (r) {
    case FINISH_EOS_TOKEN:
        return FALCONLITE__V1__FINISH_REASON__FINISH_REASON_EOS_TOKEN;
    case FINISH_STOP_SEQUENCE:
        return FALCONLITE__V1__FINISH_REASON__FINISH_REASON_STOP_SEQUENCE;
    default:
        return FALCONLITE__V1__FINISH_REASON__FINISH_REASON_LENGTH;
    }
}

static Falconlite__V1__Token *token_to(pb_built *b, const gen_token *t) {
    Falconlite__V1__Token *m = PB_BUILT_NEW(b, Falconlite__V1__Token, FALCONLITE__V1__TOKEN__INIT);
    if (!m) return NULL;
    m->has_id = 1, m->id = t->id;
    m->text = pb_built_strdup(b, t->text);
    m->has_logprob = !isnan(t->logprob), m->logprob = t->logprob;
    m->has_special = 1, m->special = t->special;
    return m;
}

static Falconlite__V1__Token **tokens_to(pb_built *b, const gen_token *t, int n) {
    Falconlite__V1__Token **v = pb_built_alloc(b, sizeof(void *) * (size_t)n);
    for (int i = 0; v && i < n; i++)
        v[i] = token_to(b, &t[i]);
    return v;
}

pb_built *pb_api_generate_response(const gen_outcome *o, bool details) {
    pb_built *b = pb_built_new();
    if (!b) return NULL;
    Falconlite__V1__GenerateResponse *m =
        PB_BUILT_NEW(b, Falconlite__V1__GenerateResponse, FALCONLITE__V1__GENERATE_RESPONSE__INIT);
    if (!m) return pb_built_done(b, NULL);
    const gen_result *r = &o->results[0];
    m->generated_text = pb_built_strdup(b, r->generated_text);
    if (details) {
        Falconlite__V1__Details *d =
            PB_BUILT_NEW(b, Falconlite__V1__Details, FALCONLITE__V1__DETAILS__INIT);
        if (d) {
            d->has_finish_reason = 1, d->finish_reason = finish_to(r->finish);
            d->has_generated_tokens = 1, d->generated_tokens = r->generated_tokens;
            d->has_seed = r->has_seed, d->seed = r->seed;
            d->n_prefill = (size_t)r->n_prefill,
            d->prefill = tokens_to(b, r->prefill, r->n_prefill);
            d->n_tokens = (size_t)r->n_tokens, d->tokens = tokens_to(b, r->tokens, r->n_tokens);
            if (o->n_results > 1) {
                d->n_best_of_sequences = (size_t)o->n_results - 1;
                d->best_of_sequences = pb_built_alloc(b, sizeof(void *) * d->n_best_of_sequences);
                for (int i = 1; d->best_of_sequences && i < o->n_results; i++) {
                    const gen_result *c = &o->results[i];
                    Falconlite__V1__BestOfSequence *s = PB_BUILT_NEW(
                        b, Falconlite__V1__BestOfSequence, FALCONLITE__V1__BEST_OF_SEQUENCE__INIT);
                    if (!s) break;
                    s->generated_text = pb_built_strdup(b, c->generated_text);
                    s->has_finish_reason = 1, s->finish_reason = finish_to(c->finish);
                    s->has_generated_tokens = 1, s->generated_tokens = c->generated_tokens;
                    s->has_seed = c->has_seed, s->seed = c->seed;
                    s->n_prefill = (size_t)c->n_prefill,
                    s->prefill = tokens_to(b, c->prefill, c->n_prefill);
                    s->n_tokens = (size_t)c->n_tokens,
                    s->tokens = tokens_to(b, c->tokens, c->n_tokens);
                    d->best_of_sequences[i - 1] = s;
                }
            }
        }
        m->details = d;
    }
    return pb_built_done(b, m);
}

pb_built *pb_api_stream_response(const gen_event *ev, bool details) {
    pb_built *b = pb_built_new();
    if (!b) return NULL;
    Falconlite__V1__GenerateStreamResponse *m = PB_BUILT_NEW(
        b, Falconlite__V1__GenerateStreamResponse, FALCONLITE__V1__GENERATE_STREAM_RESPONSE__INIT);
    if (!m) return pb_built_done(b, NULL);
    m->token = token_to(b, &ev->token);
    if (ev->kind == GEN_EVENT_END) {
        m->generated_text = pb_built_strdup(b, ev->generated_text);
        if (details) {
            Falconlite__V1__StreamDetails *d = PB_BUILT_NEW(b, Falconlite__V1__StreamDetails,
                                                            FALCONLITE__V1__STREAM_DETAILS__INIT);
            if (d) {
                d->has_finish_reason = 1, d->finish_reason = finish_to(ev->finish);
                d->has_generated_tokens = 1, d->generated_tokens = ev->generated_tokens;
                d->has_seed = ev->has_seed, d->seed = ev->seed;
            }
            m->details = d;
        }
    }
    return pb_built_done(b, m);
}

pb_built *pb_api_tokenize_response(const tokenizer *tok, const int32_t *ids, int n) {
    pb_built *b = pb_built_new();
    if (!b) return NULL;
    Falconlite__V1__TokenizeResponse *m =
        PB_BUILT_NEW(b, Falconlite__V1__TokenizeResponse, FALCONLITE__V1__TOKENIZE_RESPONSE__INIT);
    if (!m) return pb_built_done(b, NULL);
    m->n_ids = m->n_tokens = (size_t)n;
    m->ids = pb_built_alloc(b, sizeof(uint32_t) * (size_t)n);
    m->tokens = pb_built_alloc(b, sizeof(char *) * (size_t)n);
    for (int i = 0; m->ids && m->tokens && i < n; i++) {
        m->ids[i] = (uint32_t)ids[i];
        m->tokens[i] = pb_built_strdup(b, tokenizer_id_to_token(tok, ids[i]));
    }
    return pb_built_done(b, m);
}

pb_built *pb_api_info_response(const server_info *in) {
    pb_built *b = pb_built_new();
    if (!b) return NULL;
    Falconlite__V1__InfoResponse *m =
        PB_BUILT_NEW(b, Falconlite__V1__InfoResponse, FALCONLITE__V1__INFO_RESPONSE__INIT);
    if (!m) return pb_built_done(b, NULL);
    m->model_id = pb_built_strdup(b, in->model_id);
    m->model_sha = pb_built_strdup(b, in->model_sha);
    m->model_dtype = pb_built_strdup(b, in->model_dtype);
    m->model_device_type = pb_built_strdup(b, in->model_device_type);
    m->model_pipeline_tag = pb_built_strdup(b, in->model_pipeline_tag);
    m->has_max_concurrent_requests = 1, m->max_concurrent_requests = in->max_concurrent_requests;
    m->has_max_best_of = 1, m->max_best_of = in->max_best_of;
    m->has_max_stop_sequences = 1, m->max_stop_sequences = in->max_stop_sequences;
    m->has_max_input_length = 1, m->max_input_length = in->max_input_length;
    m->has_max_total_tokens = 1, m->max_total_tokens = in->max_total_tokens;
    m->has_waiting_served_ratio = 1, m->waiting_served_ratio = in->waiting_served_ratio;
    m->has_max_batch_total_tokens = 1, m->max_batch_total_tokens = in->max_batch_total_tokens;
    m->has_max_waiting_tokens = 1, m->max_waiting_tokens = in->max_waiting_tokens;
    m->has_validation_workers = 1, m->validation_workers = in->validation_workers;
    m->version = pb_built_strdup(b, in->version);
    m->sha = pb_built_strdup(b, in->sha);
    m->has_num_shard = 1, m->num_shard = in->num_shard;
    return pb_built_done(b, m);
}

pb_built *pb_api_health_response(bool serving) {
    pb_built *b = pb_built_new();
    if (!b) return NULL;
    Grpc__Health__V1__HealthCheckResponse *m = PB_BUILT_NEW(
        b, Grpc__Health__V1__HealthCheckResponse, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT);
    if (m)
        m->status = serving ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                            : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
    return pb_built_done(b, m);
}
