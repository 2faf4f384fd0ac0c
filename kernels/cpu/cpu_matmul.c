// y[n_tok, n_out] = x[n_tok, n_in] @ W (+ bias) for dense and 4-bit GPTQ weights.
//
// Dense weights stay in their checkpoint dtype ([n_out, n_in]); each task owns a block of output
// rows and computes 4-row x 3-token tiles of dot products (rows are converted to f32 once per
// block when enough tokens reuse them). GPTQ weights stay 4-bit: decode (few tokens) streams
// qweight once in column strips, folding the zero point into a per-group sum of x; prefill
// dequantises a 16-column tile to f32 and runs an outer-product GEMM over it.
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_simd.h"
#include "kernels/gptq_layout.h"

#define INLINE static inline __attribute__((always_inline))

enum {
    DENSE_ROW_BLOCK = 16,         // output rows per dense task
    DENSE_NATIVE_MAX_TOK = 3,     // above this, a row block is converted to f32 once and reused
    GPTQ_GEMV_MAX_TOK = 4,        // up to this many tokens, qweight is streamed once (GEMV)
    GPTQ_STRIP = 128,             // output columns per GEMV task (512 contiguous bytes of a row)
    GPTQ_PREFETCH_ROWS = 8,       // packed rows the GEMV prefetches ahead (measured: 4 < 8 ~ 16)
    GPTQ_TILE = 16,               // output columns per dequantised prefill tile
    GPTQ_TILE_PREFETCH_ROWS = 16, // packed rows the tile dequantisation prefetches ahead
    GPTQ_GEMM_TOK = 6,            // tokens per GEMM micro-tile (12 accumulators)
};

// ---------------------------------------------------------------- conversion

INLINE void row_to_f32_typed(float *dst, const void *src, dtype t, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        v8f_store(dst + i, v8f_load_typed(src, t, i));
    for (; i < n; i++)
        dst[i] = f32_load_typed(src, t, i);
}

void cpu_row_to_f32(float *dst, const void *src, dtype t, size_t n) {
    switch (t) {
    case DTYPE_F16:
        row_to_f32_typed(dst, src, DTYPE_F16, n);
        break;
    case DTYPE_BF16:
        row_to_f32_typed(dst, src, DTYPE_BF16, n);
        break;
    default:
        row_to_f32_typed(dst, src, DTYPE_F32, n);
        break;
    }
}

// ---------------------------------------------------------------- weights

void cpu_matrix_free(backend *b, bk_matrix *m) {
    if (!m) return;
    free(m->bias);
    free(m->w);
    free(m->perm);
    free(m->qweight);
    free(m->run_start);
    free(m->run_group);
    free(m->qzeros);
    free(m->scales);
    free(m);
}

static void *dup_bytes(const void *src, size_t nbytes) {
    void *p = cpu_aligned_alloc(nbytes);
    if (p && nbytes) memcpy(p, src, nbytes);
    return p;
}

// Takes the shared sorted layout (kernels/gptq_layout.h) and records its non-empty groups as
// runs of whole packed rows, which lets the kernels read each group's scale and zero once per run.
static fl_code gptq_repack(bk_matrix *bm, const host_matrix *m, fl_error *err) {
    gptq_layout l;
    fl_code code = gptq_layout_create(&l, m, err);
    if (code != FL_OK) return code;
    int n_runs = 0;
    for (int g = 0; g < l.n_groups; g++)
        n_runs += l.group_row[g + 1] > l.group_row[g];
    bm->k_pad = l.k_pad;
    bm->n_runs = n_runs;
    bm->run_start = malloc((size_t)(n_runs + 1) * sizeof *bm->run_start);
    bm->run_group = malloc((size_t)n_runs * sizeof *bm->run_group);
    size_t qw_bytes = (size_t)l.k_pad / 8 * (size_t)l.n_out * sizeof(int32_t);
    if (l.qweight) {
        bm->qweight = (int32_t *)l.qweight;
        l.qweight = NULL;
    } else {
        bm->qweight = dup_bytes(m->qweight, qw_bytes);
    }
    bm->perm = l.perm;
    l.perm = NULL;
    if (!bm->run_start || !bm->run_group || !bm->qweight) {
        code = fl_error_set(err, FL_ENOMEM, "gptq matrix: out of memory repacking %d x %d",
                            l.n_in, l.n_out);
    } else {
        for (int g = 0, r = 0; g < l.n_groups; g++) {
            if (l.group_row[g + 1] == l.group_row[g]) continue;
            bm->run_start[r] = l.group_row[g];
            bm->run_group[r++] = g;
        }
        bm->run_start[n_runs] = l.k_pad / 8;
    }
    gptq_layout_free(&l);
    return code;
}

// m has passed kernels/backend.c's checks (shape, kind, dense dtype, GPTQ layout).
bk_matrix *cpu_matrix_create(backend *b, const host_matrix *m, fl_error *err) {
    bk_matrix *bm = calloc(1, sizeof *bm);
    if (!bm) {
        fl_error_set(err, FL_ENOMEM, "matrix: out of memory");
        return NULL;
    }
    bm->kind = m->kind;
    bm->n_in = m->n_in;
    bm->n_out = m->n_out;
    int ok = 1;
    if (m->bias) ok = (bm->bias = dup_bytes(m->bias, (size_t)m->n_out * sizeof(float))) != NULL;
    if (ok && m->kind == MATRIX_DENSE) {
        bm->w_type = m->w_type;
        ok = (bm->w = dup_bytes(m->w, (size_t)m->n_out * m->n_in * dtype_size(m->w_type))) != NULL;
    } else if (ok) {
        if (gptq_repack(bm, m, err) != FL_OK) {
            cpu_matrix_free(b, bm);
            return NULL;
        }
        size_t n_groups = (size_t)m->n_groups;
        bm->qzeros = dup_bytes(m->qzeros, n_groups * (size_t)(m->n_out / 8) * sizeof(int32_t));
        bm->scales = dup_bytes(m->scales, n_groups * (size_t)m->n_out * sizeof(uint16_t));
        ok = bm->qzeros && bm->scales;
    }
    if (!ok) {
        cpu_matrix_free(b, bm);
        fl_error_set(err, FL_ENOMEM, "matrix: out of memory copying %d x %d weights", m->n_out,
                     m->n_in);
        return NULL;
    }
    return bm;
}

// ---------------------------------------------------------------- dense

typedef struct dense_job {
    cpu_ctx *c;
    const bk_matrix *m;
    const float *x; // [n_tok, n_in]
    float *y;       // [n_tok, n_out]
    int n_tok;
} dense_job;

// y[i, r] = dot(W row r, x row i) for R rows and T tokens; R, T and t are constants.
INLINE void dense_tile(const void *w, dtype t, int n_in, const float *x, float *y, int n_out, int R,
                       int T) {
    v8f acc[4][3] = {{{0}}};
    int k = 0;
    for (; k + 8 <= n_in; k += 8) {
        v8f xv[3];
#pragma GCC unroll 3
        for (int i = 0; i < T; i++)
            xv[i] = v8f_load(x + (size_t)i * n_in + k);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            v8f wv = v8f_load_typed(w, t, (size_t)r * n_in + k);
#pragma GCC unroll 3
            for (int i = 0; i < T; i++)
                acc[r][i] += wv * xv[i];
        }
    }
    for (int r = 0; r < R; r++) {
        for (int i = 0; i < T; i++) {
            float s = v8f_sum(acc[r][i]);
            for (int kk = k; kk < n_in; kk++)
                s += f32_load_typed(w, t, (size_t)r * n_in + kk) * x[(size_t)i * n_in + kk];
            y[(size_t)i * n_out + r] = s;
        }
    }
}

INLINE void dense_tile_rows(const void *w, dtype t, int n_in, const float *x, float *y, int n_out,
                            int R, int T) {
    switch (T) {
    case 3:
        dense_tile(w, t, n_in, x, y, n_out, R, 3);
        break;
    case 2:
        dense_tile(w, t, n_in, x, y, n_out, R, 2);
        break;
    default:
        dense_tile(w, t, n_in, x, y, n_out, R, 1);
        break;
    }
}

// Output rows [o0, o0 + nr) for every token; w points at row o0.
INLINE void dense_block_typed(const dense_job *j, const void *w, dtype t, int o0, int nr) {
    int n_in = j->m->n_in, n_out = j->m->n_out;
    size_t esz = t == DTYPE_F32 ? 4 : 2;
    for (int t0 = 0; t0 < j->n_tok; t0 += 3) {
        int T = j->n_tok - t0 < 3 ? j->n_tok - t0 : 3;
        const float *x = j->x + (size_t)t0 * n_in;
        float *y = j->y + (size_t)t0 * n_out + o0;
        int r = 0;
        for (; r + 4 <= nr; r += 4)
            dense_tile_rows((const char *)w + (size_t)r * n_in * esz, t, n_in, x, y + r, n_out, 4,
                            T);
        for (; r < nr; r++)
            dense_tile_rows((const char *)w + (size_t)r * n_in * esz, t, n_in, x, y + r, n_out, 1,
                            T);
    }
}

static void dense_block_f32(const dense_job *j, const void *w, int o0, int nr) {
    dense_block_typed(j, w, DTYPE_F32, o0, nr);
}
static void dense_block_f16(const dense_job *j, const void *w, int o0, int nr) {
    dense_block_typed(j, w, DTYPE_F16, o0, nr);
}
static void dense_block_bf16(const dense_job *j, const void *w, int o0, int nr) {
    dense_block_typed(j, w, DTYPE_BF16, o0, nr);
}

static void add_bias(float *y, const float *bias, int n_tok, int n_out, int o0, int nc) {
    if (!bias) return;
    for (int t = 0; t < n_tok; t++)
        for (int o = o0; o < o0 + nc; o++)
            y[(size_t)t * n_out + o] += bias[o];
}

static void dense_task(void *arg, int64_t begin, int64_t end, int thread) {
    const dense_job *j = arg;
    const bk_matrix *m = j->m;
    size_t esz = dtype_size(m->w_type);
    for (int64_t blk = begin; blk < end; blk++) {
        int o0 = (int)blk * DENSE_ROW_BLOCK;
        int nr = m->n_out - o0 < DENSE_ROW_BLOCK ? m->n_out - o0 : DENSE_ROW_BLOCK;
        const void *w = (const char *)m->w + (size_t)o0 * m->n_in * esz;
        dtype t = m->w_type;
        if (t != DTYPE_F32 && j->n_tok > DENSE_NATIVE_MAX_TOK) {
            float *s = cpu_scratch_get(j->c, &j->c->thread_scratch[thread],
                                       (size_t)nr * m->n_in * sizeof(float));
            if (!s) return;
            cpu_row_to_f32(s, w, t, (size_t)nr * m->n_in);
            w = s;
            t = DTYPE_F32;
        }
        switch (t) {
        case DTYPE_F16:
            dense_block_f16(j, w, o0, nr);
            break;
        case DTYPE_BF16:
            dense_block_bf16(j, w, o0, nr);
            break;
        default:
            dense_block_f32(j, w, o0, nr);
            break;
        }
        add_bias(j->y, m->bias, j->n_tok, m->n_out, o0, nr);
    }
}

// ---------------------------------------------------------------- GPTQ

typedef struct gptq_job {
    cpu_ctx *c;
    const bk_matrix *m;
    const float *x;    // [n_tok, k_pad] in sorted input order (GEMV: nibble-scaled, see below)
    const float *xsum; // [n_tok, n_runs] sum of x over each run (GEMV only)
    float *y;          // [n_tok, n_out]
    int n_tok;
} gptq_job;

// Nibble j of a packed word is isolated by masking alone (no shift): it then reads as
// q * 16^j, which the GEMV cancels by pre-scaling x by 16^-j. Nibble 7 is shifted down instead
// (masking would set the sign bit).
static const float gemv_nibble_scale[8] = {1.0f,     0x1p-4f,  0x1p-8f,  0x1p-12f,
                                           0x1p-16f, 0x1p-20f, 0x1p-24f, 1.0f};

static inline v8f gptq_zeros(const bk_matrix *m, int g, int o) {
    uint32_t qz = (uint32_t)m->qzeros[(size_t)g * (m->n_out / 8) + o / 8];
    v8u shifts = {0, 4, 8, 12, 16, 20, 24, 28};
    v8u z = (((v8u){qz, qz, qz, qz, qz, qz, qz, qz} >> shifts) & 0xFu) + 1u;
    return __builtin_convertvector((v8i)z, v8f);
}

// Columns [o0, o0 + 8 * nv) for T tokens (a constant) starting at token t0.
INLINE void gptq_gemv_strip(const gptq_job *j, int o0, int nv, int t0, int T) {
    const bk_matrix *m = j->m;
    size_t n_out = (size_t)m->n_out;
    float acc[GPTQ_GEMV_MAX_TOK][GPTQ_STRIP] __attribute__((aligned(32)));
    float yacc[GPTQ_GEMV_MAX_TOK][GPTQ_STRIP] __attribute__((aligned(32)));
    memset(yacc, 0, sizeof yacc);
    const v8u masks[7] = {
        (v8u){0} + 0xFu,     (v8u){0} + 0xF0u,     (v8u){0} + 0xF00u,     (v8u){0} + 0xF000u,
        (v8u){0} + 0xF0000u, (v8u){0} + 0xF00000u, (v8u){0} + 0xF000000u,
    };
    const int32_t *qw_end = m->qweight + (size_t)(m->k_pad / 8) * n_out;
    for (int r = 0; r < m->n_runs; r++) {
        memset(acc, 0, sizeof acc);
        for (int p = m->run_start[r]; p < m->run_start[r + 1]; p++) {
            const int32_t *row = m->qweight + (size_t)p * n_out + o0;
            const int32_t *ahead = row + GPTQ_PREFETCH_ROWS * n_out;
            if (ahead < qw_end)
                for (int c = 0; c < 8 * nv; c += 16)
                    __builtin_prefetch(ahead + c);
            v8f xb[GPTQ_GEMV_MAX_TOK][8];
#pragma GCC unroll 4
            for (int i = 0; i < T; i++)
                for (int jj = 0; jj < 8; jj++)
                    xb[i][jj] = v8f_set1(j->x[(size_t)(t0 + i) * m->k_pad + 8 * p + jj]);
            for (int v = 0; v < nv; v++) {
                v8u q = v8u_load(row + 8 * v);
                v8f a[GPTQ_GEMV_MAX_TOK];
#pragma GCC unroll 4
                for (int i = 0; i < T; i++)
                    a[i] = v8f_load(acc[i] + 8 * v);
#pragma GCC unroll 7
                for (int jj = 0; jj < 7; jj++) {
                    v8f f = __builtin_convertvector((v8i)(q & masks[jj]), v8f);
#pragma GCC unroll 4
                    for (int i = 0; i < T; i++)
                        a[i] += xb[i][jj] * f;
                }
                v8f f7 = __builtin_convertvector((v8i)(q >> 28), v8f);
#pragma GCC unroll 4
                for (int i = 0; i < T; i++) {
                    a[i] += xb[i][7] * f7;
                    v8f_store(acc[i] + 8 * v, a[i]);
                }
            }
        }
        // sum_k x_k s (q_k - z) = s (sum_k x_k q_k - z sum_k x_k) over the run's group
        int g = m->run_group[r];
        for (int v = 0; v < nv; v++) {
            int o = o0 + 8 * v;
            v8f s = v8f_load_f16(m->scales + (size_t)g * n_out + o);
            v8f z = gptq_zeros(m, g, o);
            for (int i = 0; i < T; i++) {
                v8f xs = v8f_set1(j->xsum[(size_t)(t0 + i) * m->n_runs + r]);
                v8f_store(yacc[i] + 8 * v,
                          v8f_load(yacc[i] + 8 * v) + s * (v8f_load(acc[i] + 8 * v) - z * xs));
            }
        }
    }
    for (int i = 0; i < T; i++) {
        float *y = j->y + (size_t)(t0 + i) * n_out + o0;
        for (int c = 0; c < 8 * nv; c++)
            y[c] = yacc[i][c] + (m->bias ? m->bias[o0 + c] : 0.0f);
    }
}

static void gptq_gemv_task(void *arg, int64_t begin, int64_t end, int thread) {
    const gptq_job *j = arg;
    for (int64_t s = begin; s < end; s++) {
        int o0 = (int)s * GPTQ_STRIP;
        int nv = (j->m->n_out - o0 < GPTQ_STRIP ? j->m->n_out - o0 : GPTQ_STRIP) / 8;
        switch (j->n_tok) {
        case 1:
            gptq_gemv_strip(j, o0, nv, 0, 1);
            break;
        case 2:
            gptq_gemv_strip(j, o0, nv, 0, 2);
            break;
        case 3:
            gptq_gemv_strip(j, o0, nv, 0, 3);
            break;
        default:
            gptq_gemv_strip(j, o0, nv, 0, 4);
            break;
        }
    }
}

// Dequantises columns [o0, o0 + 8 * nv) of every sorted input into w[k_pad, GPTQ_TILE].
static void gptq_dequant_tile(const bk_matrix *m, int o0, int nv, float *w) {
    size_t n_out = (size_t)m->n_out;
    const int32_t *qw_end = m->qweight + (size_t)(m->k_pad / 8) * n_out;
    for (int r = 0; r < m->n_runs; r++) {
        int g = m->run_group[r];
        v8f s[2], z[2];
        for (int v = 0; v < nv; v++) {
            s[v] = v8f_load_f16(m->scales + (size_t)g * n_out + o0 + 8 * v);
            z[v] = gptq_zeros(m, g, o0 + 8 * v);
        }
        for (int p = m->run_start[r]; p < m->run_start[r + 1]; p++) {
            // Rows are n_out words apart: without prefetching, every row is a fresh miss.
            const int32_t *ahead = m->qweight + (size_t)(p + GPTQ_TILE_PREFETCH_ROWS) * n_out + o0;
            if (ahead + 8 * nv <= qw_end) {
                __builtin_prefetch(ahead);
                __builtin_prefetch(ahead + 8 * nv - 1);
            }
            for (int v = 0; v < nv; v++) {
                v8u q = v8u_load(m->qweight + (size_t)p * n_out + o0 + 8 * v);
                for (int jj = 0; jj < 8; jj++) {
                    v8f f = __builtin_convertvector((v8i)((q >> (4 * jj)) & 0xFu), v8f);
                    v8f_store(w + (size_t)(8 * p + jj) * GPTQ_TILE + 8 * v, (f - z[v]) * s[v]);
                }
            }
        }
    }
}

// y[i, 0 .. 8 NV) = sum_k x[i, k] w[k, :] for T tokens; T and NV are constants.
INLINE void gptq_gemm_tile(const float *w, int k_pad, const float *x, float *y, int n_out, int T,
                           int NV) {
    v8f acc[GPTQ_GEMM_TOK][2] = {{{0}}};
    for (int k = 0; k < k_pad; k++) {
        v8f w0 = v8f_load(w + (size_t)k * GPTQ_TILE);
        v8f w1 = NV == 2 ? v8f_load(w + (size_t)k * GPTQ_TILE + 8) : w0;
#pragma GCC unroll 6
        for (int i = 0; i < T; i++) {
            v8f xb = v8f_set1(x[(size_t)i * k_pad + k]);
            acc[i][0] += xb * w0;
            if (NV == 2) acc[i][1] += xb * w1;
        }
    }
    for (int i = 0; i < T; i++)
        for (int v = 0; v < NV; v++)
            v8f_store(y + (size_t)i * n_out + 8 * v, acc[i][v]);
}

INLINE void gptq_gemm_tokens(const float *w, int k_pad, const float *x, float *y, int n_out, int T,
                             int NV) {
    switch (T) {
    case 6:
        gptq_gemm_tile(w, k_pad, x, y, n_out, 6, NV);
        break;
    case 5:
        gptq_gemm_tile(w, k_pad, x, y, n_out, 5, NV);
        break;
    case 4:
        gptq_gemm_tile(w, k_pad, x, y, n_out, 4, NV);
        break;
    case 3:
        gptq_gemm_tile(w, k_pad, x, y, n_out, 3, NV);
        break;
    case 2:
        gptq_gemm_tile(w, k_pad, x, y, n_out, 2, NV);
        break;
    default:
        gptq_gemm_tile(w, k_pad, x, y, n_out, 1, NV);
        break;
    }
}

static void gptq_gemm_task(void *arg, int64_t begin, int64_t end, int thread) {
    const gptq_job *j = arg;
    const bk_matrix *m = j->m;
    float *w = cpu_scratch_get(j->c, &j->c->thread_scratch[thread],
                               (size_t)m->k_pad * GPTQ_TILE * sizeof(float));
    if (!w) return;
    for (int64_t tile = begin; tile < end; tile++) {
        int o0 = (int)tile * GPTQ_TILE;
        int nv = (m->n_out - o0 < GPTQ_TILE ? m->n_out - o0 : GPTQ_TILE) / 8;
        gptq_dequant_tile(m, o0, nv, w);
        for (int t0 = 0; t0 < j->n_tok; t0 += GPTQ_GEMM_TOK) {
            int T = j->n_tok - t0 < GPTQ_GEMM_TOK ? j->n_tok - t0 : GPTQ_GEMM_TOK;
            const float *x = j->x + (size_t)t0 * m->k_pad;
            float *y = j->y + (size_t)t0 * m->n_out + o0;
            if (nv == 2)
                gptq_gemm_tokens(w, m->k_pad, x, y, m->n_out, T, 2);
            else
                gptq_gemm_tokens(w, m->k_pad, x, y, m->n_out, T, 1);
        }
        add_bias(j->y, m->bias, j->n_tok, m->n_out, o0, 8 * nv);
    }
}

// Gathers x into sorted input order (zeros for padding). For the GEMV also scales input k by
// gemv_nibble_scale[k % 8] and sums each run.
static void gptq_prepare_x(const bk_matrix *m, const float *x, int n_tok, int for_gemv, float *xp,
                           float *xsum) {
    for (int t = 0; t < n_tok; t++) {
        const float *xt = x + (size_t)t * m->n_in;
        float *xpt = xp + (size_t)t * m->k_pad;
        for (int r = 0; r < m->n_runs; r++) {
            double sum = 0.0;
            for (int k = 8 * m->run_start[r]; k < 8 * m->run_start[r + 1]; k++) {
                float v = m->perm ? (m->perm[k] >= 0 ? xt[m->perm[k]] : 0.0f) : xt[k];
                sum += v;
                xpt[k] = for_gemv ? v * gemv_nibble_scale[k % 8] : v;
            }
            if (for_gemv) xsum[(size_t)t * m->n_runs + r] = (float)sum;
        }
    }
}

static void gptq_matmul(cpu_ctx *c, float *y, const float *x, const bk_matrix *m, int n_tok) {
    gptq_job j = {c, m, x, NULL, y, n_tok};
    int for_gemv = n_tok <= GPTQ_GEMV_MAX_TOK;
    if (for_gemv || m->perm) {
        size_t nx = (size_t)n_tok * m->k_pad, nsum = (size_t)n_tok * m->n_runs;
        float *xp = cpu_scratch_get(c, &c->step_scratch, (nx + nsum) * sizeof(float));
        if (!xp) return;
        gptq_prepare_x(m, x, n_tok, for_gemv, xp, xp + nx);
        j.x = xp;
        j.xsum = xp + nx;
    }
    if (for_gemv)
        thread_pool_for(c->pool, (m->n_out + GPTQ_STRIP - 1) / GPTQ_STRIP, 1, gptq_gemv_task, &j);
    else
        thread_pool_for(c->pool, (m->n_out + GPTQ_TILE - 1) / GPTQ_TILE, 1, gptq_gemm_task, &j);
}

void cpu_matmul(backend *b, void *out, const void *x, const bk_matrix *w, int n_tok) {
    cpu_ctx *c = b->ctx;
    if (w->kind == MATRIX_GPTQ) {
        gptq_matmul(c, out, x, w, n_tok);
        return;
    }
    dense_job j = {c, w, x, out, n_tok};
    thread_pool_for(c->pool, (w->n_out + DENSE_ROW_BLOCK - 1) / DENSE_ROW_BLOCK, 1, dense_task, &j);
}
