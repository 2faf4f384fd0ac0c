// The CPU backend's wiring: state, host memory, error recording and the backend struct.
// Ops run synchronously on the calling thread plus the pool, so sync only reports errors.
#include "kernels/cpu/cpu_backend.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CPU_ALIGN 64

_Static_assert(offsetof(bk_matrix, kind) == offsetof(bk_matrix_header, kind) &&
                   offsetof(bk_matrix, n_in) == offsetof(bk_matrix_header, n_in) &&
                   offsetof(bk_matrix, n_out) == offsetof(bk_matrix_header, n_out),
               "bk_matrix must begin with bk_matrix_header's members");

void *cpu_aligned_alloc(size_t nbytes) {
    void *p = NULL;
    if (posix_memalign(&p, CPU_ALIGN, nbytes ? nbytes : CPU_ALIGN) != 0) return NULL;
    return p;
}

void cpu_error_record(cpu_ctx *c, fl_code code, const char *fmt, ...) {
    pthread_mutex_lock(&c->err_mu);
    if (c->first_err.code == FL_OK) {
        va_list ap;
        va_start(ap, fmt);
        c->first_err.code = code;
        vsnprintf(c->first_err.msg, sizeof c->first_err.msg, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&c->err_mu);
}

void *cpu_scratch_get(cpu_ctx *c, cpu_scratch *s, size_t nbytes) {
    if (s->nbytes >= nbytes) return s->p;
    void *p = cpu_aligned_alloc(nbytes);
    if (!p) {
        cpu_error_record(c, FL_ENOMEM, "cpu backend: cannot allocate %zu bytes of scratch", nbytes);
        return NULL;
    }
    free(s->p);
    s->p = p;
    s->nbytes = nbytes;
    return p;
}

static void cpu_free(backend *b) {
    if (!b) return;
    cpu_ctx *c = b->ctx;
    thread_pool_free(c->pool);
    for (int i = 0; i < c->n_threads; i++)
        free(c->thread_scratch[i].p);
    free(c->thread_scratch);
    free(c->step_scratch.p);
    for (int i = 0; i < c->n_vectors; i++)
        free(c->vectors[i]);
    free(c->vectors);
    pthread_mutex_destroy(&c->err_mu);
    free(c);
    free(b);
}

static void cpu_record_error(backend *b, fl_code code, const char *msg) {
    cpu_error_record(b->ctx, code, "%s", msg);
}

static fl_code cpu_sync(backend *b, fl_error *err) {
    cpu_ctx *c = b->ctx;
    pthread_mutex_lock(&c->err_mu);
    fl_code code = c->first_err.code;
    if (code != FL_OK) {
        fl_error_set(err, code, "%s", c->first_err.msg);
        c->first_err.code = FL_OK;
        c->first_err.msg[0] = '\0';
    }
    pthread_mutex_unlock(&c->err_mu);
    return code;
}

static size_t cpu_mem_available(backend *b) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    size_t kib = 0;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "MemAvailable: %zu kB", &kib) == 1) break;
    }
    fclose(f);
    return kib * 1024;
}

static void *cpu_buf_alloc(backend *b, size_t nbytes) {
    return cpu_aligned_alloc(nbytes);
}

static void cpu_buf_free(backend *b, void *p) {
    // A vector handed back here is dropped from the backend's list so that free() runs once.
    cpu_ctx *c = b->ctx;
    for (int i = 0; i < c->n_vectors; i++) {
        if (c->vectors[i] == p) {
            c->vectors[i] = c->vectors[--c->n_vectors];
            break;
        }
    }
    free(p);
}

static void cpu_copy(backend *b, void *dst, const void *src, size_t nbytes) {
    if (nbytes) memcpy(dst, src, nbytes);
}

static void cpu_act_from_f32(backend *b, void *dst, const float *src, size_t n) {
    cpu_copy(b, dst, src, n * sizeof(float));
}

static void cpu_act_to_f32(backend *b, float *dst, const void *src, size_t n) {
    cpu_copy(b, dst, src, n * sizeof(float));
}

static float *cpu_vector_create(backend *b, const float *v, int n) {
    cpu_ctx *c = b->ctx;
    if (n < 0) return NULL;
    if (c->n_vectors == c->cap_vectors) {
        int cap = c->cap_vectors ? 2 * c->cap_vectors : 64;
        float **grown = realloc(c->vectors, (size_t)cap * sizeof *grown);
        if (!grown) return NULL;
        c->vectors = grown;
        c->cap_vectors = cap;
    }
    float *p = cpu_aligned_alloc((size_t)n * sizeof(float));
    if (!p) return NULL;
    if (n) memcpy(p, v, (size_t)n * sizeof(float));
    c->vectors[c->n_vectors++] = p;
    return p;
}

// ---- op profile
static double cpu_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void cpu_profile_begin(backend *b) {
    cpu_ctx *c = b->ctx;
    memset(&c->profile, 0, sizeof c->profile);
    c->span_name = NULL;
    c->profiling = 1;
}

static void cpu_op_begin(backend *b, const char *name) {
    cpu_ctx *c = b->ctx;
    if (!c->profiling) return;
    c->span_name = name;
    c->span_start_s = cpu_now_s();
}

static void cpu_op_end(backend *b) {
    cpu_ctx *c = b->ctx;
    if (!c->profiling || !c->span_name) return;
    op_profile_add(&c->profile, c->span_name, (cpu_now_s() - c->span_start_s) * 1e6);
    c->span_name = NULL;
}

static int cpu_profile_end(backend *b, op_profile_entry *out, int max, fl_error *err) {
    cpu_ctx *c = b->ctx;
    c->profiling = 0;
    c->span_name = NULL;
    return op_profile_copy(&c->profile, out, max);
}

static int cpu_threads_default(void) {
    const char *env = getenv("FALCONLITE_THREADS");
    if (env && *env) {
        char *end;
        long n = strtol(env, &end, 10);
        if (*end == '\0' && n > 0 && n <= 4096) return (int)n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

backend *backend_cpu_create(int n_threads, fl_error *err) {
    if (n_threads < 0) {
        fl_error_set(err, FL_EINVAL, "cpu backend: n_threads %d is negative", n_threads);
        return NULL;
    }
    if (n_threads == 0) n_threads = cpu_threads_default();
    backend *b = calloc(1, sizeof *b);
    cpu_ctx *c = calloc(1, sizeof *c);
    if (c) c->thread_scratch = calloc((size_t)n_threads, sizeof *c->thread_scratch);
    if (!b || !c || !c->thread_scratch) {
        if (c) free(c->thread_scratch);
        free(c);
        free(b);
        fl_error_set(err, FL_ENOMEM, "cpu backend: out of memory");
        return NULL;
    }
    pthread_mutex_init(&c->err_mu, NULL);
    c->n_threads = n_threads;
    b->ctx = c;
    b->free = cpu_free;
    c->pool = thread_pool_create(n_threads);
    if (!c->pool) {
        cpu_free(b);
        fl_error_set(err, FL_EBACKEND, "cpu backend: cannot start %d threads", n_threads);
        return NULL;
    }
    b->name = "cpu";
    b->act_dtype = DTYPE_F32;
    b->sync = cpu_sync;
    b->record_error = cpu_record_error;
    b->mem_available = cpu_mem_available;
    b->buf_alloc = cpu_buf_alloc;
    b->buf_free = cpu_buf_free;
    b->copy_to_device = cpu_copy;
    b->copy_to_host = cpu_copy;
    b->act_from_f32 = cpu_act_from_f32;
    b->act_to_f32 = cpu_act_to_f32;
    b->matrix_create = cpu_matrix_create;
    b->matrix_free = cpu_matrix_free;
    b->vector_create = cpu_vector_create;
    b->embedding = cpu_embedding;
    b->layernorm = cpu_layernorm;
    b->rmsnorm = cpu_rmsnorm;
    b->matmul = cpu_matmul;
    b->qkv_split = cpu_qkv_split;
    b->rotary = cpu_rotary;
    b->kv_store = cpu_kv_store;
    b->attention = cpu_attention;
    b->gelu = cpu_gelu;
    b->swiglu = cpu_swiglu;
    b->add = cpu_add;
    b->gather_rows = cpu_gather_rows;
    b->qkv_rotary_store = cpu_qkv_rotary_store;
    b->residual_norm = cpu_residual_norm;
    b->profile_begin = cpu_profile_begin;
    b->op_begin = cpu_op_begin;
    b->op_end = cpu_op_end;
    b->profile_end = cpu_profile_end;
    return backend_checks_install(b, err);
}
