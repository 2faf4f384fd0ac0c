// Ops that only move rows: embedding lookup, fused-QKV split, KV-cache store, row gather.
#include <string.h>

#include "kernels/cpu/cpu_backend.h"

void cpu_embedding(backend *b, void *out, const bk_matrix *table, const int32_t *ids, int n_tok,
                   int row_start) {
    int d = table->n_in;
    size_t row_bytes = (size_t)d * dtype_size(table->w_type);
    for (int t = 0; t < n_tok; t++) {
        float *o = (float *)out + (size_t)t * d;
        int64_t row = (int64_t)ids[t] - row_start;
        if (row < 0 || row >= table->n_out)
            memset(o, 0, (size_t)d * sizeof(float)); // another vocab shard owns this id
        else
            cpu_row_to_f32(o, (const char *)table->w + (size_t)row * row_bytes, table->w_type,
                           (size_t)d);
    }
}

void cpu_qkv_split(backend *b, void *q, void *k, void *v, const void *qkv, int n_tok, int n_head,
                   int n_head_kv, int head_dim) {
    int group = n_head / n_head_kv; // query heads per kv head
    size_t hd = (size_t)head_dim, head_bytes = hd * sizeof(float);
    for (int t = 0; t < n_tok; t++) {
        // [n_head_kv][group + 2][head_dim]
        const float *src = (const float *)qkv + (size_t)t * (n_head + 2 * n_head_kv) * hd;
        float *qt = (float *)q + (size_t)t * n_head * hd;
        float *kt = (float *)k + (size_t)t * n_head_kv * hd;
        float *vt = (float *)v + (size_t)t * n_head_kv * hd;
        for (int h = 0; h < n_head_kv; h++) {
            const float *g = src + (size_t)h * (group + 2) * hd;
            memcpy(qt + (size_t)h * group * hd, g, (size_t)group * head_bytes);
            memcpy(kt + (size_t)h * hd, g + (size_t)group * hd, head_bytes);
            memcpy(vt + (size_t)h * hd, g + (size_t)(group + 1) * hd, head_bytes);
        }
    }
}

void cpu_kv_store(backend *b, void *k_cache, void *v_cache, const void *k, const void *v,
                  const int32_t *slots, int n_tok, int n_head_kv, int head_dim) {
    size_t hd = (size_t)head_dim, head_bytes = hd * sizeof(float);
    for (int t = 0; t < n_tok; t++) {
        if (slots[t] < 0) continue; // no slot: nothing to store
        size_t block = (size_t)slots[t] / KV_BLOCK_SIZE, off = (size_t)slots[t] % KV_BLOCK_SIZE;
        for (int h = 0; h < n_head_kv; h++) {
            // [n_blocks, n_head_kv, KV_BLOCK_SIZE, head_dim]
            size_t dst = ((block * n_head_kv + h) * KV_BLOCK_SIZE + off) * hd;
            size_t src = ((size_t)t * n_head_kv + h) * hd;
            memcpy((float *)k_cache + dst, (const float *)k + src, head_bytes);
            memcpy((float *)v_cache + dst, (const float *)v + src, head_bytes);
        }
    }
}

void cpu_gather_rows(backend *b, void *out, const void *x, const int32_t *rows, int n_rows, int d) {
    size_t row_bytes = (size_t)d * sizeof(float);
    for (int r = 0; r < n_rows; r++)
        memcpy((char *)out + (size_t)r * row_bytes, (const char *)x + (size_t)rows[r] * row_bytes,
               row_bytes);
}
