#include "shard/pb_convert.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "proto/shard.pb-c.h"

typedef Falconlite__Shard__V1__Request PbRequest;
typedef Falconlite__Shard__V1__Batch PbBatch;
typedef Falconlite__Shard__V1__Generation PbGeneration;
typedef Falconlite__Shard__V1__CachedBatch PbCachedBatch;

void svc_batch_clear(svc_batch *b) {
    for (int i = 0; i < b->n; i++) {
        free(b->reqs[i].input_ids);
        free(b->reqs[i].stop_ids);
    }
    free(b->reqs);
    memset(b, 0, sizeof *b);
}

// 0 is never a valid value of these parameters: read it as "unset".
static float or_one(float v) {
    return v == 0.0f ? 1.0f : v;
}

static fl_code request_decode(const PbRequest *pr, svc_request *r, fl_error *err) {
    r->id = pr->id;
    if (pr->n_input_ids == 0)
        return fl_error_set(err, FL_EINVAL, "request %llu: empty input_ids",
                            (unsigned long long)pr->id);
    r->n_input = (int)pr->n_input_ids;
    r->input_ids = malloc(pr->n_input_ids * sizeof(int32_t));
    if (!r->input_ids) return fl_error_set(err, FL_ENOMEM, "request: out of memory");
    for (size_t i = 0; i < pr->n_input_ids; i++)
        r->input_ids[i] = (int32_t)pr->input_ids[i];

    seq_params *g = &r->params;
    sampling_params_default(&g->sampling);
    const Falconlite__Shard__V1__NextTokenChooserParameters *np = pr->parameters;
    if (np) {
        g->sampling.temperature = or_one(np->temperature);
        g->sampling.top_k = (int)np->top_k;
        g->sampling.top_p = or_one(np->top_p);
        g->sampling.typical_p = or_one(np->typical_p);
        g->sampling.repetition_penalty = or_one(np->repetition_penalty);
        g->sampling.do_sample = np->do_sample;
        g->sampling.seed = np->seed;
        r->watermark = np->watermark;
    }
    const Falconlite__Shard__V1__StoppingCriteriaParameters *sp = pr->stopping_parameters;
    g->max_new_tokens = sp ? (int)sp->max_new_tokens : 0;
    g->ignore_eos = sp ? sp->ignore_eos_token : 0;
    if (sp && sp->n_stop_token_ids) {
        r->stop_ids = malloc(sp->n_stop_token_ids * sizeof(int32_t));
        if (!r->stop_ids) return fl_error_set(err, FL_ENOMEM, "request: out of memory");
        for (size_t i = 0; i < sp->n_stop_token_ids; i++)
            r->stop_ids[i] = (int32_t)sp->stop_token_ids[i];
        g->n_stop_ids = (int)sp->n_stop_token_ids;
    }
    g->stop_ids = r->stop_ids;
    g->prompt_logprobs = pr->prefill_logprobs;
    g->eos_id = -1; // the service fills in the model's
    return FL_OK;
}

static fl_code batch_decode(const PbBatch *pb, svc_batch *out, fl_error *err) {
    memset(out, 0, sizeof *out);
    if (!pb) return fl_error_set(err, FL_EINVAL, "missing batch");
    out->id = pb->id;
    out->prefill_chunk =
        pb->prefill_chunk_tokens > INT_MAX ? INT_MAX : (int)pb->prefill_chunk_tokens;
    out->reqs = calloc(pb->n_requests ? pb->n_requests : 1, sizeof *out->reqs);
    if (!out->reqs) return fl_error_set(err, FL_ENOMEM, "batch: out of memory");
    for (size_t i = 0; i < pb->n_requests; i++) {
        out->n = (int)i + 1;
        fl_code rc = request_decode(pb->requests[i], &out->reqs[i], err);
        if (rc != FL_OK) {
            svc_batch_clear(out);
            return rc;
        }
    }
    return FL_OK;
}

fl_code pb_prefill_request_decode(const ProtobufCMessage *msg, svc_batch *out, fl_error *err) {
    const Falconlite__Shard__V1__PrefillRequest *m = (const void *)msg;
    return batch_decode(m->batch, out, err);
}

fl_code pb_warmup_request_decode(const ProtobufCMessage *msg, svc_batch *out,
                                 uint32_t *max_total_tokens, fl_error *err) {
    const Falconlite__Shard__V1__WarmupRequest *m = (const void *)msg;
    *max_total_tokens = m->max_total_tokens;
    return batch_decode(m->batch, out, err);
}

uint64_t *pb_decode_request_ids(const ProtobufCMessage *msg, int *n) {
    const Falconlite__Shard__V1__DecodeRequest *m = (const void *)msg;
    uint64_t *ids = malloc((m->n_batches ? m->n_batches : 1) * sizeof *ids);
    *n = ids ? (int)m->n_batches : 0;
    for (int i = 0; i < *n; i++)
        ids[i] = m->batches[i]->id;
    return ids;
}

void pb_filter_request_decode(const ProtobufCMessage *msg, uint64_t *batch_id,
                              const uint64_t **keep_ids, int *n) {
    const Falconlite__Shard__V1__FilterBatchRequest *m = (const void *)msg;
    *batch_id = m->batch_id;
    *keep_ids = m->request_ids;
    *n = (int)m->n_request_ids;
}

void pb_clear_request_decode(const ProtobufCMessage *msg, const uint64_t **batch_ids, int *n) {
    const Falconlite__Shard__V1__ClearCacheRequest *m = (const void *)msg;
    *batch_ids = m->ids;
    *n = (int)m->n_ids;
}

void pb_reply_info(rpc_call *call, const svc_info *in) {
    Falconlite__Shard__V1__InfoResponse r = FALCONLITE__SHARD__V1__INFO_RESPONSE__INIT;
    r.requires_padding = 0;
    r.dtype = (char *)in->dtype;
    r.device_type = (char *)in->device_type;
    r.model_type = (char *)in->model_type;
    r.vocab_size = in->vocab_size;
    r.eos_token_id = in->eos_token_id;
    r.rank = in->rank;
    r.world_size = in->world_size;
    r.block_size = in->block_size;
    r.max_total_tokens = in->max_total_tokens;
    r.free_tokens = in->free_tokens;
    r.max_position_embeddings = in->max_position_embeddings;
    r.rope_scaling = (char *)in->rope_scaling;
    rpc_call_finish(call, &r.base);
}

void pb_reply_empty(rpc_call *call, shard_method m) {
    // Health and ClearCache responses are empty messages: any empty message encodes the same.
    Falconlite__Shard__V1__HealthResponse health = FALCONLITE__SHARD__V1__HEALTH_RESPONSE__INIT;
    Falconlite__Shard__V1__ClearCacheResponse clear =
        FALCONLITE__SHARD__V1__CLEAR_CACHE_RESPONSE__INIT;
    rpc_call_finish(call, m == SHARD_CLEAR_CACHE ? &clear.base : &health.base);
}

void pb_reply_discovery(rpc_call *call, char *const *urls, int n) {
    Falconlite__Shard__V1__ServiceDiscoveryResponse r =
        FALCONLITE__SHARD__V1__SERVICE_DISCOVERY_RESPONSE__INIT;
    r.n_urls = (size_t)n;
    r.urls = (char **)urls;
    rpc_call_finish(call, &r.base);
}

static void cached_batch_fill(PbCachedBatch *pb, const svc_cached_batch *b) {
    falconlite__shard__v1__cached_batch__init(pb);
    pb->id = b->id;
    pb->n_request_ids = (size_t)b->n;
    pb->request_ids = (uint64_t *)b->request_ids;
    pb->size = (uint32_t)b->n;
    pb->max_tokens = b->max_tokens;
}

void pb_reply_filter(rpc_call *call, const svc_cached_batch *batch) {
    Falconlite__Shard__V1__FilterBatchResponse r =
        FALCONLITE__SHARD__V1__FILTER_BATCH_RESPONSE__INIT;
    PbCachedBatch cb;
    cached_batch_fill(&cb, batch);
    r.batch = &cb;
    rpc_call_finish(call, &r.base);
}

void pb_reply_warmup(rpc_call *call, uint32_t max_supported_total_tokens) {
    Falconlite__Shard__V1__WarmupResponse r = FALCONLITE__SHARD__V1__WARMUP_RESPONSE__INIT;
    r.max_supported_total_tokens = max_supported_total_tokens;
    rpc_call_finish(call, &r.base);
}

static Falconlite__Shard__V1__FinishReason finish_reason(gen_finish f) {
    switch (f) {
    case GEN_FINISH_EOS:
        return FALCONLITE__SHARD__V1__FINISH_REASON__FINISH_REASON_EOS_TOKEN;
    case GEN_FINISH_STOP:
        return FALCONLITE__SHARD__V1__FINISH_REASON__FINISH_REASON_STOP_SEQUENCE;
    default:
        return FALCONLITE__SHARD__V1__FINISH_REASON__FINISH_REASON_LENGTH;
    }
}

void pb_reply_step(rpc_call *call, shard_method m, const svc_step *step) {
    int n = step->n_gens;
    PbGeneration *gens = calloc(n ? (size_t)n : 1, sizeof *gens);
    PbGeneration **gen_ptrs = calloc(n ? (size_t)n : 1, sizeof *gen_ptrs);
    Falconlite__Shard__V1__PrefillTokens *pts = calloc(n ? (size_t)n : 1, sizeof *pts);
    Falconlite__Shard__V1__GenerationEnd *ends = calloc(n ? (size_t)n : 1, sizeof *ends);
    uint32_t **pt_ids = calloc(n ? (size_t)n : 1, sizeof *pt_ids);
    if (!gens || !gen_ptrs || !pts || !ends || !pt_ids) {
        rpc_call_fail(call, GRPC_STATUS_INTERNAL, "shard: out of memory building the response");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        const svc_generation *g = &step->gens[i];
        PbGeneration *pg = &gens[i];
        falconlite__shard__v1__generation__init(pg);
        pg->request_id = g->request_id;
        pg->token_id = (uint32_t)g->token;
        pg->token_logprob = g->logprob;
        pg->token_is_special = g->is_special;
        if (g->n_prefill > 0) {
            Falconlite__Shard__V1__PrefillTokens *pt = &pts[i];
            falconlite__shard__v1__prefill_tokens__init(pt);
            pt_ids[i] = malloc((size_t)g->n_prefill * sizeof(uint32_t));
            if (pt_ids[i]) {
                for (int k = 0; k < g->n_prefill; k++)
                    pt_ids[i][k] = (uint32_t)g->prefill_ids[k];
                pt->n_ids = pt->n_logprobs = (size_t)g->n_prefill;
                pt->ids = pt_ids[i];
                pt->logprobs = (float *)g->prefill_logprobs;
                pg->prefill_tokens = pt;
            }
        }
        if (g->finish != GEN_RUNNING) {
            Falconlite__Shard__V1__GenerationEnd *e = &ends[i];
            falconlite__shard__v1__generation_end__init(e);
            e->finish_reason = finish_reason(g->finish);
            e->generated_tokens = (uint32_t)g->generated_tokens;
            e->sampled = g->sampled;
            e->seed = g->seed;
            pg->end = e;
        }
        gen_ptrs[i] = pg;
    }
    PbCachedBatch cb;
    if (step->has_batch) cached_batch_fill(&cb, &step->batch);
    if (m == SHARD_PREFILL) {
        Falconlite__Shard__V1__PrefillResponse r = FALCONLITE__SHARD__V1__PREFILL_RESPONSE__INIT;
        r.n_generations = (size_t)n;
        r.generations = gen_ptrs;
        r.batch = step->has_batch ? &cb : NULL;
        r.prefix_lookup_tokens = step->prefix_lookup_tokens;
        r.prefix_hit_tokens = step->prefix_hit_tokens;
        rpc_call_finish(call, &r.base);
    } else {
        Falconlite__Shard__V1__DecodeResponse r = FALCONLITE__SHARD__V1__DECODE_RESPONSE__INIT;
        r.n_generations = (size_t)n;
        r.generations = gen_ptrs;
        r.batch = step->has_batch ? &cb : NULL;
        rpc_call_finish(call, &r.base);
    }
out:
    if (pt_ids)
        for (int i = 0; i < n; i++)
            free(pt_ids[i]);
    free(pt_ids);
    free(ends);
    free(pts);
    free(gen_ptrs);
    free(gens);
}
