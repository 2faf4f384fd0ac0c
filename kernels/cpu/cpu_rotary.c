// NeoX half rotation with a per-token base, and the fused QKV split + rotary + KV-cache store.
// Angles are computed in fp32 in HF's order (inv_freq = 1 / base^(2i/rot_dim), then
// pos * inv_freq) so positions match HF bit for bit.
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu_backend.h"

typedef struct rotary_job {
    cpu_ctx *c;
    float *x; // rotary: [n_tok, n_heads, head_dim]; fused: q [n_tok, n_head, head_dim]
    const int32_t *pos;
    const float *base;
    int n_heads, head_dim, rot_dim;
    float pos_scale;
    // qkv_rotary_store only
    float *k_cache, *v_cache;
    const float *qkv;
    const int32_t *slots;
    int n_head_kv;
} rotary_job;

// cos_t, sin_t [rot_dim/2] of token t.
static void rotary_angles(const rotary_job *j, int64_t t, float *cos_t, float *sin_t) {
    float pos = (float)j->pos[t] * j->pos_scale;
    for (int i = 0; i < j->rot_dim / 2; i++) {
        float inv_freq = 1.0f / powf(j->base[t], (float)(2 * i) / (float)j->rot_dim);
        float angle = pos * inv_freq;
        cos_t[i] = cosf(angle);
        sin_t[i] = sinf(angle);
    }
}

// Rotates the first rot_dim dims of one head in place.
static void rotary_head(float *x, const float *cos_t, const float *sin_t, int half) {
    for (int i = 0; i < half; i++) {
        float x1 = x[i], x2 = x[i + half];
        x[i] = x1 * cos_t[i] - x2 * sin_t[i];
        x[i + half] = x2 * cos_t[i] + x1 * sin_t[i];
    }
}

// The per-thread cos/sin table, NULL (error recorded) when it cannot be allocated.
static float *rotary_table(const rotary_job *j, int thread) {
    return cpu_scratch_get(j->c, &j->c->thread_scratch[thread], (size_t)j->rot_dim * sizeof(float));
}

static void rotary_task(void *arg, int64_t begin, int64_t end, int thread) {
    const rotary_job *j = arg;
    int half = j->rot_dim / 2;
    float *cs = rotary_table(j, thread);
    if (!cs) return;
    for (int64_t t = begin; t < end; t++) {
        rotary_angles(j, t, cs, cs + half);
        for (int h = 0; h < j->n_heads; h++)
            rotary_head(j->x + ((size_t)t * j->n_heads + h) * j->head_dim, cs, cs + half, half);
    }
}

void cpu_rotary(backend *b, void *x, const int32_t *pos, const float *base, int n_tok, int n_heads,
                int head_dim, int rot_dim, float pos_scale) {
    cpu_ctx *c = b->ctx;
    rotary_job j = {.c = c, .x = x, .pos = pos, .base = base, .n_heads = n_heads,
                    .head_dim = head_dim, .rot_dim = rot_dim, .pos_scale = pos_scale};
    thread_pool_for(c->pool, n_tok, 4, rotary_task, &j);
}

static void qkv_rotary_store_task(void *arg, int64_t begin, int64_t end, int thread) {
    const rotary_job *j = arg;
    const int half = j->rot_dim / 2, nkv = j->n_head_kv, group = j->n_heads / nkv;
    const size_t hd = (size_t)j->head_dim, head_bytes = hd * sizeof(float);
    float *cs = rotary_table(j, thread);
    if (!cs) return;
    for (int64_t t = begin; t < end; t++) {
        rotary_angles(j, t, cs, cs + half);
        // qkv row [n_head_kv][group + 2][head_dim]
        const float *src = j->qkv + (size_t)t * (j->n_heads + 2 * nkv) * hd;
        float *qt = j->x + (size_t)t * j->n_heads * hd;
        for (int h = 0; h < nkv; h++) {
            const float *g = src + (size_t)h * (group + 2) * hd;
            for (int i = 0; i < group; i++) {
                float *qh = qt + ((size_t)h * group + i) * hd;
                memcpy(qh, g + (size_t)i * hd, head_bytes);
                rotary_head(qh, cs, cs + half, half);
            }
            if (j->slots[t] < 0) continue; // no slot: nothing to store
            size_t block = (size_t)j->slots[t] / KV_BLOCK_SIZE;
            size_t dst = ((block * nkv + h) * KV_BLOCK_SIZE + (size_t)j->slots[t] % KV_BLOCK_SIZE) * hd;
            memcpy(j->k_cache + dst, g + (size_t)group * hd, head_bytes);
            rotary_head(j->k_cache + dst, cs, cs + half, half);
            memcpy(j->v_cache + dst, g + (size_t)(group + 1) * hd, head_bytes);
        }
    }
}

void cpu_qkv_rotary_store(backend *b, void *q, void *k_cache, void *v_cache, const void *qkv,
                          const int32_t *pos, const float *base, const int32_t *slots, int n_tok,
                          int n_head, int n_head_kv, int head_dim, int rot_dim, float pos_scale) {
    cpu_ctx *c = b->ctx;
    rotary_job j = {.c = c, .x = q, .pos = pos, .base = base, .n_heads = n_head,
                    .head_dim = head_dim, .rot_dim = rot_dim, .pos_scale = pos_scale,
                    .k_cache = k_cache, .v_cache = v_cache, .qkv = qkv, .slots = slots,
                    .n_head_kv = n_head_kv};
    thread_pool_for(c->pool, n_tok, 4, qkv_rotary_store_task, &j);
}
