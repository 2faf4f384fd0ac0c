// LayerNorm and RMSNorm over rows, statistics accumulated in double (two passes, like torch).
#include <math.h>

#include "kernels/cpu/cpu_backend.h"

typedef struct norm_job {
    float *out;
    const float *x, *w, *bias;
    int d;
    float eps;
} norm_job;

static void layernorm_task(void *arg, int64_t begin, int64_t end, int thread) {
    const norm_job *j = arg;
    for (int64_t t = begin; t < end; t++) {
        const float *x = j->x + t * j->d;
        float *o = j->out + t * j->d;
        double sum = 0.0, sq = 0.0;
        for (int i = 0; i < j->d; i++)
            sum += x[i];
        double mean = sum / j->d;
        for (int i = 0; i < j->d; i++)
            sq += (x[i] - mean) * (x[i] - mean);
        float m = (float)mean, rstd = (float)(1.0 / sqrt(sq / j->d + j->eps));
        for (int i = 0; i < j->d; i++)
            o[i] = (x[i] - m) * rstd * j->w[i] + (j->bias ? j->bias[i] : 0.0f);
    }
}

void cpu_layernorm(backend *b, void *out, const void *x, const float *w, const float *bias,
                   int n_tok, int d, float eps) {
    cpu_ctx *c = b->ctx;
    norm_job j = {out, x, w, bias, d, eps};
    thread_pool_for(c->pool, n_tok, 1 + 4096 / (d > 0 ? d : 1), layernorm_task, &j);
}

static void rmsnorm_task(void *arg, int64_t begin, int64_t end, int thread) {
    const norm_job *j = arg;
    for (int64_t t = begin; t < end; t++) {
        const float *x = j->x + t * j->d;
        float *o = j->out + t * j->d;
        double sq = 0.0;
        for (int i = 0; i < j->d; i++)
            sq += (double)x[i] * x[i];
        float rstd = (float)(1.0 / sqrt(sq / j->d + j->eps));
        for (int i = 0; i < j->d; i++)
            o[i] = x[i] * rstd * j->w[i];
    }
}

void cpu_rmsnorm(backend *b, void *out, const void *x, const float *w, int n_tok, int d,
                 float eps) {
    cpu_ctx *c = b->ctx;
    norm_job j = {out, x, w, NULL, d, eps};
    thread_pool_for(c->pool, n_tok, 1 + 4096 / (d > 0 ? d : 1), rmsnorm_task, &j);
}
