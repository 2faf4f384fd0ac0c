// Internals shared by the CPU backend's files: its state, its weight matrices, scratch memory
// and the op entry points that cpu_backend.c wires into the backend struct.
#pragma once
#include <pthread.h>

#include "kernels/backend.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/op_profile.h"

typedef struct cpu_scratch {
    void *p;
    size_t nbytes;
} cpu_scratch;

typedef struct cpu_ctx {
    thread_pool *pool;
    int n_threads;
    cpu_scratch *thread_scratch; // [n_threads], each used only by its thread inside a loop
    cpu_scratch step_scratch;    // used by the calling thread around loops
    float **vectors;             // vector_create results, owned until backend free
    int n_vectors, cap_vectors;
    pthread_mutex_t err_mu;
    fl_error first_err; // first error since the last sync (code FL_OK when none)
    // op profile (backend.h: profile_begin); ops are synchronous, so host time is op time
    int profiling;
    const char *span_name; // open span (NULL: none)
    double span_start_s;
    op_profile profile;
} cpu_ctx;

struct bk_matrix {
    matrix_kind kind;
    int n_in, n_out;
    float *bias; // [n_out] or NULL
    // MATRIX_DENSE: a private copy in the checkpoint dtype
    void *w; // [n_out, n_in]
    dtype w_type;
    // MATRIX_GPTQ, repacked: inputs sorted by group (act-order), each group padded with zero
    // inputs to a multiple of 8 so that every packed int32 row belongs to one group.
    int k_pad;          // sorted, padded inputs (multiple of 8)
    int32_t *perm;      // [k_pad] input read by each sorted row, -1 for padding; NULL: identity
    int32_t *qweight;   // [k_pad/8, n_out] nibble j of row r is sorted input 8r + j
    int n_runs;         // runs of packed rows sharing a group
    int32_t *run_start; // [n_runs + 1] first packed row of each run
    int32_t *run_group; // [n_runs] the group of each run
    int32_t *qzeros;    // [n_groups, n_out/8] as in the checkpoint (zero - 1)
    uint16_t *scales;   // [n_groups, n_out] fp16
};

// Records err's first error (later ones are dropped); thread safe.
void cpu_error_record(cpu_ctx *c, fl_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
// Grows a scratch area to at least nbytes (64-byte aligned); NULL (error recorded) on failure.
void *cpu_scratch_get(cpu_ctx *c, cpu_scratch *s, size_t nbytes);
void *cpu_aligned_alloc(size_t nbytes);

// Converts n elements of a dense weight row of type t to f32.
void cpu_row_to_f32(float *dst, const void *src, dtype t, size_t n);

bk_matrix *cpu_matrix_create(backend *b, const host_matrix *m, fl_error *err);
void cpu_matrix_free(backend *b, bk_matrix *m);
void cpu_matmul(backend *b, void *out, const void *x, const bk_matrix *w, int n_tok);

void cpu_embedding(backend *b, void *out, const bk_matrix *table, const int32_t *ids, int n_tok,
                   int row_start);
void cpu_qkv_split(backend *b, void *q, void *k, void *v, const void *qkv, int n_tok, int n_head,
                   int n_head_kv, int head_dim);
void cpu_kv_store(backend *b, void *k_cache, void *v_cache, const void *k, const void *v,
                  const int32_t *slots, int n_tok, int n_head_kv, int head_dim);
void cpu_gather_rows(backend *b, void *out, const void *x, const int32_t *rows, int n_rows, int d);

void cpu_layernorm(backend *b, void *out, const void *x, const float *w, const float *bias,
                   int n_tok, int d, float eps);
void cpu_rmsnorm(backend *b, void *out, const void *x, const float *w, int n_tok, int d, float eps);

void cpu_rotary(backend *b, void *x, const int32_t *pos, const float *base, int n_tok, int n_heads,
                int head_dim, int rot_dim, float pos_scale);

void cpu_attention(backend *b, void *out, const void *q, const void *k_cache, const void *v_cache,
                   const attn_batch *ab, int n_head, int n_head_kv, int head_dim, float scale);

void cpu_qkv_rotary_store(backend *b, void *q, void *k_cache, void *v_cache, const void *qkv,
                          const int32_t *pos, const float *base, const int32_t *slots, int n_tok,
                          int n_head, int n_head_kv, int head_dim, int rot_dim, float pos_scale);
void cpu_residual_norm(backend *b, void *x, const void *r1, const void *r2, void *out_a,
                       bk_norm na, void *out_m, bk_norm nm, int rms, int n_tok, int d, float eps);

void cpu_gelu(backend *b, void *x, size_t n);
void cpu_swiglu(backend *b, void *out, const void *gate_up, int n_tok, int d_ff);
void cpu_add(backend *b, void *out, const void *x, const void *y, size_t n);
