// Double-precision reference implementations of every backend op (kernels/backend.h), plus the
// seeded random inputs the op tests share. Written for obviousness, not speed. Inputs are the
// host f32 (or checkpoint-typed) arrays the op receives; outputs are double.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"

// ---- seeded random inputs (splitmix64)
typedef struct ref_rng {
    uint64_t state;
} ref_rng;

uint32_t ref_rng_u32(ref_rng *r);
float ref_rng_uniform(ref_rng *r, float lo, float hi);
void ref_fill_uniform(ref_rng *r, float *x, size_t n, float lo, float hi);

// A random weight matrix that owns its arrays. Dense: w_type F32/F16/BF16 values in [-1, 1].
// GPTQ: random nibbles, zeros and positive fp16 scales; act_order gives g_idx a random
// permutation of the groups' members; ragged makes groups of random sizes (as a tensor-parallel
// slice of an act-order matrix has). with_bias adds a bias in [-1, 1].
typedef struct ref_matrix {
    host_matrix m;
    void *w;
    int32_t *qweight, *qzeros, *g_idx;
    uint16_t *scales;
    float *bias;
} ref_matrix;

void ref_matrix_dense(ref_matrix *rm, ref_rng *r, int n_in, int n_out, dtype w_type, int with_bias);
void ref_matrix_gptq(ref_matrix *rm, ref_rng *r, int n_in, int n_out, int group_size, int act_order,
                     int ragged, int with_bias);
void ref_matrix_free(ref_matrix *rm);
// The weight W[k][o] of y = x @ W, as the backend must interpret it.
double ref_matrix_weight(const host_matrix *m, int k, int o);

// ---- ops (same shapes as kernels/backend.h)
void ref_matmul(double *y, const float *x, const host_matrix *m, int n_tok);
void ref_embedding(double *out, const host_matrix *table, const int32_t *ids, int n_tok,
                   int row_start);
void ref_layernorm(double *out, const float *x, const float *w, const float *bias, int n_tok, int d,
                   float eps);
void ref_rmsnorm(double *out, const float *x, const float *w, int n_tok, int d, float eps);
void ref_qkv_split(double *q, double *k, double *v, const float *qkv, int n_tok, int n_head,
                   int n_head_kv, int head_dim);
// Angles in fp32 exactly as the header specifies; the rotation itself in double.
void ref_rotary(double *out, const float *x, const int32_t *pos, const float *base, int n_tok,
                int n_heads, int head_dim, int rot_dim, float pos_scale);
// Host copies of the batch: seqs [n_seq], block_tables as in attn_batch.
void ref_attention(double *out, const float *q, const float *k_cache, const float *v_cache,
                   const attn_seq *seqs, int n_seq, const int32_t *block_tables, int n_head,
                   int n_head_kv, int head_dim, float scale);
void ref_gelu(double *out, const float *x, size_t n);
void ref_swiglu(double *out, const float *gate_up, int n_tok, int d_ff);
void ref_add(double *out, const float *x, const float *y, size_t n);
void ref_gather_rows(double *out, const float *x, const int32_t *rows, int n_rows, int d);

// ---- comparison
// sum (out - ref)^2 / sum ref^2 (0 when both are all zero; +inf on a NaN in out).
double ref_nmse(const float *out, const double *ref, size_t n);
int ref_count_nan(const float *x, size_t n);
