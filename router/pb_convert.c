#include "router/pb_convert.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/generate.pb-c.h"
#include "proto/health.pb-c.h"
#include "proto/shard.pb-c.h"

// ---- arena-backed message building ----------------------------------------------------------

struct pb_built {
    void **ptrs;
    int n, cap;
    bool oom;
    ProtobufCMessage *msg;
};

static void *ar_alloc(pb_built *b, size_t size) {
    if (b->n == b->cap) {
        int cap = b->cap ? b->cap * 2 : 16;
        void **p = realloc(b->ptrs, sizeof *p * (size_t)cap);
        if (!p) {
            b->oom = true;
            return NULL;
        }
        b->ptrs = p;
        b->cap = cap;
    }
    void *m = calloc(1, size ? size : 1);
    if (!m) {
        b->oom = true;
        return NULL;
    }
    b->ptrs[b->n++] = m;
    return m;
}

static char *ar_strdup(pb_built *b, const char *s) {
    size_t n = strlen(s ? s : "");
    char *d = ar_alloc(b, n + 1);
    if (d && s) memcpy(d, s, n);
    return d;
}

static pb_built *built_new(void) {
    return calloc(1, sizeof(pb_built));
}

// Returns b, or NULL (freeing it) when an allocation failed along the way.
static pb_built *built_done(pb_built *b, void *msg) {
    if (!b) return NULL;
    b->msg = msg;
    if (b->oom || !msg) {
        pb_built_free(b);
        return NULL;
    }
    return b;
}

const ProtobufCMessage *pb_built_msg(const pb_built *b) {
    return b->msg;
}

void pb_built_free(pb_built *b) {
    if (!b) return;
    for (int i = 0; i < b->n; i++)
        free(b->ptrs[i]);
    free(b->ptrs);
    free(b);
}

#define AR_NEW(b, T, INIT)                                                                         \
    ({                                                                                             \
        T *m_ = ar_alloc((b), sizeof(T));                                                          \
        if (m_) *m_ = (T)INIT;                                                                     \
        m_;                                                                                        \
    })

// ---- shard protocol -----------------------------------------------------------------------------

static const char *shard_paths[] = {
    "/falconlite.shard.v1.Shard/Info",
    "/falconlite.shard.v1.Shard/Health",
    "/falconlite.shard.v1.Shard/ServiceDiscovery",
    "/falconlite.shard.v1.Shard/ClearCache",
    "/falconlite.shard.v1.Shard/FilterBatch",
    "/falconlite.shard.v1.Shard/Warmup",
    "/falconlite.shard.v1.Shard/Prefill",
    "/falconlite.shard.v1.Shard/Decode",
};

const char *pb_shard_path(pb_shard_method m) {
    return shard_paths[m];
}

const ProtobufCMessageDescriptor *pb_shard_response_desc(pb_shard_method m) {
    switch (m) {
    case PB_SHARD_INFO:
        return &falconlite__shard__v1__info_response__descriptor;
    case PB_SHARD_HEALTH:
        return &falconlite__shard__v1__health_response__descriptor;
    case PB_SHARD_SERVICE_DISCOVERY:
        return &falconlite__shard__v1__service_discovery_response__descriptor;
    case PB_SHARD_CLEAR_CACHE:
        return &falconlite__shard__v1__clear_cache_response__descriptor;
    case PB_SHARD_FILTER_BATCH:
        return &falconlite__shard__v1__filter_batch_response__descriptor;
    case PB_SHARD_WARMUP:
        return &falconlite__shard__v1__warmup_response__descriptor;
    case PB_SHARD_PREFILL:
        return &falconlite__shard__v1__prefill_response__descriptor;
    default:
        return &falconlite__shard__v1__decode_response__descriptor;
    }
}

pb_built *pb_shard_empty_request(pb_shard_method m) {
    pb_built *b = built_new();
    if (!b) return NULL;
    void *msg = NULL;
    switch (m) {
    case PB_SHARD_INFO:
        msg = AR_NEW(b, Falconlite__Shard__V1__InfoRequest,
                     FALCONLITE__SHARD__V1__INFO_REQUEST__INIT);
        break;
    case PB_SHARD_HEALTH:
        msg = AR_NEW(b, Falconlite__Shard__V1__HealthRequest,
                     FALCONLITE__SHARD__V1__HEALTH_REQUEST__INIT);
        break;
    default:
        msg = AR_NEW(b, Falconlite__Shard__V1__ServiceDiscoveryRequest,
                     FALCONLITE__SHARD__V1__SERVICE_DISCOVERY_REQUEST__INIT);
        break;
    }
    return built_done(b, msg);
}

pb_built *pb_shard_clear_request(const uint64_t *ids, int n) {
    pb_built *b = built_new();
    if (!b) return NULL;
    Falconlite__Shard__V1__ClearCacheRequest *m =
        AR_NEW(b, Falconlite__Shard__V1__ClearCacheRequest,
               FALCONLITE__SHARD__V1__CLEAR_CACHE_REQUEST__INIT);
    if (m && n > 0) {
        m->ids = ar_alloc(b, sizeof(uint64_t) * (size_t)n);
        if (m->ids) memcpy(m->ids, ids, sizeof(uint64_t) * (size_t)n);
        m->n_ids = (size_t)n;
    }
    return built_done(b, m);
}

pb_built *pb_shard_filter_request(uint64_t batch_id, const uint64_t *keep, int n) {
    pb_built *b = built_new();
    if (!b) return NULL;
    Falconlite__Shard__V1__FilterBatchRequest *m =
        AR_NEW(b, Falconlite__Shard__V1__FilterBatchRequest,
               FALCONLITE__SHARD__V1__FILTER_BATCH_REQUEST__INIT);
    if (m) {
        m->batch_id = batch_id;
        m->request_ids = ar_alloc(b, sizeof(uint64_t) * (size_t)n);
        if (m->request_ids) memcpy(m->request_ids, keep, sizeof(uint64_t) * (size_t)n);
        m->n_request_ids = (size_t)n;
    }
    return built_done(b, m);
}

static Falconlite__Shard__V1__Batch *batch_build(pb_built *b, const shard_batch *sb) {
    Falconlite__Shard__V1__Batch *m =
        AR_NEW(b, Falconlite__Shard__V1__Batch, FALCONLITE__SHARD__V1__BATCH__INIT);
    if (!m) return NULL;
    m->id = sb->id;
    m->size = (uint32_t)sb->n;
    m->max_tokens = sb->max_tokens;
    m->n_requests = (size_t)sb->n;
    m->requests = ar_alloc(b, sizeof(void *) * (size_t)sb->n);
    if (!m->requests) return NULL;
    for (int i = 0; i < sb->n; i++) {
        const shard_request *r = &sb->requests[i];
        const gen_params *p = r->params;
        Falconlite__Shard__V1__Request *q =
            AR_NEW(b, Falconlite__Shard__V1__Request, FALCONLITE__SHARD__V1__REQUEST__INIT);
        Falconlite__Shard__V1__NextTokenChooserParameters *np =
            AR_NEW(b, Falconlite__Shard__V1__NextTokenChooserParameters,
                   FALCONLITE__SHARD__V1__NEXT_TOKEN_CHOOSER_PARAMETERS__INIT);
        Falconlite__Shard__V1__StoppingCriteriaParameters *sp =
            AR_NEW(b, Falconlite__Shard__V1__StoppingCriteriaParameters,
                   FALCONLITE__SHARD__V1__STOPPING_CRITERIA_PARAMETERS__INIT);
        uint32_t *ids = ar_alloc(b, sizeof(uint32_t) * (size_t)r->n_input);
        if (!q || !np || !sp || !ids) return NULL;
        for (int k = 0; k < r->n_input; k++)
            ids[k] = (uint32_t)r->input_ids[k];
        np->temperature = p->temperature;
        np->top_k = p->top_k;
        np->top_p = p->top_p;
        np->typical_p = p->typical_p;
        np->do_sample = p->do_sample;
        np->seed = p->seed;
        np->repetition_penalty = p->repetition_penalty;
        np->watermark = p->watermark;
        sp->max_new_tokens = p->max_new_tokens;
        sp->ignore_eos_token = p->ignore_eos;
        q->id = r->id;
        q->n_input_ids = (size_t)r->n_input;
        q->input_ids = ids;
        q->parameters = np;
        q->stopping_parameters = sp;
        q->prefill_logprobs = p->decoder_input_details;
        m->requests[i] = q;
    }
    return m;
}

pb_built *pb_shard_prefill_request(const shard_batch *sb) {
    pb_built *b = built_new();
    if (!b) return NULL;
    Falconlite__Shard__V1__PrefillRequest *m = AR_NEW(b, Falconlite__Shard__V1__PrefillRequest,
                                                      FALCONLITE__SHARD__V1__PREFILL_REQUEST__INIT);
    if (m) m->batch = batch_build(b, sb);
    return built_done(b, m && m->batch ? m : NULL);
}

pb_built *pb_shard_warmup_request(const shard_batch *sb, uint32_t max_total_tokens) {
    pb_built *b = built_new();
    if (!b) return NULL;
    Falconlite__Shard__V1__WarmupRequest *m = AR_NEW(b, Falconlite__Shard__V1__WarmupRequest,
                                                     FALCONLITE__SHARD__V1__WARMUP_REQUEST__INIT);
    if (m) {
        m->batch = batch_build(b, sb);
        m->max_total_tokens = max_total_tokens;
    }
    return built_done(b, m && m->batch ? m : NULL);
}

pb_built *pb_shard_decode_request(const cached_batch *batches, int n) {
    pb_built *b = built_new();
    if (!b) return NULL;
    Falconlite__Shard__V1__DecodeRequest *m = AR_NEW(b, Falconlite__Shard__V1__DecodeRequest,
                                                     FALCONLITE__SHARD__V1__DECODE_REQUEST__INIT);
    if (!m) return built_done(b, NULL);
    m->n_batches = (size_t)n;
    m->batches = ar_alloc(b, sizeof(void *) * (size_t)n);
    for (int i = 0; m->batches && i < n; i++) {
        Falconlite__Shard__V1__CachedBatch *c = AR_NEW(b, Falconlite__Shard__V1__CachedBatch,
                                                       FALCONLITE__SHARD__V1__CACHED_BATCH__INIT);
        if (!c) break;
        c->id = batches[i].id;
        c->size = (uint32_t)batches[i].n;
        c->max_tokens = batches[i].max_tokens;
        c->n_request_ids = (size_t)batches[i].n;
        c->request_ids = ar_alloc(b, sizeof(uint64_t) * (size_t)batches[i].n);
        if (c->request_ids)
            memcpy(c->request_ids, batches[i].request_ids, sizeof(uint64_t) * (size_t)batches[i].n);
        m->batches[i] = c;
    }
    return built_done(b, m);
}

static fl_code cached_from(const Falconlite__Shard__V1__CachedBatch *c, cached_batch *out,
                           fl_error *err) {
    out->id = c->id;
    out->n = (int)c->n_request_ids;
    out->max_tokens = c->max_tokens;
    out->request_ids = malloc(sizeof(uint64_t) * (c->n_request_ids ? c->n_request_ids : 1));
    if (!out->request_ids) return fl_error_set(err, FL_ENOMEM, "shard response: out of memory");
    memcpy(out->request_ids, c->request_ids, sizeof(uint64_t) * c->n_request_ids);
    return FL_OK;
}

static finish_reason finish_from(Falconlite__Shard__V1__FinishReason r) {
    switch (r) {
    case FALCONLITE__SHARD__V1__FINISH_REASON__FINISH_REASON_EOS_TOKEN:
        return FINISH_EOS_TOKEN;
    case FALCONLITE__SHARD__V1__FINISH_REASON__FINISH_REASON_STOP_SEQUENCE:
        return FINISH_STOP_SEQUENCE;
    default:
        return FINISH_LENGTH;
    }
}

fl_code pb_shard_step_from(const ProtobufCMessage *resp, shard_step *out, fl_error *err) {
    // Prefill and Decode responses share their layout (generations = 1, batch = 2).
    size_t n_gens;
    Falconlite__Shard__V1__Generation **gens;
    Falconlite__Shard__V1__CachedBatch *batch;
    if (resp->descriptor == &falconlite__shard__v1__prefill_response__descriptor) {
        const Falconlite__Shard__V1__PrefillResponse *r = (const void *)resp;
        n_gens = r->n_generations, gens = r->generations, batch = r->batch;
    } else {
        const Falconlite__Shard__V1__DecodeResponse *r = (const void *)resp;
        n_gens = r->n_generations, gens = r->generations, batch = r->batch;
    }
    memset(out, 0, sizeof *out);
    out->gens = calloc(n_gens ? n_gens : 1, sizeof *out->gens);
    if (!out->gens) return fl_error_set(err, FL_ENOMEM, "shard response: out of memory");
    for (size_t i = 0; i < n_gens; i++) {
        const Falconlite__Shard__V1__Generation *g = gens[i];
        shard_generation *o = &out->gens[out->n_gens++];
        o->request_id = g->request_id;
        o->token_id = g->token_id;
        o->token_logprob = g->token_logprob;
        o->token_is_special = g->token_is_special;
        if (g->prefill_tokens && g->prefill_tokens->n_ids > 0) {
            size_t n = g->prefill_tokens->n_ids;
            o->prefill_ids = malloc(sizeof(uint32_t) * n);
            o->prefill_logprobs = malloc(sizeof(float) * n);
            if (!o->prefill_ids || !o->prefill_logprobs) {
                shard_step_clear(out);
                return fl_error_set(err, FL_ENOMEM, "shard response: out of memory");
            }
            memcpy(o->prefill_ids, g->prefill_tokens->ids, sizeof(uint32_t) * n);
            for (size_t k = 0; k < n; k++)
                o->prefill_logprobs[k] =
                    k < g->prefill_tokens->n_logprobs ? g->prefill_tokens->logprobs[k] : NAN;
            o->n_prefill = (int)n;
        }
        if (g->end) {
            o->finished = true;
            o->finish = finish_from(g->end->finish_reason);
            o->generated_tokens = g->end->generated_tokens;
            o->sampled = g->end->sampled;
            o->seed = g->end->seed;
        }
    }
    if (batch) {
        out->has_batch = true;
        fl_code rc = cached_from(batch, &out->batch, err);
        if (rc != FL_OK) {
            shard_step_clear(out);
            return rc;
        }
    }
    return FL_OK;
}

fl_code pb_shard_filtered_from(const ProtobufCMessage *resp, cached_batch *out, fl_error *err) {
    const Falconlite__Shard__V1__FilterBatchResponse *r = (const void *)resp;
    memset(out, 0, sizeof *out);
    if (!r->batch) return fl_error_set(err, FL_EFORMAT, "FilterBatch response without a batch");
    return cached_from(r->batch, out, err);
}

uint32_t pb_shard_warmup_capacity(const ProtobufCMessage *resp) {
    return ((const Falconlite__Shard__V1__WarmupResponse *)resp)->max_supported_total_tokens;
}

void pb_shard_info_from(const ProtobufCMessage *resp, shard_info *out) {
    const Falconlite__Shard__V1__InfoResponse *r = (const void *)resp;
    memset(out, 0, sizeof *out);
    snprintf(out->dtype, sizeof out->dtype, "%s", r->dtype ? r->dtype : "");
    snprintf(out->device_type, sizeof out->device_type, "%s", r->device_type ? r->device_type : "");
    snprintf(out->model_type, sizeof out->model_type, "%s", r->model_type ? r->model_type : "");
    out->vocab_size = r->vocab_size;
    out->eos_token_id = r->eos_token_id;
    out->rank = r->rank;
    out->world_size = r->world_size;
    out->block_size = r->block_size;
    out->max_total_tokens = r->max_total_tokens;
}

// ---- public API ---------------------------------------------------------------------------------

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
    Falconlite__V1__Token *m = AR_NEW(b, Falconlite__V1__Token, FALCONLITE__V1__TOKEN__INIT);
    if (!m) return NULL;
    m->has_id = 1, m->id = t->id;
    m->text = ar_strdup(b, t->text);
    m->has_logprob = !isnan(t->logprob), m->logprob = t->logprob;
    m->has_special = 1, m->special = t->special;
    return m;
}

static Falconlite__V1__Token **tokens_to(pb_built *b, const gen_token *t, int n) {
    Falconlite__V1__Token **v = ar_alloc(b, sizeof(void *) * (size_t)n);
    for (int i = 0; v && i < n; i++)
        v[i] = token_to(b, &t[i]);
    return v;
}

pb_built *pb_api_generate_response(const gen_outcome *o, bool details) {
    pb_built *b = built_new();
    if (!b) return NULL;
    Falconlite__V1__GenerateResponse *m =
        AR_NEW(b, Falconlite__V1__GenerateResponse, FALCONLITE__V1__GENERATE_RESPONSE__INIT);
    if (!m) return built_done(b, NULL);
    const gen_result *r = &o->results[0];
    m->generated_text = ar_strdup(b, r->generated_text);
    if (details) {
        Falconlite__V1__Details *d =
            AR_NEW(b, Falconlite__V1__Details, FALCONLITE__V1__DETAILS__INIT);
        if (d) {
            d->has_finish_reason = 1, d->finish_reason = finish_to(r->finish);
            d->has_generated_tokens = 1, d->generated_tokens = r->generated_tokens;
            d->has_seed = r->has_seed, d->seed = r->seed;
            d->n_prefill = (size_t)r->n_prefill,
            d->prefill = tokens_to(b, r->prefill, r->n_prefill);
            d->n_tokens = (size_t)r->n_tokens, d->tokens = tokens_to(b, r->tokens, r->n_tokens);
            if (o->n_results > 1) {
                d->n_best_of_sequences = (size_t)o->n_results - 1;
                d->best_of_sequences = ar_alloc(b, sizeof(void *) * d->n_best_of_sequences);
                for (int i = 1; d->best_of_sequences && i < o->n_results; i++) {
                    const gen_result *c = &o->results[i];
                    Falconlite__V1__BestOfSequence *s = AR_NEW(
                        b, Falconlite__V1__BestOfSequence, FALCONLITE__V1__BEST_OF_SEQUENCE__INIT);
                    if (!s) break;
                    s->generated_text = ar_strdup(b, c->generated_text);
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
    return built_done(b, m);
}

pb_built *pb_api_stream_response(const gen_event *ev, bool details) {
    pb_built *b = built_new();
    if (!b) return NULL;
    Falconlite__V1__GenerateStreamResponse *m = AR_NEW(
        b, Falconlite__V1__GenerateStreamResponse, FALCONLITE__V1__GENERATE_STREAM_RESPONSE__INIT);
    if (!m) return built_done(b, NULL);
    m->token = token_to(b, &ev->token);
    if (ev->kind == GEN_EVENT_END) {
        m->generated_text = ar_strdup(b, ev->generated_text);
        if (details) {
            Falconlite__V1__StreamDetails *d =
                AR_NEW(b, Falconlite__V1__StreamDetails, FALCONLITE__V1__STREAM_DETAILS__INIT);
            if (d) {
                d->has_finish_reason = 1, d->finish_reason = finish_to(ev->finish);
                d->has_generated_tokens = 1, d->generated_tokens = ev->generated_tokens;
                d->has_seed = ev->has_seed, d->seed = ev->seed;
            }
            m->details = d;
        }
    }
    return built_done(b, m);
}

pb_built *pb_api_tokenize_response(const tokenizer *tok, const int32_t *ids, int n) {
    pb_built *b = built_new();
    if (!b) return NULL;
    Falconlite__V1__TokenizeResponse *m =
        AR_NEW(b, Falconlite__V1__TokenizeResponse, FALCONLITE__V1__TOKENIZE_RESPONSE__INIT);
    if (!m) return built_done(b, NULL);
    m->n_ids = m->n_tokens = (size_t)n;
    m->ids = ar_alloc(b, sizeof(uint32_t) * (size_t)n);
    m->tokens = ar_alloc(b, sizeof(char *) * (size_t)n);
    for (int i = 0; m->ids && m->tokens && i < n; i++) {
        m->ids[i] = (uint32_t)ids[i];
        m->tokens[i] = ar_strdup(b, tokenizer_id_to_token(tok, ids[i]));
    }
    return built_done(b, m);
}

pb_built *pb_api_info_response(const server_info *in) {
    pb_built *b = built_new();
    if (!b) return NULL;
    Falconlite__V1__InfoResponse *m =
        AR_NEW(b, Falconlite__V1__InfoResponse, FALCONLITE__V1__INFO_RESPONSE__INIT);
    if (!m) return built_done(b, NULL);
    m->model_id = ar_strdup(b, in->model_id);
    m->model_sha = ar_strdup(b, in->model_sha);
    m->model_dtype = ar_strdup(b, in->model_dtype);
    m->model_device_type = ar_strdup(b, in->model_device_type);
    m->model_pipeline_tag = ar_strdup(b, in->model_pipeline_tag);
    m->has_max_concurrent_requests = 1, m->max_concurrent_requests = in->max_concurrent_requests;
    m->has_max_best_of = 1, m->max_best_of = in->max_best_of;
    m->has_max_stop_sequences = 1, m->max_stop_sequences = in->max_stop_sequences;
    m->has_max_input_length = 1, m->max_input_length = in->max_input_length;
    m->has_max_total_tokens = 1, m->max_total_tokens = in->max_total_tokens;
    m->has_waiting_served_ratio = 1, m->waiting_served_ratio = in->waiting_served_ratio;
    m->has_max_batch_total_tokens = 1, m->max_batch_total_tokens = in->max_batch_total_tokens;
    m->has_max_waiting_tokens = 1, m->max_waiting_tokens = in->max_waiting_tokens;
    m->has_validation_workers = 1, m->validation_workers = in->validation_workers;
    m->version = ar_strdup(b, in->version);
    m->sha = ar_strdup(b, in->sha);
    m->has_num_shard = 1, m->num_shard = in->num_shard;
    return built_done(b, m);
}

pb_built *pb_api_health_response(bool serving) {
    pb_built *b = built_new();
    if (!b) return NULL;
    Grpc__Health__V1__HealthCheckResponse *m = AR_NEW(
        b, Grpc__Health__V1__HealthCheckResponse, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT);
    if (m)
        m->status = serving ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                            : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
    return built_done(b, m);
}
