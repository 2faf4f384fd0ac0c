#include "router/pb_shard.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/shard.pb-c.h"

pb_built *pb_shard_empty_request(shard_method m) {
    pb_built *b = pb_built_new();
    if (!b) return NULL;
    const ProtobufCMessageDescriptor *d = shard_method_get(m)->request;
    ProtobufCMessage *msg = pb_built_alloc(b, d->sizeof_message);
    if (msg) protobuf_c_message_init(d, msg);
    return pb_built_done(b, msg);
}

pb_built *pb_shard_clear_request(const uint64_t *ids, int n) {
    pb_built *b = pb_built_new();
    if (!b) return NULL;
    Falconlite__Shard__V1__ClearCacheRequest *m =
        PB_BUILT_NEW(b, Falconlite__Shard__V1__ClearCacheRequest,
                     FALCONLITE__SHARD__V1__CLEAR_CACHE_REQUEST__INIT);
    if (m && n > 0) {
        m->ids = pb_built_alloc(b, sizeof(uint64_t) * (size_t)n);
        if (m->ids) memcpy(m->ids, ids, sizeof(uint64_t) * (size_t)n);
        m->n_ids = (size_t)n;
    }
    return pb_built_done(b, m);
}

pb_built *pb_shard_filter_request(uint64_t batch_id, const uint64_t *keep, int n) {
    pb_built *b = pb_built_new();
    if (!b) return NULL;
    Falconlite__Shard__V1__FilterBatchRequest *m =
        PB_BUILT_NEW(b, Falconlite__Shard__V1__FilterBatchRequest,
                     FALCONLITE__SHARD__V1__FILTER_BATCH_REQUEST__INIT);
    if (m) {
        m->batch_id = batch_id;
        m->request_ids = pb_built_alloc(b, sizeof(uint64_t) * (size_t)n);
        if (m->request_ids) memcpy(m->request_ids, keep, sizeof(uint64_t) * (size_t)n);
        m->n_request_ids = (size_t)n;
    }
    return pb_built_done(b, m);
}

static Falconlite__Shard__V1__Batch *batch_build(pb_built *b, const shard_batch *sb) {
    Falconlite__Shard__V1__Batch *m =
        PB_BUILT_NEW(b, Falconlite__Shard__V1__Batch, FALCONLITE__SHARD__V1__BATCH__INIT);
    if (!m) return NULL;
    m->id = sb->id;
    m->size = (uint32_t)sb->n;
    m->max_tokens = sb->max_tokens;
    m->prefill_chunk_tokens = sb->prefill_chunk_tokens;
    m->n_requests = (size_t)sb->n;
    m->requests = pb_built_alloc(b, sizeof(void *) * (size_t)sb->n);
    if (!m->requests) return NULL;
    for (int i = 0; i < sb->n; i++) {
        const shard_request *r = &sb->requests[i];
        const gen_params *p = r->params;
        Falconlite__Shard__V1__Request *q =
            PB_BUILT_NEW(b, Falconlite__Shard__V1__Request, FALCONLITE__SHARD__V1__REQUEST__INIT);
        Falconlite__Shard__V1__NextTokenChooserParameters *np =
            PB_BUILT_NEW(b, Falconlite__Shard__V1__NextTokenChooserParameters,
                         FALCONLITE__SHARD__V1__NEXT_TOKEN_CHOOSER_PARAMETERS__INIT);
        Falconlite__Shard__V1__StoppingCriteriaParameters *sp =
            PB_BUILT_NEW(b, Falconlite__Shard__V1__StoppingCriteriaParameters,
                         FALCONLITE__SHARD__V1__STOPPING_CRITERIA_PARAMETERS__INIT);
        uint32_t *ids = pb_built_alloc(b, sizeof(uint32_t) * (size_t)r->n_input);
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
    pb_built *b = pb_built_new();
    if (!b) return NULL;
    Falconlite__Shard__V1__PrefillRequest *m = PB_BUILT_NEW(
        b, Falconlite__Shard__V1__PrefillRequest, FALCONLITE__SHARD__V1__PREFILL_REQUEST__INIT);
    if (m) m->batch = batch_build(b, sb);
    return pb_built_done(b, m && m->batch ? m : NULL);
}

pb_built *pb_shard_warmup_request(const shard_batch *sb, uint32_t max_total_tokens) {
    pb_built *b = pb_built_new();
    if (!b) return NULL;
    Falconlite__Shard__V1__WarmupRequest *m = PB_BUILT_NEW(
        b, Falconlite__Shard__V1__WarmupRequest, FALCONLITE__SHARD__V1__WARMUP_REQUEST__INIT);
    if (m) {
        m->batch = batch_build(b, sb);
        m->max_total_tokens = max_total_tokens;
    }
    return pb_built_done(b, m && m->batch ? m : NULL);
}

pb_built *pb_shard_decode_request(const cached_batch *batches, int n) {
    pb_built *b = pb_built_new();
    if (!b) return NULL;
    Falconlite__Shard__V1__DecodeRequest *m = PB_BUILT_NEW(
        b, Falconlite__Shard__V1__DecodeRequest, FALCONLITE__SHARD__V1__DECODE_REQUEST__INIT);
    if (!m) return pb_built_done(b, NULL);
    m->n_batches = (size_t)n;
    m->batches = pb_built_alloc(b, sizeof(void *) * (size_t)n);
    for (int i = 0; m->batches && i < n; i++) {
        Falconlite__Shard__V1__CachedBatch *c = PB_BUILT_NEW(
            b, Falconlite__Shard__V1__CachedBatch, FALCONLITE__SHARD__V1__CACHED_BATCH__INIT);
        if (!c) break;
        c->id = batches[i].id;
        c->size = (uint32_t)batches[i].n;
        c->max_tokens = batches[i].max_tokens;
        c->n_request_ids = (size_t)batches[i].n;
        c->request_ids = pb_built_alloc(b, sizeof(uint64_t) * (size_t)batches[i].n);
        if (c->request_ids)
            memcpy(c->request_ids, batches[i].request_ids, sizeof(uint64_t) * (size_t)batches[i].n);
        m->batches[i] = c;
    }
    return pb_built_done(b, m);
}

static fl_code cached_from(const Falconlite__Shard__V1__CachedBatch *c, cached_batch *out,
                           fl_error *err) {
    out->id = c->id;
    out->n = (int)c->n_request_ids;
    out->max_tokens = c->max_tokens;
    out->request_ids = malloc(sizeof(uint64_t) * (c->n_request_ids ? c->n_request_ids : 1));
    if (!out->request_ids) return fl_error_set(err, FL_ENOMEM, "shard response: out of memory");
    // An empty repeated field decodes as a NULL array: memcpy must not see it.
    if (c->n_request_ids)
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

void pb_shard_prefill_prefix_counts(const ProtobufCMessage *resp, uint32_t *lookup_tokens,
                                    uint32_t *hit_tokens) {
    const Falconlite__Shard__V1__PrefillResponse *r = (const void *)resp;
    *lookup_tokens = r->prefix_lookup_tokens;
    *hit_tokens = r->prefix_hit_tokens;
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
    out->free_tokens = r->free_tokens;
}
