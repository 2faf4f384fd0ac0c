// Causal attention over the paged KV cache for a ragged batch.
//
// Work is split into tiles of up to ATTN_TILE_ROWS query rows that share a sequence and a KV
// head (several heads of a GQA group and/or consecutive tokens), so every K and V row read from
// the cache serves all rows of the tile. Per tile: scores S = Q K^T block by block (4 rows x 2
// keys of dot products at a time), an f32 softmax with max subtraction per row (vectorised
// exp), then O = P V. S lives in a per-thread scratch of rows x n_ctx floats: never L x L.
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_simd.h"

#define INLINE static inline __attribute__((always_inline))

enum { ATTN_TILE_ROWS = 8 };

typedef struct attn_tile {
    int32_t seq, kvh;
    int32_t t0, nt; // batch rows [t0, t0 + nt)
    int32_t h0, nh; // query heads [h0, h0 + nh)
} attn_tile;

typedef struct attn_job {
    cpu_ctx *c;
    float *out;           // [n_tok, n_head, head_dim]
    const float *q;       // [n_tok, n_head, head_dim]
    const float *k_cache; // [n_blocks, n_head_kv, KV_BLOCK_SIZE, head_dim]
    const float *v_cache; // [n_blocks, n_head_kv, KV_BLOCK_SIZE, head_dim]
    const attn_batch *ab;
    const attn_tile *tiles;
    int n_head, n_head_kv, head_dim;
    float scale;
} attn_job;

// s_r[i .. i + 8/RR) = scale * q_r . k_i for RR rows (4 or 1) and 8/RR keys starting at k:
// eight independent dot products, reduced together.
INLINE void attn_scores_rows(const float *const *q, const float *k, int hd, float scale, float *s,
                             size_t lds, int RR) {
    enum { KK = 8 };
    int nk = KK / RR;
    v8f acc[8] = {0};
    int d = 0;
    for (; d + 8 <= hd; d += 8) {
        v8f kv[8], qv[4];
#pragma GCC unroll 8
        for (int i = 0; i < nk; i++)
            kv[i] = v8f_load(k + (size_t)i * hd + d);
#pragma GCC unroll 4
        for (int r = 0; r < RR; r++)
            qv[r] = v8f_load(q[r] + d);
#pragma GCC unroll 4
        for (int r = 0; r < RR; r++)
#pragma GCC unroll 8
            for (int i = 0; i < nk; i++)
                acc[r * nk + i] += qv[r] * kv[i];
    }
    v8f sums = v8f_sum8(acc);
    for (int r = 0; r < RR; r++) {
        for (int i = 0; i < nk; i++) {
            float v = sums[r * nk + i];
            for (int dd = d; dd < hd; dd++)
                v += q[r][dd] * k[(size_t)i * hd + dd];
            s[r * lds + i] = v * scale;
        }
    }
}

// o_r[c .. c + 8 NV) = sum_p s_r[p] v_p[c ..] for RR (1 or 2) rows over positions [0, n).
INLINE void attn_pv_rows(const attn_job *j, const int32_t *table, int kvh, const float *s,
                         size_t lds, int n, int c, float *const *o, const float *inv, int RR,
                         int NV) {
    int hd = j->head_dim;
    v8f acc[2][4] = {{{0}}};
    for (int p0 = 0; p0 < n; p0 += KV_BLOCK_SIZE) {
        const float *vb = j->v_cache + ((size_t)table[p0 / KV_BLOCK_SIZE] * j->n_head_kv + kvh) *
                                           KV_BLOCK_SIZE * hd;
        int nb = n - p0 < KV_BLOCK_SIZE ? n - p0 : KV_BLOCK_SIZE;
        for (int i = 0; i < nb; i++) {
            const float *v = vb + (size_t)i * hd + c;
            v8f vv[4];
#pragma GCC unroll 4
            for (int k = 0; k < NV; k++)
                vv[k] = v8f_load(v + 8 * k);
#pragma GCC unroll 2
            for (int r = 0; r < RR; r++) {
                v8f pb = v8f_set1(s[r * lds + p0 + i]);
#pragma GCC unroll 4
                for (int k = 0; k < NV; k++)
                    acc[r][k] += pb * vv[k];
            }
        }
    }
    for (int r = 0; r < RR; r++)
        for (int k = 0; k < NV; k++)
            v8f_store(o[r] + c + 8 * k, acc[r][k] * v8f_set1(inv[r]));
}

static void attn_pv_tail(const attn_job *j, const int32_t *table, int kvh, const float *s, int n,
                         int c, float *o, float inv) {
    for (int d = c; d < j->head_dim; d++) {
        float acc = 0.0f;
        for (int p = 0; p < n; p++) {
            size_t blk = (size_t)table[p / KV_BLOCK_SIZE] * j->n_head_kv + kvh;
            acc += s[p] * j->v_cache[(blk * KV_BLOCK_SIZE + p % KV_BLOCK_SIZE) * j->head_dim + d];
        }
        o[d] = acc * inv;
    }
}

// s[0, n) = exp(s - max s) and s[n, n_ctx) = 0 (masked: rows of a tile share the PV loop);
// returns the sum. s has room for whole vectors up to n_ctx rounded up to a block.
static float attn_softmax_row(float *s, int n, int n_ctx) {
    v8f vmax = v8f_set1(-INFINITY), vsum = {0};
    int full = n / 8 * 8;
    for (int p = 0; p < full; p += 8)
        vmax = v8f_max(vmax, v8f_load(s + p));
    float max = -INFINITY;
    for (int i = 0; i < 8; i++)
        max = vmax[i] > max ? vmax[i] : max;
    for (int p = full; p < n; p++)
        max = s[p] > max ? s[p] : max;
    for (int p = 0; p < full; p += 8) {
        v8f e = v8f_exp(v8f_load(s + p) - v8f_set1(max));
        v8f_store(s + p, e);
        vsum += e;
    }
    float sum = v8f_sum(vsum);
    if (full < n) { // the last partial vector; lanes past n may hold stale scores
        v8f e = v8f_exp(v8f_load(s + full) - v8f_set1(max));
        for (int i = 0; i < 8; i++) {
            s[full + i] = full + i < n ? e[i] : 0.0f;
            sum += s[full + i];
        }
        full += 8;
    }
    for (int p = full; p < n_ctx; p++)
        s[p] = 0.0f;
    return sum;
}

static void attention_task(void *arg, int64_t begin, int64_t end, int thread) {
    const attn_job *j = arg;
    int hd = j->head_dim;
    for (int64_t ti = begin; ti < end; ti++) {
        const attn_tile *tile = &j->tiles[ti];
        const attn_seq *seq = &j->ab->seqs_dev[tile->seq];
        const int32_t *table = j->ab->block_tables_dev + seq->block_table_offset;
        int rows = tile->nt * tile->nh;
        int first =
            seq->n_past + (tile->t0 - seq->q_start); // context of the tile's first token - 1
        int n_ctx = first + tile->nt;                // context of its last token
        size_t lds = (size_t)(n_ctx + KV_BLOCK_SIZE - 1) / KV_BLOCK_SIZE * KV_BLOCK_SIZE;
        float *s = cpu_scratch_get(j->c, &j->c->thread_scratch[thread], rows * lds * sizeof(float));
        if (!s) return;
        const float *q[ATTN_TILE_ROWS];
        float *o[ATTN_TILE_ROWS];
        int n_valid[ATTN_TILE_ROWS];
        float inv[ATTN_TILE_ROWS];
        for (int r = 0; r < rows; r++) {
            int t = tile->t0 + r / tile->nh, h = tile->h0 + r % tile->nh;
            q[r] = j->q + ((size_t)t * j->n_head + h) * hd;
            o[r] = j->out + ((size_t)t * j->n_head + h) * hd;
            n_valid[r] = first + r / tile->nh + 1; // causal
        }

        for (int p0 = 0; p0 < n_ctx; p0 += KV_BLOCK_SIZE) {
            const float *kb =
                j->k_cache +
                ((size_t)table[p0 / KV_BLOCK_SIZE] * j->n_head_kv + tile->kvh) * KV_BLOCK_SIZE * hd;
            // Whole blocks: slots past the context hold stale values whose scores get masked.
            for (int i = 0; i < KV_BLOCK_SIZE; i += 2) {
                const float *k = kb + (size_t)i * hd;
                int r = 0;
                for (; r + 4 <= rows; r += 4)
                    attn_scores_rows(q + r, k, hd, j->scale, s + r * lds + p0 + i, lds, 4);
                for (; r < rows; r++) {
                    if (i % 8 == 0) // one row: eight keys at a time
                        attn_scores_rows(q + r, k, hd, j->scale, s + r * lds + p0 + i, lds, 1);
                }
            }
        }

        for (int r = 0; r < rows; r++)
            inv[r] = 1.0f / attn_softmax_row(s + r * lds, n_valid[r], n_ctx);

        for (int r = 0; r < rows; r += 2) {
            int rr = rows - r < 2 ? 1 : 2, n = n_valid[r + rr - 1], c = 0;
            for (; c + 32 <= hd; c += 32) {
                if (rr == 2)
                    attn_pv_rows(j, table, tile->kvh, s + r * lds, lds, n, c, o + r, inv + r, 2, 4);
                else
                    attn_pv_rows(j, table, tile->kvh, s + r * lds, lds, n, c, o + r, inv + r, 1, 4);
            }
            for (; c + 8 <= hd; c += 8) {
                if (rr == 2)
                    attn_pv_rows(j, table, tile->kvh, s + r * lds, lds, n, c, o + r, inv + r, 2, 1);
                else
                    attn_pv_rows(j, table, tile->kvh, s + r * lds, lds, n, c, o + r, inv + r, 1, 1);
            }
            for (int k = 0; k < rr && c < hd; k++)
                attn_pv_tail(j, table, tile->kvh, s + (r + k) * lds, n, c, o[r + k], inv[r + k]);
        }
    }
}

void cpu_attention(backend *b, void *out, const void *q, const void *k_cache, const void *v_cache,
                   const attn_batch *ab, int n_head, int n_head_kv, int head_dim, float scale) {
    cpu_ctx *c = b->ctx;
    // Tiles: a GQA group's heads (at most ATTN_TILE_ROWS of them) times enough tokens to fill
    // the rows. Decode gets one tile per group slice, prefill one per token block.
    int group = n_head / n_head_kv;
    int tile_heads = group < ATTN_TILE_ROWS ? group : ATTN_TILE_ROWS;
    int tile_tokens = ATTN_TILE_ROWS / tile_heads;
    int head_tiles = (group + tile_heads - 1) / tile_heads;
    size_t n_tiles = 0;
    for (int s = 0; s < ab->n_seq; s++) {
        const attn_seq *seq = &ab->seqs_dev[s];
        if (seq->q_start < 0 || seq->n_q < 0 || seq->n_past < 0 ||
            seq->q_start + seq->n_q > ab->n_tok) {
            cpu_error_record(c, FL_EINVAL, "attention: sequence %d rows [%d, %d) outside n_tok %d",
                             s, seq->q_start, seq->q_start + seq->n_q, ab->n_tok);
            return;
        }
        n_tiles += (size_t)(seq->n_q + tile_tokens - 1) / tile_tokens * head_tiles * n_head_kv;
    }
    attn_tile *tiles = cpu_scratch_get(c, &c->step_scratch, n_tiles * sizeof(attn_tile));
    if (!tiles) return;
    size_t n = 0;
    for (int s = 0; s < ab->n_seq; s++) {
        const attn_seq *seq = &ab->seqs_dev[s];
        for (int t0 = 0; t0 < seq->n_q; t0 += tile_tokens) {
            int nt = seq->n_q - t0 < tile_tokens ? seq->n_q - t0 : tile_tokens;
            for (int kvh = 0; kvh < n_head_kv; kvh++) {
                for (int g0 = 0; g0 < group; g0 += tile_heads) {
                    int nh = group - g0 < tile_heads ? group - g0 : tile_heads;
                    tiles[n++] = (attn_tile){s, kvh, seq->q_start + t0, nt, kvh * group + g0, nh};
                }
            }
        }
    }
    attn_job j = {c, out, q, k_cache, v_cache, ab, tiles, n_head, n_head_kv, head_dim, scale};
    thread_pool_for(c->pool, (int64_t)n_tiles, 1, attention_task, &j);
}
