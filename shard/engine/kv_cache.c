#include "shard/engine/kv_cache.h"

#include <stdlib.h>
#include <string.h>

static size_t kv_layer_bytes(const kv_cache *kv) {
    return (size_t)kv->n_blocks * (size_t)kv->n_head_kv * KV_BLOCK_SIZE * (size_t)kv->head_dim *
           dtype_size(kv->be->act_dtype);
}

fl_code kv_cache_create(backend *be, int n_layer, int n_head_kv, int head_dim, int n_blocks,
                        kv_cache **out, fl_error *err) {
    if (n_layer <= 0 || n_head_kv <= 0 || head_dim <= 0 || n_blocks <= 0)
        return fl_error_set(err, FL_EINVAL,
                            "kv cache: invalid shape (layers %d, kv heads %d, head dim %d, "
                            "blocks %d)",
                            n_layer, n_head_kv, head_dim, n_blocks);
    kv_cache *kv = calloc(1, sizeof *kv);
    if (!kv) return fl_error_set(err, FL_ENOMEM, "kv cache: out of memory");
    *kv = (kv_cache){.be = be,
                     .n_layer = n_layer,
                     .n_head_kv = n_head_kv,
                     .head_dim = head_dim,
                     .n_blocks = n_blocks};
    kv->k = calloc((size_t)n_layer, sizeof *kv->k);
    kv->v = calloc((size_t)n_layer, sizeof *kv->v);
    kv->free_ids = malloc((size_t)n_blocks * sizeof *kv->free_ids);
    if (!kv->k || !kv->v || !kv->free_ids) {
        kv_cache_free(kv);
        return fl_error_set(err, FL_ENOMEM, "kv cache: out of memory");
    }
    size_t bytes = kv_layer_bytes(kv);
    for (int l = 0; l < n_layer; l++) {
        kv->k[l] = be->buf_alloc(be, bytes);
        kv->v[l] = be->buf_alloc(be, bytes);
        if (!kv->k[l] || !kv->v[l]) {
            kv_cache_free(kv);
            return fl_error_set(err, FL_ENOMEM,
                                "kv cache: cannot allocate %d blocks (%zu bytes per layer)",
                                n_blocks, 2 * bytes);
        }
    }
    // Stack top is the end: pop hands out blocks 0, 1, 2, ... on a fresh cache.
    for (int i = 0; i < n_blocks; i++)
        kv->free_ids[i] = n_blocks - 1 - i;
    kv->n_free = n_blocks;
    *out = kv;
    return FL_OK;
}

void kv_cache_free(kv_cache *kv) {
    if (!kv) return;
    for (int l = 0; l < kv->n_layer; l++) {
        if (kv->k && kv->k[l]) kv->be->buf_free(kv->be, kv->k[l]);
        if (kv->v && kv->v[l]) kv->be->buf_free(kv->be, kv->v[l]);
    }
    free(kv->k);
    free(kv->v);
    free(kv->free_ids);
    free(kv);
}

size_t kv_cache_bytes_per_token(const kv_cache *kv) {
    return (size_t)kv->n_layer * 2 * (size_t)kv->n_head_kv * (size_t)kv->head_dim *
           dtype_size(kv->be->act_dtype);
}

fl_code kv_seq_reserve(kv_cache *kv, kv_seq *seq, int n_tokens_total, fl_error *err) {
    if (n_tokens_total < 0)
        return fl_error_set(err, FL_EINVAL, "kv cache: cannot reserve %d tokens", n_tokens_total);
    int want = (n_tokens_total + KV_BLOCK_SIZE - 1) / KV_BLOCK_SIZE, need = want - seq->n_blocks;
    if (need <= 0) return FL_OK;
    if (need > kv->n_free)
        return fl_error_set(err, FL_ECAPACITY,
                            "kv cache: %d tokens need %d more blocks, only %d of %d free",
                            n_tokens_total, need, kv->n_free, kv->n_blocks);
    int32_t *blocks = realloc(seq->blocks, (size_t)want * sizeof *blocks);
    if (!blocks) return fl_error_set(err, FL_ENOMEM, "kv cache: out of memory");
    seq->blocks = blocks;
    for (int i = seq->n_blocks; i < want; i++)
        blocks[i] = kv->free_ids[--kv->n_free];
    seq->n_blocks = want;
    return FL_OK;
}

void kv_seq_release(kv_cache *kv, kv_seq *seq) {
    // Pushed in reverse so the sequence's first block is handed out first again.
    for (int i = seq->n_blocks - 1; i >= 0; i--)
        kv->free_ids[kv->n_free++] = seq->blocks[i];
    free(seq->blocks);
    memset(seq, 0, sizeof *seq);
}

int kv_cache_free_blocks(const kv_cache *kv) {
    return kv->n_free;
}
