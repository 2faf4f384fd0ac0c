// NeoX half rotation with a per-token base. Angles are computed in fp32 in HF's order
// (inv_freq = 1 / base^(2i/rot_dim), then pos * inv_freq) so positions match HF bit for bit.
#include <math.h>

#include "kernels/cpu/cpu_backend.h"

typedef struct rotary_job {
    cpu_ctx *c;
    float *x; // [n_tok, n_heads, head_dim]
    const int32_t *pos;
    const float *base;
    int n_heads, head_dim, rot_dim;
    float pos_scale;
} rotary_job;

static void rotary_task(void *arg, int64_t begin, int64_t end, int thread) {
    const rotary_job *j = arg;
    int half = j->rot_dim / 2;
    float *cs = cpu_scratch_get(j->c, &j->c->thread_scratch[thread], 2 * half * sizeof(float));
    if (!cs) return;
    float *cos_t = cs, *sin_t = cs + half;
    for (int64_t t = begin; t < end; t++) {
        float pos = (float)j->pos[t] * j->pos_scale;
        for (int i = 0; i < half; i++) {
            float inv_freq = 1.0f / powf(j->base[t], (float)(2 * i) / (float)j->rot_dim);
            float angle = pos * inv_freq;
            cos_t[i] = cosf(angle);
            sin_t[i] = sinf(angle);
        }
        for (int h = 0; h < j->n_heads; h++) {
            float *x = j->x + ((size_t)t * j->n_heads + h) * j->head_dim;
            for (int i = 0; i < half; i++) {
                float x1 = x[i], x2 = x[i + half];
                x[i] = x1 * cos_t[i] - x2 * sin_t[i];
                x[i + half] = x2 * cos_t[i] + x1 * sin_t[i];
            }
        }
    }
}

void cpu_rotary(backend *b, void *x, const int32_t *pos, const float *base, int n_tok, int n_heads,
                int head_dim, int rot_dim, float pos_scale) {
    cpu_ctx *c = b->ctx;
    rotary_job j = {c, x, pos, base, n_heads, head_dim, rot_dim, pos_scale};
    thread_pool_for(c->pool, n_tok, 4, rotary_task, &j);
}
