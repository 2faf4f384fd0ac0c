// The CUDA backend's op profile (kernels/backend.h: profile_begin). Each span the driver brackets
// with op_begin / op_end gets a pair of events. Timed naively, a decode step's 1-3 µs kernels
// would mostly measure the host's launch rate (the GPU idles between launches), so the GPU is
// held behind "gate" kernels: a gate spins until the host has queued PROFILE_GATE_SPANS more
// spans behind it (or PROFILE_GATE_TIMEOUT_NS passed), so the spans between two gates run back
// to back and their events time the kernels alone. Anything that waits for the stream first lets
// every gate pass (cuda_profile_release). Graphs are neither captured nor replayed meanwhile.
#include <stdlib.h>

#include "kernels/cuda/cuda_backend.cuh"
#include "kernels/op_profile.h"

#define PROFILE_GATE_SPANS 48
#define PROFILE_GATE_TIMEOUT_NS 20000000ull // 20 ms: a gate never deadlocks a stalled host

// Waits until released[0] >= gate; counts a timeout in released[1].
__global__ void k_profile_gate(volatile long long *released, long long gate,
                               unsigned long long timeout_ns) {
    unsigned long long t0, t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    while (released[0] < gate) {
        __nanosleep(256);
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
        if (t - t0 > timeout_ns) {
            released[1] = released[1] + 1;
            return;
        }
    }
}

static void gate_arm(cuda_ctx *c) {
    k_profile_gate<<<1, 1, 0, c->stream>>>(c->gate_dev, ++c->gates_armed, PROFILE_GATE_TIMEOUT_NS);
    CUDA_LAUNCHED(c, "profile gate");
}

static void gate_release_to(cuda_ctx *c, long long gate) {
    __atomic_store_n(&c->gate_host[0], gate, __ATOMIC_SEQ_CST);
}

void cuda_profile_release(cuda_ctx *c) {
    if (!c->gate_host) return;
    gate_release_to(c, c->gates_armed);
    c->ops_behind_gate = 0;
}

void cuda_profile_begin(backend *b) {
    cuda_ctx *c = cuda_ctx_of(b);
    if (!c->gate_host) {
        void *p = NULL;
        if (cuda_check(c, cudaHostAlloc(&p, 2 * sizeof(long long), cudaHostAllocMapped),
                       "profile: cudaHostAlloc"))
            return;
        c->gate_host = (long long *)p;
        c->gate_host[0] = c->gate_host[1] = 0;
        c->gates_armed = 0;
        if (cuda_check(c, cudaHostGetDevicePointer((void **)&c->gate_dev, p, 0),
                       "profile: cudaHostGetDevicePointer"))
            return;
    }
    c->gate_host[1] = 0;
    c->n_spans = 0;
    c->span_open = 0;
    c->ops_behind_gate = 0;
    c->profiling = 1;
}

void cuda_op_begin(backend *b, const char *name) {
    cuda_ctx *c = cuda_ctx_of(b);
    if (!c->profiling || c->capturing) return;
    if (c->n_spans == c->cap_spans) {
        int cap = c->cap_spans ? 2 * c->cap_spans : 1024;
        cuda_span *grown = (cuda_span *)realloc(c->spans, (size_t)cap * sizeof *grown);
        if (!grown) {
            cuda_record(c, FL_ENOMEM, "kernels/cuda: profile: out of host memory");
            return;
        }
        memset(grown + c->cap_spans, 0, (size_t)(cap - c->cap_spans) * sizeof *grown);
        c->spans = grown;
        c->cap_spans = cap;
    }
    cuda_span *s = &c->spans[c->n_spans];
    if (!s->start && (cuda_check(c, cudaEventCreate(&s->start), "profile: cudaEventCreate") ||
                      cuda_check(c, cudaEventCreate(&s->stop), "profile: cudaEventCreate")))
        return;
    // Hold the GPU behind a gate; every PROFILE_GATE_SPANS spans queue the next gate and let the
    // previous ones pass, so the host stays ahead while the queue stays short.
    if (c->ops_behind_gate == 0) {
        gate_arm(c);
    } else if (c->ops_behind_gate >= PROFILE_GATE_SPANS) {
        gate_arm(c);
        gate_release_to(c, c->gates_armed - 1);
        c->ops_behind_gate = 0;
    }
    c->ops_behind_gate++;
    s->name = name;
    cuda_check(c, cudaEventRecord(s->start, c->stream), "profile: cudaEventRecord");
    c->span_open = 1;
}

void cuda_op_end(backend *b) {
    cuda_ctx *c = cuda_ctx_of(b);
    if (!c->profiling || !c->span_open) return;
    cuda_check(c, cudaEventRecord(c->spans[c->n_spans].stop, c->stream), "profile: cudaEventRecord");
    c->n_spans++;
    c->span_open = 0;
}

int cuda_profile_end(backend *b, op_profile_entry *out, int max, fl_error *err) {
    cuda_ctx *c = cuda_ctx_of(b);
    cuda_profile_release(c);
    c->profiling = 0;
    c->span_open = 0;
    cuda_check(c, cudaStreamSynchronize(c->stream), "profile: stream synchronize");
    op_profile p;
    memset(&p, 0, sizeof p);
    for (int i = 0; i < c->n_spans && c->err_code == FL_OK; i++) {
        float ms = 0.0f;
        if (cuda_check(c, cudaEventElapsedTime(&ms, c->spans[i].start, c->spans[i].stop),
                       "profile: cudaEventElapsedTime"))
            break;
        op_profile_add(&p, c->spans[i].name, ms * 1e3);
    }
    if (c->gate_host && c->gate_host[1] > 0) { // the host fell behind: spans may hold launch gaps
        op_profile_add(&p, "(profile gate timeouts)", 0.0);
        p.e[p.n - 1].calls = (long)c->gate_host[1];
    }
    if (c->err_code != FL_OK) {
        fl_error_set(err, c->err_code, "%s", c->err_msg);
        c->err_code = FL_OK;
        c->err_msg[0] = 0;
        return -1;
    }
    return op_profile_copy(&p, out, max);
}

void cuda_profile_free(cuda_ctx *c) {
    cuda_profile_release(c);
    for (int i = 0; i < c->cap_spans; i++) {
        if (c->spans[i].start) cudaEventDestroy(c->spans[i].start);
        if (c->spans[i].stop) cudaEventDestroy(c->spans[i].stop);
    }
    free(c->spans);
    if (c->gate_host) cudaFreeHost(c->gate_host);
}
