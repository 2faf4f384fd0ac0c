#include "shard/service_batch.h"

#include <stdlib.h>

sbatch *sbatch_create(uint64_t id, int cap) {
    sbatch *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->id = id;
    b->cap = cap > 0 ? cap : 1;
    b->reqs = calloc((size_t)b->cap, sizeof *b->reqs);
    if (!b->reqs) {
        free(b);
        return NULL;
    }
    return b;
}

void sbatch_free(sbatch *b, kv_cache *kv) {
    if (!b) return;
    for (int i = 0; i < b->n; i++)
        seq_request_free(kv, b->reqs[i]);
    free(b->reqs);
    free(b);
}

fl_code sbatch_absorb(sbatch *dst, sbatch *src, fl_error *err) {
    if (dst->n + src->n > dst->cap) {
        int cap = dst->n + src->n;
        seq_request **r = realloc(dst->reqs, (size_t)cap * sizeof *r);
        if (!r)
            return fl_error_set(err, FL_ENOMEM, "batch %llu: out of memory merging",
                                (unsigned long long)dst->id);
        dst->reqs = r;
        dst->cap = cap;
    }
    for (int i = 0; i < src->n; i++)
        dst->reqs[dst->n++] = src->reqs[i];
    src->n = 0;
    return FL_OK;
}

static int id_in(uint64_t id, const uint64_t *ids, int n) {
    for (int i = 0; i < n; i++)
        if (ids[i] == id) return 1;
    return 0;
}

fl_code sbatch_filter(sbatch *b, kv_cache *kv, const uint64_t *keep, int n_keep, fl_error *err) {
    for (int k = 0; k < n_keep; k++) {
        int found = 0;
        for (int i = 0; i < b->n && !found; i++)
            found = b->reqs[i]->id == keep[k];
        if (!found)
            return fl_error_set(err, FL_ENOTFOUND, "batch %llu has no request %llu",
                                (unsigned long long)b->id, (unsigned long long)keep[k]);
    }
    int n = 0;
    for (int i = 0; i < b->n; i++) {
        if (id_in(b->reqs[i]->id, keep, n_keep))
            b->reqs[n++] = b->reqs[i];
        else
            seq_request_free(kv, b->reqs[i]);
    }
    b->n = n;
    return FL_OK;
}

uint32_t sbatch_reserved_tokens(const sbatch *b) {
    uint32_t t = 0;
    for (int i = 0; i < b->n; i++)
        t += (uint32_t)b->reqs[i]->kv.n_blocks * KV_BLOCK_SIZE;
    return t;
}

sbatch *batch_cache_get(batch_cache *c, uint64_t id) {
    for (int i = 0; i < c->n; i++)
        if (c->batches[i]->id == id) return c->batches[i];
    return NULL;
}

fl_code batch_cache_put(batch_cache *c, sbatch *b, fl_error *err) {
    if (batch_cache_get(c, b->id))
        return fl_error_set(err, FL_EINVAL, "batch %llu is already cached",
                            (unsigned long long)b->id);
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 4;
        sbatch **bs = realloc(c->batches, (size_t)cap * sizeof *bs);
        if (!bs) return fl_error_set(err, FL_ENOMEM, "batch cache: out of memory");
        c->batches = bs;
        c->cap = cap;
    }
    c->batches[c->n++] = b;
    return FL_OK;
}

sbatch *batch_cache_take(batch_cache *c, uint64_t id) {
    for (int i = 0; i < c->n; i++) {
        if (c->batches[i]->id != id) continue;
        sbatch *b = c->batches[i];
        c->batches[i] = c->batches[--c->n];
        return b;
    }
    return NULL;
}

void batch_cache_clear(batch_cache *c, kv_cache *kv) {
    for (int i = 0; i < c->n; i++)
        sbatch_free(c->batches[i], kv);
    free(c->batches);
    c->batches = NULL;
    c->n = c->cap = 0;
}
