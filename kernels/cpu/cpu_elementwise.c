// Element-wise ops: exact GELU, SwiGLU, add. Split across the pool in large chunks.
#include <math.h>

#include "kernels/cpu/cpu_backend.h"

enum { ELEMENTWISE_GRAIN = 1 << 14 }; // elements per chunk: below this, threads cost more

typedef struct elementwise_job {
    float *out;
    const float *a, *b;
    int d_ff; // swiglu row width
} elementwise_job;

static void gelu_task(void *arg, int64_t begin, int64_t end, int thread) {
    const elementwise_job *j = arg;
    for (int64_t i = begin; i < end; i++) {
        float x = j->out[i];
        j->out[i] = 0.5f * x * (1.0f + erff(x * (float)M_SQRT1_2));
    }
}

void cpu_gelu(backend *b, void *x, size_t n) {
    cpu_ctx *c = b->ctx;
    elementwise_job j = {.out = x};
    thread_pool_for(c->pool, (int64_t)n, ELEMENTWISE_GRAIN, gelu_task, &j);
}

static void swiglu_task(void *arg, int64_t begin, int64_t end, int thread) {
    const elementwise_job *j = arg;
    for (int64_t i = begin; i < end; i++) {
        int64_t t = i / j->d_ff, f = i % j->d_ff;
        const float *row = j->a + t * 2 * j->d_ff;
        float g = row[f], u = row[j->d_ff + f];
        j->out[i] = g / (1.0f + expf(-g)) * u;
    }
}

void cpu_swiglu(backend *b, void *out, const void *gate_up, int n_tok, int d_ff) {
    cpu_ctx *c = b->ctx;
    elementwise_job j = {.out = out, .a = gate_up, .d_ff = d_ff};
    thread_pool_for(c->pool, (int64_t)n_tok * d_ff, ELEMENTWISE_GRAIN, swiglu_task, &j);
}

static void add_task(void *arg, int64_t begin, int64_t end, int thread) {
    const elementwise_job *j = arg;
    for (int64_t i = begin; i < end; i++)
        j->out[i] = j->a[i] + j->b[i];
}

void cpu_add(backend *b, void *out, const void *x, const void *y, size_t n) {
    cpu_ctx *c = b->ctx;
    elementwise_job j = {.out = out, .a = x, .b = y};
    thread_pool_for(c->pool, (int64_t)n, ELEMENTWISE_GRAIN, add_task, &j);
}
