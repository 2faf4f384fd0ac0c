// Backend selection by name, and the argument checks every backend shares: the constructors
// install them (backend_checks_install) so that a bad call is rejected the same way, with the
// same code and message, on every backend, and the implementations only see valid arguments.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/backend_ops.h"
#include "kernels/gptq_layout.h"

#ifndef FALCONLITE_HAVE_CUDA
backend *backend_cuda_create(int device, fl_error *err) {
    fl_error_set(err, FL_EUNSUPPORTED, "falconlite was built without CUDA");
    return NULL;
}
#endif

backend *backend_create(const char *name, fl_error *err) {
    if (!name || strcmp(name, "cpu") == 0) return backend_cpu_create(0, err);
    if (strcmp(name, "cuda") == 0) return backend_cuda_create(0, err);
    if (strcmp(name, "auto") == 0) {
        // No usable GPU (or no CUDA build) is the normal case for auto: fall back quietly.
        backend *b = backend_cuda_create(0, NULL);
        return b ? b : backend_cpu_create(0, err);
    }
    fl_error_set(err, FL_EINVAL, "unknown backend '%s' (cpu, cuda or auto)", name);
    return NULL;
}

// ---------------------------------------------------------------- checks

// Records a bad call as the backend's error (sync() reports the first); returns 0.
__attribute__((format(printf, 3, 4))) static int reject(backend *b, fl_code code,
                                                        const char *fmt, ...) {
    char msg[sizeof(((fl_error *)0)->msg)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    b->record_error(b, code, msg);
    return 0;
}

// 1 when every buffer an op needs is present; otherwise records the error and returns 0.
static int buffers_present(backend *b, const char *op, int present) {
    return present || reject(b, FL_EINVAL, "%s: a required buffer is NULL", op);
}

static const bk_matrix_header *header_of(const bk_matrix *m) {
    return (const bk_matrix_header *)m;
}

static bk_matrix *check_matrix_create(backend *b, const host_matrix *m, fl_error *err) {
    if (!m) {
        fl_error_set(err, FL_EINVAL, "matrix: no host matrix");
        return NULL;
    }
    if (m->n_in <= 0 || m->n_out <= 0) {
        fl_error_set(err, FL_EINVAL, "matrix: bad shape n_in %d, n_out %d", m->n_in, m->n_out);
        return NULL;
    }
    if (m->kind == MATRIX_DENSE) {
        if (!m->w ||
            (m->w_type != DTYPE_F32 && m->w_type != DTYPE_F16 && m->w_type != DTYPE_BF16)) {
            fl_error_set(err, FL_EUNSUPPORTED, "dense matrix: weights missing or dtype %s",
                         dtype_name(m->w_type));
            return NULL;
        }
    } else if (m->kind == MATRIX_GPTQ) {
        if (gptq_layout_check(m, err) != FL_OK) return NULL;
    } else {
        fl_error_set(err, FL_EUNSUPPORTED, "matrix: unknown kind %d", (int)m->kind);
        return NULL;
    }
    return b->unchecked->matrix_create(b, m, err);
}

static float *check_vector_create(backend *b, const float *v, int n) {
    if (n < 0 || (n > 0 && !v)) return NULL;
    return b->unchecked->vector_create(b, v, n);
}

static void check_embedding(backend *b, void *out, const bk_matrix *table, const int32_t *ids_dev,
                            int n_tok, int row_start) {
    if (table && header_of(table)->kind != MATRIX_DENSE) {
        reject(b, FL_EUNSUPPORTED, "embedding: the table must be a dense matrix");
        return;
    }
    if (n_tok <= 0 || !buffers_present(b, "embedding", out && table && ids_dev)) return;
    b->unchecked->embedding(b, out, table, ids_dev, n_tok, row_start);
}

static int norm_args_ok(backend *b, const char *op, void *out, const void *x, const float *w,
                        int n_tok, int d) {
    if (d <= 0) return reject(b, FL_EINVAL, "%s: d %d must be positive", op, d);
    return n_tok > 0 && buffers_present(b, op, out && x && w);
}

static void check_layernorm(backend *b, void *out, const void *x, const float *w,
                            const float *bias, int n_tok, int d, float eps) {
    if (norm_args_ok(b, "layernorm", out, x, w, n_tok, d))
        b->unchecked->layernorm(b, out, x, w, bias, n_tok, d, eps);
}

static void check_rmsnorm(backend *b, void *out, const void *x, const float *w, int n_tok, int d,
                          float eps) {
    if (norm_args_ok(b, "rmsnorm", out, x, w, n_tok, d))
        b->unchecked->rmsnorm(b, out, x, w, n_tok, d, eps);
}

static void check_matmul(backend *b, void *out, const void *x, const bk_matrix *w, int n_tok) {
    if (n_tok <= 0 || !buffers_present(b, "matmul", out && x && w)) return;
    b->unchecked->matmul(b, out, x, w, n_tok);
}

// n_head query heads over n_head_kv kv heads of head_dim each.
static int heads_ok(backend *b, const char *op, int n_head, int n_head_kv, int head_dim) {
    if (n_head_kv <= 0 || n_head <= 0 || n_head % n_head_kv)
        return reject(b, FL_EINVAL, "%s: n_head %d is not a multiple of n_head_kv %d", op, n_head,
                      n_head_kv);
    if (head_dim <= 0) return reject(b, FL_EINVAL, "%s: head_dim %d must be positive", op, head_dim);
    return 1;
}

static void check_qkv_split(backend *b, void *q, void *k, void *v, const void *qkv, int n_tok,
                            int n_head, int n_head_kv, int head_dim) {
    if (!heads_ok(b, "qkv_split", n_head, n_head_kv, head_dim) || n_tok <= 0 ||
        !buffers_present(b, "qkv_split", q && k && v && qkv))
        return;
    b->unchecked->qkv_split(b, q, k, v, qkv, n_tok, n_head, n_head_kv, head_dim);
}

// The rotated part of a head: an even rot_dim in (0, head_dim].
static int rot_dim_ok(backend *b, const char *op, int rot_dim, int head_dim) {
    if (rot_dim > 0 && rot_dim <= head_dim && rot_dim % 2 == 0) return 1;
    return reject(b, FL_EINVAL, "%s: rot_dim %d must be even and in (0, head_dim %d]", op, rot_dim,
                  head_dim);
}

static void check_rotary(backend *b, void *x, const int32_t *pos_dev, const float *base_dev,
                         int n_tok, int n_heads, int head_dim, int rot_dim, float pos_scale) {
    if (!rot_dim_ok(b, "rotary", rot_dim, head_dim)) return;
    if (n_tok <= 0 || n_heads <= 0 || !buffers_present(b, "rotary", x && pos_dev && base_dev))
        return;
    b->unchecked->rotary(b, x, pos_dev, base_dev, n_tok, n_heads, head_dim, rot_dim, pos_scale);
}

static void check_kv_store(backend *b, void *k_cache, void *v_cache, const void *k, const void *v,
                           const int32_t *slots_dev, int n_tok, int n_head_kv, int head_dim) {
    if (!heads_ok(b, "kv_store", n_head_kv, n_head_kv, head_dim) || n_tok <= 0 ||
        !buffers_present(b, "kv_store", k_cache && v_cache && k && v && slots_dev))
        return;
    b->unchecked->kv_store(b, k_cache, v_cache, k, v, slots_dev, n_tok, n_head_kv, head_dim);
}

static void check_attention(backend *b, void *out, const void *q, const void *k_cache,
                            const void *v_cache, const attn_batch *ab, int n_head, int n_head_kv,
                            int head_dim, float scale) {
    if (!heads_ok(b, "attention", n_head, n_head_kv, head_dim) ||
        !buffers_present(b, "attention", ab != NULL) || ab->n_tok <= 0 || ab->n_seq <= 0 ||
        !buffers_present(b, "attention",
                         out && q && k_cache && v_cache && ab->seqs_dev && ab->block_tables_dev))
        return;
    b->unchecked->attention(b, out, q, k_cache, v_cache, ab, n_head, n_head_kv, head_dim, scale);
}

static void check_gelu(backend *b, void *x, size_t n) {
    if (n == 0 || !buffers_present(b, "gelu", x != NULL)) return;
    b->unchecked->gelu(b, x, n);
}

static void check_swiglu(backend *b, void *out, const void *gate_up, int n_tok, int d_ff) {
    if (d_ff <= 0) {
        reject(b, FL_EINVAL, "swiglu: d_ff %d must be positive", d_ff);
        return;
    }
    if (n_tok <= 0 || !buffers_present(b, "swiglu", out && gate_up)) return;
    b->unchecked->swiglu(b, out, gate_up, n_tok, d_ff);
}

static void check_add(backend *b, void *out, const void *x, const void *y, size_t n) {
    if (n == 0 || !buffers_present(b, "add", out && x && y)) return;
    b->unchecked->add(b, out, x, y, n);
}

static void check_gather_rows(backend *b, void *out, const void *x, const int32_t *rows_dev,
                              int n_rows, int d) {
    if (d <= 0) {
        reject(b, FL_EINVAL, "gather_rows: d %d must be positive", d);
        return;
    }
    if (n_rows <= 0 || !buffers_present(b, "gather_rows", out && x && rows_dev)) return;
    b->unchecked->gather_rows(b, out, x, rows_dev, n_rows, d);
}

static void check_qkv_rotary_store(backend *b, void *q, void *k_cache, void *v_cache,
                                   const void *qkv, const int32_t *pos_dev, const float *base_dev,
                                   const int32_t *slots_dev, int n_tok, int n_head, int n_head_kv,
                                   int head_dim, int rot_dim, float pos_scale) {
    if (!heads_ok(b, "qkv_rotary_store", n_head, n_head_kv, head_dim) ||
        !rot_dim_ok(b, "qkv_rotary_store", rot_dim, head_dim))
        return;
    if (n_tok <= 0 || !buffers_present(b, "qkv_rotary_store", q && k_cache && v_cache && qkv &&
                                                                  pos_dev && base_dev && slots_dev))
        return;
    b->unchecked->qkv_rotary_store(b, q, k_cache, v_cache, qkv, pos_dev, base_dev, slots_dev,
                                   n_tok, n_head, n_head_kv, head_dim, rot_dim, pos_scale);
}

static void check_residual_norm(backend *b, void *x, const void *r1, const void *r2, void *out_a,
                                bk_norm na, void *out_m, bk_norm nm, int rms, int n_tok, int d,
                                float eps) {
    if (d <= 0) {
        reject(b, FL_EINVAL, "residual_norm: d %d must be positive", d);
        return;
    }
    if (n_tok <= 0 || !buffers_present(b, "residual_norm", x && out_a && na.w && (r1 || !r2) &&
                                                               (!out_m || nm.w)))
        return;
    b->unchecked->residual_norm(b, x, r1, r2, out_a, na, out_m, nm, rms, n_tok, d, eps);
}

static void checked_free(backend *b) {
    if (!b) return;
    backend *impl = (backend *)b->unchecked;
    void (*impl_free)(backend *) = impl->free;
    free(impl);
    b->unchecked = NULL;
    impl_free(b);
}

backend *backend_checks_install(backend *b, fl_error *err) {
    if (!b) return NULL;
    backend *impl = malloc(sizeof *impl);
    if (!impl) {
        b->free(b);
        fl_error_set(err, FL_ENOMEM, "backend: out of memory");
        return NULL;
    }
    *impl = *b;
    b->unchecked = impl;
    b->free = checked_free;
    b->matrix_create = check_matrix_create;
    b->vector_create = check_vector_create;
#define INSTALL_CHECK(op) b->op = check_##op;
    BACKEND_OPS(INSTALL_CHECK)
#undef INSTALL_CHECK
    return b;
}
