// Straightforward double-precision references for the backend op tests.
#include "tests/unit/helpers/op_reference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------- random inputs

uint32_t ref_rng_u32(ref_rng *r) {
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}

float ref_rng_uniform(ref_rng *r, float lo, float hi) {
    return lo + (hi - lo) * (float)(ref_rng_u32(r) >> 8) * 0x1p-24f;
}

void ref_fill_uniform(ref_rng *r, float *x, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++)
        x[i] = ref_rng_uniform(r, lo, hi);
}

static void fill_bias(ref_matrix *rm, ref_rng *r, int n_out, int with_bias) {
    if (!with_bias) return;
    rm->bias = malloc((size_t)n_out * sizeof(float));
    ref_fill_uniform(r, rm->bias, (size_t)n_out, -1.0f, 1.0f);
    rm->m.bias = rm->bias;
}

void ref_matrix_dense(ref_matrix *rm, ref_rng *r, int n_in, int n_out, dtype w_type,
                      int with_bias) {
    memset(rm, 0, sizeof *rm);
    size_t n = (size_t)n_in * n_out;
    rm->w = malloc(n * dtype_size(w_type));
    for (size_t i = 0; i < n; i++) {
        float v = ref_rng_uniform(r, -1.0f, 1.0f);
        if (w_type == DTYPE_F16)
            ((uint16_t *)rm->w)[i] = f32_to_fp16(v);
        else if (w_type == DTYPE_BF16)
            ((uint16_t *)rm->w)[i] = f32_to_bf16(v);
        else
            ((float *)rm->w)[i] = v;
    }
    rm->m = (host_matrix){
        .kind = MATRIX_DENSE, .n_in = n_in, .n_out = n_out, .w = rm->w, .w_type = w_type};
    fill_bias(rm, r, n_out, with_bias);
}

void ref_matrix_gptq(ref_matrix *rm, ref_rng *r, int n_in, int n_out, int group_size, int act_order,
                     int ragged, int with_bias) {
    memset(rm, 0, sizeof *rm);
    int n_groups = (n_in + group_size - 1) / group_size;
    rm->qweight = malloc((size_t)n_in / 8 * n_out * sizeof(int32_t));
    rm->qzeros = malloc((size_t)n_groups * n_out / 8 * sizeof(int32_t));
    rm->scales = malloc((size_t)n_groups * n_out * sizeof(uint16_t));
    rm->g_idx = malloc((size_t)n_in * sizeof(int32_t));
    for (size_t i = 0; i < (size_t)n_in / 8 * n_out; i++)
        rm->qweight[i] = (int32_t)ref_rng_u32(r);
    for (size_t i = 0; i < (size_t)n_groups * n_out / 8; i++)
        rm->qzeros[i] = (int32_t)ref_rng_u32(r);
    for (size_t i = 0; i < (size_t)n_groups * n_out; i++)
        rm->scales[i] = f32_to_fp16(ref_rng_uniform(r, 0.002f, 0.02f));
    for (int k = 0; k < n_in; k++)
        rm->g_idx[k] = ragged ? (int32_t)(ref_rng_u32(r) % (uint32_t)n_groups) : k / group_size;
    if (act_order) { // Fisher-Yates shuffle of the group labels
        for (int k = n_in - 1; k > 0; k--) {
            int o = (int)(ref_rng_u32(r) % (uint32_t)(k + 1));
            int32_t t = rm->g_idx[k];
            rm->g_idx[k] = rm->g_idx[o];
            rm->g_idx[o] = t;
        }
    }
    rm->m = (host_matrix){.kind = MATRIX_GPTQ,
                          .n_in = n_in,
                          .n_out = n_out,
                          .qweight = rm->qweight,
                          .qzeros = rm->qzeros,
                          .scales = rm->scales,
                          .g_idx = rm->g_idx,
                          .bits = 4,
                          .group_size = group_size,
                          .n_groups = n_groups};
    fill_bias(rm, r, n_out, with_bias);
}

void ref_matrix_free(ref_matrix *rm) {
    free(rm->w);
    free(rm->qweight);
    free(rm->qzeros);
    free(rm->g_idx);
    free(rm->scales);
    free(rm->bias);
    memset(rm, 0, sizeof *rm);
}

double ref_matrix_weight(const host_matrix *m, int k, int o) {
    if (m->kind == MATRIX_DENSE) {
        size_t i = (size_t)o * m->n_in + k; // [n_out, n_in]
        if (m->w_type == DTYPE_F16) return fp16_to_f32(((const uint16_t *)m->w)[i]);
        if (m->w_type == DTYPE_BF16) return bf16_to_f32(((const uint16_t *)m->w)[i]);
        return ((const float *)m->w)[i];
    }
    int g = m->g_idx[k];
    uint32_t word = (uint32_t)m->qweight[(size_t)(k / 8) * m->n_out + o];
    uint32_t zword = (uint32_t)m->qzeros[(size_t)g * (m->n_out / 8) + o / 8];
    int q = (int)((word >> (4 * (k % 8))) & 0xF);
    int zero = (int)((zword >> (4 * (o % 8))) & 0xF) + 1; // stored as zero - 1
    double scale = fp16_to_f32(m->scales[(size_t)g * m->n_out + o]);
    return scale * (q - zero);
}

// ---------------------------------------------------------------- ops

void ref_matmul(double *y, const float *x, const host_matrix *m, int n_tok) {
    double *w = malloc((size_t)m->n_in * m->n_out * sizeof(double)); // [n_in, n_out]
    for (int k = 0; k < m->n_in; k++)
        for (int o = 0; o < m->n_out; o++)
            w[(size_t)k * m->n_out + o] = ref_matrix_weight(m, k, o);
    for (int t = 0; t < n_tok; t++) {
        for (int o = 0; o < m->n_out; o++) {
            double s = m->bias ? m->bias[o] : 0.0;
            for (int k = 0; k < m->n_in; k++)
                s += (double)x[(size_t)t * m->n_in + k] * w[(size_t)k * m->n_out + o];
            y[(size_t)t * m->n_out + o] = s;
        }
    }
    free(w);
}

void ref_embedding(double *out, const host_matrix *table, const int32_t *ids, int n_tok,
                   int row_start) {
    int d = table->n_in;
    for (int t = 0; t < n_tok; t++) {
        int row = ids[t] - row_start;
        for (int i = 0; i < d; i++)
            out[(size_t)t * d + i] =
                row >= 0 && row < table->n_out ? ref_matrix_weight(table, i, row) : 0.0;
    }
}

void ref_layernorm(double *out, const float *x, const float *w, const float *bias, int n_tok, int d,
                   float eps) {
    for (int t = 0; t < n_tok; t++) {
        const float *xr = x + (size_t)t * d;
        double mean = 0.0, var = 0.0;
        for (int i = 0; i < d; i++)
            mean += xr[i];
        mean /= d;
        for (int i = 0; i < d; i++)
            var += (xr[i] - mean) * (xr[i] - mean);
        var /= d;
        for (int i = 0; i < d; i++)
            out[(size_t)t * d + i] =
                (xr[i] - mean) / sqrt(var + eps) * w[i] + (bias ? bias[i] : 0.0);
    }
}

void ref_rmsnorm(double *out, const float *x, const float *w, int n_tok, int d, float eps) {
    for (int t = 0; t < n_tok; t++) {
        const float *xr = x + (size_t)t * d;
        double ms = 0.0;
        for (int i = 0; i < d; i++)
            ms += (double)xr[i] * xr[i];
        ms /= d;
        for (int i = 0; i < d; i++)
            out[(size_t)t * d + i] = xr[i] / sqrt(ms + eps) * w[i];
    }
}

void ref_qkv_split(double *q, double *k, double *v, const float *qkv, int n_tok, int n_head,
                   int n_head_kv, int head_dim) {
    int group = n_head / n_head_kv;
    for (int t = 0; t < n_tok; t++) {
        const float *row = qkv + (size_t)t * (n_head + 2 * n_head_kv) * head_dim;
        for (int h = 0; h < n_head_kv; h++) {
            for (int s = 0; s < group + 2; s++) {
                const float *src = row + ((size_t)h * (group + 2) + s) * head_dim;
                double *dst = s < group    ? q + ((size_t)t * n_head + h * group + s) * head_dim
                              : s == group ? k + ((size_t)t * n_head_kv + h) * head_dim
                                           : v + ((size_t)t * n_head_kv + h) * head_dim;
                for (int i = 0; i < head_dim; i++)
                    dst[i] = src[i];
            }
        }
    }
}

void ref_rotary(double *out, const float *x, const int32_t *pos, const float *base, int n_tok,
                int n_heads, int head_dim, int rot_dim, float pos_scale) {
    int half = rot_dim / 2;
    for (int t = 0; t < n_tok; t++) {
        for (int h = 0; h < n_heads; h++) {
            const float *xr = x + ((size_t)t * n_heads + h) * head_dim;
            double *o = out + ((size_t)t * n_heads + h) * head_dim;
            for (int i = 0; i < head_dim; i++)
                o[i] = xr[i];
            for (int i = 0; i < half; i++) {
                float inv_freq = 1.0f / powf(base[t], (float)(2 * i) / (float)rot_dim);
                float angle = (float)pos[t] * pos_scale * inv_freq;
                double c = cos((double)angle), s = sin((double)angle);
                o[i] = xr[i] * c - xr[i + half] * s;
                o[i + half] = xr[i + half] * c + xr[i] * s;
            }
        }
    }
}

void ref_attention(double *out, const float *q, const float *k_cache, const float *v_cache,
                   const attn_seq *seqs, int n_seq, const int32_t *block_tables, int n_head,
                   int n_head_kv, int head_dim, float scale) {
    for (int s = 0; s < n_seq; s++) {
        const attn_seq *sq = &seqs[s];
        int n_ctx_max = sq->n_past + sq->n_q;
        double *p = malloc((size_t)(n_ctx_max > 0 ? n_ctx_max : 1) * sizeof(double));
        for (int i = 0; i < sq->n_q; i++) {
            int t = sq->q_start + i, n_ctx = sq->n_past + i + 1;
            for (int h = 0; h < n_head; h++) {
                int kvh = h / (n_head / n_head_kv);
                const float *qr = q + ((size_t)t * n_head + h) * head_dim;
                double max = -INFINITY, sum = 0.0;
                for (int j = 0; j < n_ctx; j++) {
                    int block = block_tables[sq->block_table_offset + j / KV_BLOCK_SIZE];
                    const float *kr = k_cache + (((size_t)block * n_head_kv + kvh) * KV_BLOCK_SIZE +
                                                 j % KV_BLOCK_SIZE) *
                                                    head_dim;
                    double dot = 0.0;
                    for (int d = 0; d < head_dim; d++)
                        dot += (double)qr[d] * kr[d];
                    p[j] = dot * scale;
                    if (p[j] > max) max = p[j];
                }
                for (int j = 0; j < n_ctx; j++)
                    sum += (p[j] = exp(p[j] - max));
                double *o = out + ((size_t)t * n_head + h) * head_dim;
                for (int d = 0; d < head_dim; d++)
                    o[d] = 0.0;
                for (int j = 0; j < n_ctx; j++) {
                    int block = block_tables[sq->block_table_offset + j / KV_BLOCK_SIZE];
                    const float *vr = v_cache + (((size_t)block * n_head_kv + kvh) * KV_BLOCK_SIZE +
                                                 j % KV_BLOCK_SIZE) *
                                                    head_dim;
                    for (int d = 0; d < head_dim; d++)
                        o[d] += p[j] / sum * vr[d];
                }
            }
        }
        free(p);
    }
}

void ref_gelu(double *out, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        out[i] = 0.5 * x[i] * (1.0 + erf(x[i] / sqrt(2.0)));
}

void ref_swiglu(double *out, const float *gate_up, int n_tok, int d_ff) {
    for (int t = 0; t < n_tok; t++) {
        for (int f = 0; f < d_ff; f++) {
            double g = gate_up[(size_t)t * 2 * d_ff + f],
                   u = gate_up[(size_t)t * 2 * d_ff + d_ff + f];
            out[(size_t)t * d_ff + f] = g / (1.0 + exp(-g)) * u;
        }
    }
}

void ref_add(double *out, const float *x, const float *y, size_t n) {
    for (size_t i = 0; i < n; i++)
        out[i] = (double)x[i] + y[i];
}

void ref_gather_rows(double *out, const float *x, const int32_t *rows, int n_rows, int d) {
    for (int r = 0; r < n_rows; r++)
        for (int i = 0; i < d; i++)
            out[(size_t)r * d + i] = x[(size_t)rows[r] * d + i];
}

// ---------------------------------------------------------------- comparison

double ref_nmse(const float *out, const double *ref, size_t n) {
    double err = 0.0, norm = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(out[i])) return INFINITY;
        err += (out[i] - ref[i]) * (out[i] - ref[i]);
        norm += ref[i] * ref[i];
    }
    return norm > 0.0 ? err / norm : err;
}

int ref_count_nan(const float *x, size_t n) {
    int count = 0;
    for (size_t i = 0; i < n; i++)
        count += isnan(x[i]) != 0;
    return count;
}
