// LayerNorm and RMSNorm over rows, statistics accumulated in double (two passes, like torch),
// and the fused residual add + norm(s) of a block's input.
#include <math.h>

#include "kernels/cpu/cpu_backend.h"

typedef struct norm_job {
    float *out;
    const float *x, *w, *bias;
    int d;
    float eps;
    int rms;
    // residual_norm only
    float *x_mut;          // x, updated in place
    const float *r1, *r2;  // residuals (NULL: none)
    float *out_m;          // second output (NULL: none)
    const float *w_m, *bias_m;
} norm_job;

// Mean (0 for RMSNorm) and 1/std of one row.
static void norm_stats(const float *x, int d, float eps, int rms, float *mean_out, float *rstd) {
    if (rms) {
        double sq = 0.0;
        for (int i = 0; i < d; i++)
            sq += (double)x[i] * x[i];
        *mean_out = 0.0f;
        *rstd = (float)(1.0 / sqrt(sq / d + eps));
        return;
    }
    double sum = 0.0, sq = 0.0;
    for (int i = 0; i < d; i++)
        sum += x[i];
    double mean = sum / d;
    for (int i = 0; i < d; i++)
        sq += (x[i] - mean) * (x[i] - mean);
    *mean_out = (float)mean;
    *rstd = (float)(1.0 / sqrt(sq / d + eps));
}

static void norm_apply_row(float *o, const float *x, const float *w, const float *bias, int d,
                           int rms, float m, float rstd) {
    if (rms) {
        for (int i = 0; i < d; i++)
            o[i] = x[i] * rstd * w[i];
        return;
    }
    for (int i = 0; i < d; i++)
        o[i] = (x[i] - m) * rstd * w[i] + (bias ? bias[i] : 0.0f);
}

static void norm_task(void *arg, int64_t begin, int64_t end, int thread) {
    const norm_job *j = arg;
    for (int64_t t = begin; t < end; t++) {
        const float *x = j->x + t * j->d;
        float m, rstd;
        norm_stats(x, j->d, j->eps, j->rms, &m, &rstd);
        norm_apply_row(j->out + t * j->d, x, j->w, j->bias, j->d, j->rms, m, rstd);
    }
}

static void norm_run(backend *b, norm_job *j, int n_tok, void (*task)(void *, int64_t, int64_t, int)) {
    cpu_ctx *c = b->ctx;
    thread_pool_for(c->pool, n_tok, 1 + 4096 / (j->d > 0 ? j->d : 1), task, j);
}

void cpu_layernorm(backend *b, void *out, const void *x, const float *w, const float *bias,
                   int n_tok, int d, float eps) {
    norm_job j = {.out = out, .x = x, .w = w, .bias = bias, .d = d, .eps = eps, .rms = 0};
    norm_run(b, &j, n_tok, norm_task);
}

void cpu_rmsnorm(backend *b, void *out, const void *x, const float *w, int n_tok, int d,
                 float eps) {
    norm_job j = {.out = out, .x = x, .w = w, .d = d, .eps = eps, .rms = 1};
    norm_run(b, &j, n_tok, norm_task);
}

static void residual_norm_task(void *arg, int64_t begin, int64_t end, int thread) {
    const norm_job *j = arg;
    for (int64_t t = begin; t < end; t++) {
        float *x = j->x_mut + t * j->d;
        const float *r1 = j->r1 ? j->r1 + t * j->d : NULL, *r2 = j->r2 ? j->r2 + t * j->d : NULL;
        if (r1 && r2)
            for (int i = 0; i < j->d; i++)
                x[i] = x[i] + (r1[i] + r2[i]);
        else if (r1)
            for (int i = 0; i < j->d; i++)
                x[i] = x[i] + r1[i];
        float m, rstd;
        norm_stats(x, j->d, j->eps, j->rms, &m, &rstd);
        norm_apply_row(j->out + t * j->d, x, j->w, j->bias, j->d, j->rms, m, rstd);
        if (j->out_m)
            norm_apply_row(j->out_m + t * j->d, x, j->w_m, j->bias_m, j->d, j->rms, m, rstd);
    }
}

void cpu_residual_norm(backend *b, void *x, const void *r1, const void *r2, void *out_a,
                       bk_norm na, void *out_m, bk_norm nm, int rms, int n_tok, int d, float eps) {
    norm_job j = {.out = out_a, .w = na.w, .bias = rms ? NULL : na.bias, .d = d, .eps = eps,
                  .rms = rms, .x_mut = x, .r1 = r1, .r2 = r1 ? r2 : NULL, .out_m = out_m,
                  .w_m = nm.w, .bias_m = rms ? NULL : nm.bias};
    norm_run(b, &j, n_tok, residual_norm_task);
}
