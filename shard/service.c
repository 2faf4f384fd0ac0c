#include "shard/service.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/safetensors.h"
#include "kernels/backend.h"
#include "proto/rpc_server.h"
#include "shard/engine/comm.h"
#include "shard/engine/model.h"
#include "shard/pb_convert.h"
#include "shard/service_batch.h"

#define COMM_JOIN_TIMEOUT_MS 600000 // the other ranks may still be loading their weights
#define STOP_GRACE_MS        2000
#define MAX_KV_TOKENS        (1 << 22)

struct shard_service {
    shard_options opt;
    backend *be;
    comm *comm;
    model *m;
    const model_config *cfg;
    const char *ckpt_dtype; // "float16", "bfloat16" or "float32" (Info)
    kv_cache *kv;           // NULL until Warmup
    batch_cache cache;
    rpc_server *srv;
    char **urls; // [world] "unix:<uds_path>-<rank>"
    int failed;
};

int shard_service_failed(const shard_service *s) {
    return __atomic_load_n(&s->failed, __ATOMIC_ACQUIRE);
}

// Replies with the error; a backend error leaves the device or the ranks in an unknown state, so
// the shard then asks the main thread to stop it (it exits non-zero and the router restarts it).
static void reply_error(shard_service *s, rpc_call *call, const fl_error *err) {
    log_error("%s: %s", rpc_call_method(call), err->msg);
    rpc_call_fail(call, GRPC_STATUS_INTERNAL, err->msg);
    if (err->code == FL_EBACKEND) {
        __atomic_store_n(&s->failed, 1, __ATOMIC_RELEASE);
        kill(getpid(), SIGTERM);
    }
}

// ---- Info, Health, ServiceDiscovery

static void on_info(rpc_call *call, const ProtobufCMessage *req, void *user) {
    shard_service *s = user;
    const model_config *cfg = s->cfg;
    svc_info in = {
        .dtype = s->ckpt_dtype,
        .device_type = s->be->name,
        .model_type = cfg->model_type,
        .rope_scaling = rope_mode_name(cfg->rope.mode),
        .vocab_size = (uint32_t)cfg->n_vocab,
        .eos_token_id = (uint32_t)cfg->eos_token_id,
        .rank = (uint32_t)s->opt.rank,
        .world_size = (uint32_t)s->opt.world,
        .block_size = KV_BLOCK_SIZE,
        .max_total_tokens = s->kv ? (uint32_t)s->kv->n_blocks * KV_BLOCK_SIZE : 0,
        .free_tokens = s->kv ? (uint32_t)kv_cache_free_blocks(s->kv) * KV_BLOCK_SIZE : 0,
        .max_position_embeddings = (uint32_t)cfg->max_position_embeddings,
    };
    pb_reply_info(call, &in);
}

static void on_health(rpc_call *call, const ProtobufCMessage *req, void *user) {
    shard_service *s = user;
    fl_error err;
    if (shard_service_failed(s) || s->be->sync(s->be, &err) != FL_OK) {
        rpc_call_fail(call, GRPC_STATUS_INTERNAL, "shard backend failed");
        return;
    }
    pb_reply_empty(call, SHARD_HEALTH);
}

static void on_discovery(rpc_call *call, const ProtobufCMessage *req, void *user) {
    shard_service *s = user;
    pb_reply_discovery(call, s->urls, s->opt.world);
}

// ---- ClearCache, FilterBatch

static void on_clear_cache(rpc_call *call, const ProtobufCMessage *req, void *user) {
    shard_service *s = user;
    const uint64_t *ids;
    int n;
    pb_clear_request_decode(req, &ids, &n);
    if (n == 0) {
        batch_cache_clear(&s->cache, s->kv);
    } else {
        // Unknown ids are fine: after a failed Decode the router clears ids that were merged away.
        for (int i = 0; i < n; i++)
            sbatch_free(batch_cache_take(&s->cache, ids[i]), s->kv);
    }
    pb_reply_empty(call, SHARD_CLEAR_CACHE);
}

// The CachedBatch view of b; ids must hold b->n entries.
static svc_cached_batch cached_view(const sbatch *b, uint64_t *ids) {
    for (int i = 0; i < b->n; i++)
        ids[i] = b->reqs[i]->id;
    return (svc_cached_batch){b->id, ids, b->n, sbatch_reserved_tokens(b)};
}

static void on_filter_batch(rpc_call *call, const ProtobufCMessage *req, void *user) {
    shard_service *s = user;
    uint64_t id;
    const uint64_t *keep;
    int n_keep;
    fl_error err;
    pb_filter_request_decode(req, &id, &keep, &n_keep);
    sbatch *b = batch_cache_get(&s->cache, id);
    if (!b) {
        fl_error_set(&err, FL_ENOTFOUND, "FilterBatch: batch %llu not found",
                     (unsigned long long)id);
        reply_error(s, call, &err);
        return;
    }
    if (sbatch_filter(b, s->kv, keep, n_keep, &err) != FL_OK) {
        reply_error(s, call, &err);
        return;
    }
    uint64_t *ids = malloc((size_t)(b->n ? b->n : 1) * sizeof *ids);
    if (!ids) {
        fl_error_set(&err, FL_ENOMEM, "FilterBatch: out of memory");
        reply_error(s, call, &err);
        return;
    }
    svc_cached_batch view = cached_view(b, ids);
    pb_reply_filter(call, &view);
    free(ids);
    if (b->n == 0) sbatch_free(batch_cache_take(&s->cache, id), s->kv);
}

// ---- Prefill, Decode, Warmup

// Creates the batch's requests in the KV cache (reserving prompt + max_new_tokens each).
// FL_ECAPACITY when the pool is short; nothing is kept on failure.
static fl_code batch_admit(shard_service *s, kv_cache *kv, const svc_batch *in, sbatch **out,
                           fl_error *err) {
    sbatch *b = sbatch_create(in->id, in->n);
    if (!b)
        return fl_error_set(err, FL_ENOMEM, "batch %llu: out of memory",
                            (unsigned long long)in->id);
    b->prefill_chunk = in->prefill_chunk;
    for (int i = 0; i < in->n; i++) {
        svc_request *r = &in->reqs[i];
        if (r->watermark) {
            sbatch_free(b, kv);
            return fl_error_set(err, FL_EUNSUPPORTED, "request %llu: watermark is not supported",
                                (unsigned long long)r->id);
        }
        r->params.eos_id = s->cfg->eos_token_id;
        fl_code rc = seq_request_create(s->m, kv, r->id, r->input_ids, r->n_input, &r->params,
                                        &b->reqs[b->n], err);
        if (rc != FL_OK) {
            sbatch_free(b, kv);
            return fl_error_wrap(err, "batch %llu", (unsigned long long)in->id);
        }
        b->n++;
    }
    *out = b;
    return FL_OK;
}

// Runs one generation step over b (prefilling requests take their next prompt chunk within the
// batch's budget), replies with the generations of the requests that produced a token (rank 0)
// and the remaining batch, then releases the requests that finished. Returns the step's status.
static fl_code batch_step_reply(shard_service *s, sbatch *b, rpc_call *call, shard_method m,
                                fl_error *err) {
    fl_code rc = gen_batch_step_chunked(s->m, s->kv, b->reqs, b->n, b->prefill_chunk, err);
    if (rc != FL_OK) return rc;
    svc_generation *gens = calloc((size_t)b->n, sizeof *gens);
    seq_request **done = calloc((size_t)b->n, sizeof *done);
    uint64_t *ids = calloc((size_t)b->n, sizeof *ids);
    if (!gens || !done || !ids) {
        free(gens);
        free(done);
        free(ids);
        return fl_error_set(err, FL_ENOMEM, "step: out of memory");
    }
    int n_gens = 0, n_done = 0, n_keep = 0;
    uint32_t lookup = 0, hit = 0;
    for (int i = 0; i < b->n; i++) {
        seq_request *r = b->reqs[i];
        if (m == SHARD_PREFILL) // a request is in exactly one Prefill
            lookup += (uint32_t)r->n_prefix_lookup, hit += (uint32_t)r->n_prefix_hit;
        if (s->opt.rank == 0 && !seq_request_prefilling(r)) { // else no token yet: no Generation
            svc_generation *g = &gens[n_gens++];
            g->request_id = r->id;
            g->token = seq_request_last_token(r);
            g->logprob = r->logprobs[r->n_generated - 1];
            g->is_special = g->token == s->cfg->eos_token_id;
            if (r->n_generated == 1 && r->params.prompt_logprobs) {
                g->prefill_ids = r->tokens;
                g->prefill_logprobs = r->prompt_logprobs;
                g->n_prefill = r->n_prompt;
            }
            g->finish = r->finish;
            g->generated_tokens = r->n_generated;
            g->sampled = sampling_params_is_sampling(&r->params.sampling);
            g->seed = r->params.sampling.seed;
        }
        if (r->finish != GEN_RUNNING)
            done[n_done++] = r;
        else
            b->reqs[n_keep++] = r;
    }
    b->n = n_keep;
    svc_step step = {.gens = gens,
                     .n_gens = n_gens,
                     .has_batch = b->n > 0,
                     .batch = cached_view(b, ids),
                     .prefix_lookup_tokens = lookup,
                     .prefix_hit_tokens = hit};
    pb_reply_step(call, m, &step);
    for (int i = 0; i < n_done; i++)
        seq_request_free(s->kv, done[i]);
    free(gens);
    free(done);
    free(ids);
    return FL_OK;
}

static void on_prefill(rpc_call *call, const ProtobufCMessage *req, void *user) {
    shard_service *s = user;
    fl_error err;
    svc_batch in;
    sbatch *b = NULL;
    fl_code rc = pb_prefill_request_decode(req, &in, &err);
    if (rc != FL_OK) {
        reply_error(s, call, &err);
        return;
    }
    if (!s->kv)
        rc = fl_error_set(&err, FL_EINVAL, "Prefill before Warmup: the KV cache is not sized yet");
    else if (in.n == 0)
        rc = fl_error_set(&err, FL_EINVAL, "Prefill: batch %llu is empty",
                          (unsigned long long)in.id);
    else if (batch_cache_get(&s->cache, in.id))
        rc = fl_error_set(&err, FL_EINVAL, "Prefill: batch %llu is already cached",
                          (unsigned long long)in.id);
    if (rc == FL_OK) rc = batch_admit(s, s->kv, &in, &b, &err);
    svc_batch_clear(&in);
    if (rc == FL_OK) {
        log_debug("prefill batch=%llu size=%d", (unsigned long long)b->id, b->n);
        rc = batch_step_reply(s, b, call, SHARD_PREFILL, &err);
    }
    if (rc != FL_OK) {
        sbatch_free(b, s->kv);
        reply_error(s, call, &err);
        return;
    }
    // The id was checked above, so only memory can fail here; the batch is then lost and the
    // router's next Decode of it reports "not found".
    if (b->n == 0 || batch_cache_put(&s->cache, b, &err) != FL_OK) sbatch_free(b, s->kv);
}

static void on_decode(rpc_call *call, const ProtobufCMessage *req, void *user) {
    shard_service *s = user;
    fl_error err;
    int n;
    uint64_t *ids = pb_decode_request_ids(req, &n);
    fl_code rc = FL_OK;
    if (!ids)
        rc = fl_error_set(&err, FL_ENOMEM, "Decode: out of memory");
    else if (n == 0)
        rc = fl_error_set(&err, FL_EINVAL, "Decode: no batches");
    for (int i = 0; rc == FL_OK && i < n; i++) {
        if (!batch_cache_get(&s->cache, ids[i]))
            rc = fl_error_set(&err, FL_ENOTFOUND, "Decode: batch %llu not found",
                              (unsigned long long)ids[i]);
        for (int j = 0; rc == FL_OK && j < i; j++)
            if (ids[j] == ids[i])
                rc = fl_error_set(&err, FL_EINVAL, "Decode: batch %llu listed twice",
                                  (unsigned long long)ids[i]);
    }
    sbatch *b = NULL;
    if (rc == FL_OK) {
        // Merge into the first batch (TGI concatenate); the others' ids stop existing.
        b = batch_cache_get(&s->cache, ids[0]);
        for (int i = 1; rc == FL_OK && i < n; i++) {
            sbatch *o = batch_cache_take(&s->cache, ids[i]);
            rc = sbatch_absorb(b, o, &err);
            if (rc != FL_OK)
                batch_cache_put(&s->cache, o, NULL); // back in place, unmerged
            else
                sbatch_free(o, s->kv);
        }
    }
    free(ids);
    if (rc == FL_OK) {
        log_debug("decode batch=%llu merged=%d size=%d", (unsigned long long)b->id, n, b->n);
        rc = batch_step_reply(s, b, call, SHARD_DECODE, &err);
    }
    if (rc == FL_OK && b->n == 0) sbatch_free(batch_cache_take(&s->cache, b->id), s->kv);
    if (rc != FL_OK) reply_error(s, call, &err);
}

// Blocks of the KV pool, sized once the forward's scratch is allocated: what the backend has free
// less a margin, up to MAX_KV_TOKENS (far above any real deployment: FalconLite on one 80 GB GPU
// holds ~0.5M tokens; it keeps a tiny model from taking a whole GPU). The CPU backend takes only
// what the router asked for plus block-rounding slack, since its memory is the host's.
static fl_code warmup_pool_blocks(shard_service *s, size_t bytes_per_token,
                                  uint32_t max_total_tokens, int *out, fl_error *err) {
    size_t avail = s->be->mem_available(s->be);
    size_t margin = avail / 20 + ((size_t)256 << 20);
    double fit = avail > margin ? (double)((avail - margin) / bytes_per_token) : 0.0;
    double want = fit < MAX_KV_TOKENS ? fit : MAX_KV_TOKENS;
    if (strcmp(s->be->name, "cpu") == 0) {
        double asked = (double)max_total_tokens * 1.25 + 16.0 * KV_BLOCK_SIZE;
        if (asked < want) want = asked;
    }
    float blocks = (float)floor(want / KV_BLOCK_SIZE);
    if (s->comm) { // every rank must offer the same capacity: take the smallest
        float all[64];
        if (s->opt.world > 64) return fl_error_set(err, FL_EINVAL, "Warmup: world too large");
        fl_code rc = comm_all_gather_f32(s->comm, &blocks, all, 1, err);
        if (rc != FL_OK) return rc;
        for (int r = 0; r < s->opt.world; r++)
            if (all[r] < blocks) blocks = all[r];
    }
    if ((double)blocks * KV_BLOCK_SIZE < max_total_tokens)
        return fl_error_set(err, FL_ECAPACITY,
                            "Warmup: not enough memory to handle %u total tokens: the KV cache "
                            "holds %.0f tokens (%zu bytes free, %zu bytes per token, at most %d)",
                            max_total_tokens, (double)blocks * KV_BLOCK_SIZE, avail,
                            bytes_per_token, MAX_KV_TOKENS);
    *out = (int)blocks;
    return FL_OK;
}

static void on_warmup(rpc_call *call, const ProtobufCMessage *req, void *user) {
    shard_service *s = user;
    fl_error err;
    svc_batch in;
    uint32_t max_total;
    fl_code rc = pb_warmup_request_decode(req, &in, &max_total, &err);
    if (rc != FL_OK) {
        reply_error(s, call, &err);
        return;
    }
    batch_cache_clear(&s->cache, s->kv);
    kv_cache_free(s->kv);
    s->kv = NULL;
    if (max_total == 0) rc = fl_error_set(&err, FL_EINVAL, "Warmup: max_total_tokens is 0");

    // Run the batch once in a pool just big enough for it, so the forward allocates its scratch
    // at the largest prefill size before the free memory is measured.
    int need = 1;
    for (int i = 0; i < in.n; i++)
        need += (in.reqs[i].n_input + in.reqs[i].params.max_new_tokens + KV_BLOCK_SIZE - 1) /
                KV_BLOCK_SIZE;
    kv_cache *tmp = NULL;
    if (rc == FL_OK) rc = model_kv_cache_create(s->m, need, &tmp, &err);
    sbatch *b = NULL;
    if (rc == FL_OK && in.n > 0) rc = batch_admit(s, tmp, &in, &b, &err);
    if (rc == FL_OK && b) rc = gen_batch_step(s->m, tmp, b->reqs, b->n, &err);
    sbatch_free(b, tmp);
    size_t per_token = tmp ? kv_cache_bytes_per_token(tmp) : 0;
    kv_cache_free(tmp);
    svc_batch_clear(&in);

    int blocks = 0;
    if (rc == FL_OK) rc = warmup_pool_blocks(s, per_token, max_total, &blocks, &err);
    if (rc == FL_OK) rc = model_kv_cache_create(s->m, blocks, &s->kv, &err);
    if (rc != FL_OK) {
        reply_error(s, call, &err);
        return;
    }
    kv_cache_set_prefix_caching(s->kv, s->opt.prefix_cache);
    log_info("warmup done: kv_blocks=%d tokens=%d bytes_per_token=%zu prefix_cache=%s", blocks,
             blocks * KV_BLOCK_SIZE, per_token, s->opt.prefix_cache ? "on" : "off");
    pb_reply_warmup(call, (uint32_t)blocks * KV_BLOCK_SIZE);
}

// ---- lifetime

static char *dup_or_null(const char *s) {
    return s ? strdup(s) : NULL;
}

// The checkpoint's dtype as Info reports it (TGI's /info shows it as "torch.<dtype>"): the
// floating-point type holding most of the weights' elements. GPTQ checkpoints report "float16",
// as TGI 0.9.2 does (their scales and activations are fp16).
static const char *checkpoint_dtype(const char *dir, const model_config *cfg) {
    if (cfg->quant.gptq) return "float16";
    safetensors *st = NULL;
    fl_error err = {0};
    if (safetensors_open_dir(dir, &st, &err) != FL_OK) return "float32"; // loaded: not reached
    double elems[3] = {0}; // F32, F16, BF16
    for (int i = 0; i < safetensors_count(st); i++) {
        const st_tensor *t = safetensors_at(st, i);
        if (t->type == DTYPE_F32 || t->type == DTYPE_F16 || t->type == DTYPE_BF16)
            elems[t->type] += (double)t->nbytes / dtype_size(t->type);
    }
    safetensors_close(st);
    if (elems[DTYPE_F16] >= elems[DTYPE_F32] && elems[DTYPE_F16] >= elems[DTYPE_BF16] &&
        elems[DTYPE_F16] > 0)
        return "float16";
    return elems[DTYPE_BF16] > elems[DTYPE_F32] ? "bfloat16" : "float32";
}

fl_code shard_service_create(const shard_options *opt, shard_service **out, fl_error *err) {
    *out = NULL;
    shard_service *s = calloc(1, sizeof *s);
    if (!s) return fl_error_set(err, FL_ENOMEM, "shard: out of memory");
    s->opt = *opt;
    s->opt.model_dir = dup_or_null(opt->model_dir);
    s->opt.uds_path = dup_or_null(opt->uds_path);
    s->opt.comm_id = dup_or_null(opt->comm_id);
    s->opt.comm_dir = dup_or_null(opt->comm_dir);
    s->opt.backend = dup_or_null(opt->backend);
    s->opt.rope_override = NULL; // only needed while loading
    fl_code rc = FL_OK;
    s->urls = calloc((size_t)opt->world, sizeof *s->urls);
    for (int r = 0; s->urls && r < opt->world; r++) {
        size_t n = strlen(opt->uds_path) + 32;
        s->urls[r] = malloc(n);
        if (s->urls[r]) snprintf(s->urls[r], n, "unix:%s-%d", opt->uds_path, r);
    }

    // CUDA takes device 0: main() has pinned this rank's GPU as the only visible one.
    if (strcmp(opt->backend, "cpu") == 0)
        s->be = backend_cpu_create(opt->threads, err);
    else
        s->be = backend_create(opt->backend, err);
    if (!s->be) rc = err ? err->code : FL_EBACKEND;
    if (rc == FL_OK && opt->world > 1) {
        if (!opt->comm_id)
            rc = fl_error_set(err, FL_EINVAL, "shard: --comm-id is required when world > 1");
        else
            rc = comm_create(s->be, opt->rank, opt->world, opt->comm_id, opt->comm_dir,
                             opt->nccl_stream, COMM_JOIN_TIMEOUT_MS, &s->comm, err);
    }
    if (rc == FL_OK) {
        model_options mo = {.rank = opt->rank,
                            .world = opt->world,
                            .comm = s->comm,
                            .rope_override = opt->rope_override,
                            .gptq = opt->gptq};
        rc = model_load(opt->model_dir, &mo, s->be, &s->m, err);
    }
    if (rc != FL_OK) {
        shard_service_free(s);
        return rc;
    }
    s->cfg = model_get_config(s->m);
    s->ckpt_dtype = checkpoint_dtype(opt->model_dir, s->cfg);
    *out = s;
    return FL_OK;
}

fl_code shard_service_start(shard_service *s, fl_error *err) {
    static const rpc_handler_fn handlers[SHARD_N_METHODS] = {
        [SHARD_INFO] = on_info,
        [SHARD_HEALTH] = on_health,
        [SHARD_SERVICE_DISCOVERY] = on_discovery,
        [SHARD_CLEAR_CACHE] = on_clear_cache,
        [SHARD_FILTER_BATCH] = on_filter_batch,
        [SHARD_WARMUP] = on_warmup,
        [SHARD_PREFILL] = on_prefill,
        [SHARD_DECODE] = on_decode,
    };
    s->srv = rpc_server_create(err);
    if (!s->srv) return err ? err->code : FL_ENOMEM;
    for (int i = 0; i < SHARD_N_METHODS; i++) {
        const shard_method_spec *spec = shard_method_get(i);
        fl_code rc = rpc_server_add_method(s->srv, spec->path, spec->request, handlers[i], s, err);
        if (rc != FL_OK) return rc;
    }
    fl_code rc = rpc_server_listen(s->srv, s->urls[s->opt.rank], err);
    if (rc == FL_OK) rc = rpc_server_start(s->srv, err);
    if (rc == FL_OK) log_info("serving on %s", s->urls[s->opt.rank]);
    return rc;
}

void shard_service_free(shard_service *s) {
    if (!s) return;
    if (s->srv) {
        rpc_server_shutdown(s->srv, STOP_GRACE_MS);
        rpc_server_free(s->srv);
    }
    batch_cache_clear(&s->cache, s->kv);
    kv_cache_free(s->kv);
    model_free(s->m);
    comm_free(s->comm);
    if (s->be) s->be->free(s->be);
    if (s->urls)
        for (int r = 0; r < s->opt.world; r++)
            free(s->urls[r]);
    free(s->urls);
    free((char *)s->opt.model_dir);
    free((char *)s->opt.uds_path);
    free((char *)s->opt.comm_id);
    free((char *)s->opt.comm_dir);
    free((char *)s->opt.backend);
    free(s);
}
