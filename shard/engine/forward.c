// The forward driver: builds a step's index arrays on the host, copies them to the backend, and
// issues backend ops only (so a decode step can be captured and replayed as one graph).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "shard/engine/comm.h"
#include "shard/engine/model_impl.h"

// Shapes use this rank's sizes: n_head, n_head_kv and d_ff are the rank's slice (model_weights),
// vocab_shard its part of the vocabulary; n_bt is the step's block-table entries. Buffers hold
// cap_* of each, "act" is the backend's act_dtype.
struct fwd_scratch {
    int cap_tok, cap_seq, cap_bt, cap_rows; // sizes the buffers were allocated for
    int unfused; // FALCONLITE_FUSED=0: the unfused op sequence (A/B measurements)
    uint64_t generation;                    // bumped whenever device buffers move (graph key)
    const kv_cache *graph_kv;               // the cache captured graphs write to
    // host staging (filled per step, then copied to the device inputs below)
    int32_t *h_ids;   // [n_tok] token ids
    int32_t *h_pos;   // [n_tok] position of each token in its sequence
    int32_t *h_slots; // [n_tok] KV-cache slot (block * KV_BLOCK_SIZE + offset) of each token
    int32_t *h_bt;    // [n_bt] block tables of every sequence, concatenated
    int32_t *h_rows;  // [n_rows] token of each logits row
    float *h_base;    // [n_tok] rotary base of each token's sequence
    attn_seq *h_seqs; // [n_seq]
    float *h_shard;   // [n_rows, vocab_shard] f32 TP logits of this rank (world > 1 only)
    float *h_all;     // [world, n_rows, vocab_shard] f32 TP logits of every rank (world > 1 only)
    // device inputs (copies of the host staging)
    int32_t *ids;   // [n_tok]
    int32_t *pos;   // [n_tok]
    int32_t *slots; // [n_tok]
    int32_t *bt;    // [n_bt]
    int32_t *rows;  // [n_rows]
    float *base;    // [n_tok]
    attn_seq *seqs; // [n_seq]
    // device activations
    void *x;        // [n_tok, d_model] act: the residual stream
    void *h_attn;   // [n_tok, d_model] act: normed input of attention (then of the final norm)
    void *h_mlp;    // [n_tok, d_model] act: normed input of the MLP (models with a second norm)
    void *qkv;      // [n_tok, (n_head + 2 * n_head_kv) * head_dim] act: fused QKV projection
    void *q;        // [n_tok, n_head, head_dim] act
    void *k;        // [n_tok, n_head_kv, head_dim] act
    void *v;        // [n_tok, n_head_kv, head_dim] act
    void *attn;     // [n_tok, n_head, head_dim] act: attention output before its projection
    void *o;        // [n_tok, d_model] act: attention block output (parallel: + MLP output)
    void *mlp_out;  // [n_tok, d_model] act: MLP block output
    void *up;       // [n_tok, d_ff] act (SwiGLU: [n_tok, 2 * d_ff], gate then up)
    void *act;      // [n_tok, d_ff] act: SwiGLU activation (SwiGLU models only, else NULL)
    void *gathered; // [n_rows, d_model] act: final-normed rows that need logits
    void *logits;   // [n_rows, vocab_shard] act
};

// Every device buffer, so allocation checks and release cover them all (but act, which only
// SwiGLU models need: [n_tok, d_ff] would waste 0.65 GB at a 10K-token Falcon-40B prefill).
#define SCRATCH_DEV_FIELDS(X)                                                                      \
    X(ids)                                                                                         \
    X(pos)                                                                                         \
    X(slots)                                                                                       \
    X(bt)                                                                                          \
    X(rows) X(base) X(seqs) X(x) X(h_attn) X(h_mlp) X(qkv) X(q) X(k) X(v) X(attn) X(o) X(mlp_out)  \
        X(up) X(gathered) X(logits)

static void scratch_release(fwd_scratch *s, backend *be) {
#define FREE_DEV(f)                                                                                \
    if (s->f) be->buf_free(be, s->f);
    SCRATCH_DEV_FIELDS(FREE_DEV)
    FREE_DEV(act)
#undef FREE_DEV
    free(s->h_ids);
    free(s->h_pos);
    free(s->h_slots);
    free(s->h_bt);
    free(s->h_rows);
    free(s->h_base);
    free(s->h_seqs);
    free(s->h_shard);
    free(s->h_all);
    uint64_t generation = s->generation;
    memset(s, 0, sizeof *s);
    s->generation = generation;
}

void fwd_scratch_free(fwd_scratch *s, backend *be) {
    if (!s) return;
    scratch_release(s, be);
    free(s);
}

// Makes the scratch hold a step of n_tok tokens, n_seq sequences, n_bt block-table entries and
// n_rows logits rows, reallocating everything at the largest size seen so far when it does not.
// Logits rows are sized apart from tokens: a long prefill usually needs one row.
static fl_code scratch_ensure(model *m, int n_tok, int n_seq, int n_bt, int n_rows, fl_error *err) {
    if (!m->scratch && !(m->scratch = calloc(1, sizeof *m->scratch)))
        return fl_error_set(err, FL_ENOMEM, "forward: out of memory");
    fwd_scratch *s = m->scratch;
    if (n_tok <= s->cap_tok && n_seq <= s->cap_seq && n_bt <= s->cap_bt && n_rows <= s->cap_rows)
        return FL_OK;
    backend *be = m->be;
    int tok = n_tok > s->cap_tok ? n_tok : s->cap_tok;
    int seq = n_seq > s->cap_seq ? n_seq : s->cap_seq;
    int bt = n_bt > s->cap_bt ? n_bt : s->cap_bt;
    int rows = n_rows > s->cap_rows ? n_rows : s->cap_rows;
    scratch_release(s, be);
    s->generation++;
    const char *fused = getenv("FALCONLITE_FUSED");
    s->unfused = fused && !strcmp(fused, "0");
    if (be->graph_reset) be->graph_reset(be); // captured graphs point at the old buffers

    const model_config *c = &m->cfg;
    const model_weights *w = &m->w;
    size_t t = (size_t)tok, r = (size_t)rows, es = dtype_size(be->act_dtype),
           hd = (size_t)c->head_dim;
    size_t d = (size_t)c->d_model, vs = (size_t)w->vocab_shard, world = (size_t)m->world;
    size_t up_width = (size_t)w->d_ff * (c->mlp == MLP_SWIGLU ? 2 : 1);

    s->h_ids = malloc(t * 4), s->h_pos = malloc(t * 4), s->h_slots = malloc(t * 4);
    s->h_rows = malloc(r * 4), s->h_base = malloc(t * 4);
    s->h_bt = malloc((size_t)bt * 4), s->h_seqs = malloc((size_t)seq * sizeof(attn_seq));
    int host_ok =
        s->h_ids && s->h_pos && s->h_slots && s->h_rows && s->h_base && s->h_bt && s->h_seqs;
    if (world > 1) {
        s->h_shard = malloc(r * vs * 4), s->h_all = malloc(world * r * vs * 4);
        host_ok = host_ok && s->h_shard && s->h_all;
    }
    s->ids = be->buf_alloc(be, t * 4), s->pos = be->buf_alloc(be, t * 4);
    s->slots = be->buf_alloc(be, t * 4), s->rows = be->buf_alloc(be, r * 4);
    s->base = be->buf_alloc(be, t * 4), s->bt = be->buf_alloc(be, (size_t)bt * 4);
    s->seqs = be->buf_alloc(be, (size_t)seq * sizeof(attn_seq));
    s->x = be->buf_alloc(be, t * d * es), s->h_attn = be->buf_alloc(be, t * d * es);
    s->h_mlp = be->buf_alloc(be, t * d * es);
    s->qkv = be->buf_alloc(be, t * (size_t)(w->n_head + 2 * w->n_head_kv) * hd * es);
    s->q = be->buf_alloc(be, t * (size_t)w->n_head * hd * es);
    s->attn = be->buf_alloc(be, t * (size_t)w->n_head * hd * es);
    s->k = be->buf_alloc(be, t * (size_t)w->n_head_kv * hd * es);
    s->v = be->buf_alloc(be, t * (size_t)w->n_head_kv * hd * es);
    s->o = be->buf_alloc(be, t * d * es), s->mlp_out = be->buf_alloc(be, t * d * es);
    s->up = be->buf_alloc(be, t * up_width * es);
    if (c->mlp == MLP_SWIGLU) s->act = be->buf_alloc(be, t * (size_t)w->d_ff * es);
    s->gathered = be->buf_alloc(be, r * d * es), s->logits = be->buf_alloc(be, r * vs * es);
#define DEV_OK(f) &&s->f
    int dev_ok = 1 SCRATCH_DEV_FIELDS(DEV_OK) && (c->mlp != MLP_SWIGLU || s->act);
#undef DEV_OK
    if (!host_ok || !dev_ok) {
        scratch_release(s, be);
        return fl_error_set(err, FL_ENOMEM, "forward: cannot allocate buffers for %d tokens", tok);
    }
    s->cap_tok = tok, s->cap_seq = seq, s->cap_bt = bt, s->cap_rows = rows;
    return FL_OK;
}

// Brackets one backend op (or a few) as a named span of the op profile (backend.h:
// profile_begin); outside a profile the backend's op_begin/op_end return at once.
#define OP(be, name, ...)                                                                          \
    do {                                                                                           \
        if ((be)->op_begin) (be)->op_begin((be), (name));                                         \
        __VA_ARGS__;                                                                               \
        if ((be)->op_end) (be)->op_end(be);                                                        \
    } while (0)

static void norm_apply(model *m, void *out, const void *x, bk_norm n, int n_tok) {
    const model_config *c = &m->cfg;
    backend *be = m->be;
    if (c->norm == NORM_RMSNORM)
        OP(be, "rmsnorm", be->rmsnorm(be, out, x, n.w, n_tok, c->d_model, c->norm_eps));
    else
        OP(be, "layernorm", be->layernorm(be, out, x, n.w, n.bias, n_tok, c->d_model, c->norm_eps));
}

// The residual stream's pending update: x += r1 (+ r2) before the next norm reads it. r2 is set
// only where residual_norm adds both branches itself (tensor parallelism sums them before the
// all-reduce).
typedef struct residual {
    const void *r1, *r2;
} residual;

// x += res, then out_a = norm_a(x) and, when out_m is non-NULL, out_m = norm_m(x): one
// residual_norm, or the unfused add + norms.
static void residual_norm_apply(model *m, residual res, void *out_a, bk_norm na, void *out_m,
                                bk_norm nm, int n_tok) {
    backend *be = m->be;
    fwd_scratch *s = m->scratch;
    const model_config *c = &m->cfg;
    if (!s->unfused) {
        OP(be, "residual_norm",
           be->residual_norm(be, s->x, res.r1, res.r2, out_a, na, out_m, nm,
                             c->norm == NORM_RMSNORM, n_tok, c->d_model, c->norm_eps));
        return;
    }
    if (res.r1) OP(be, "add", be->add(be, s->x, s->x, res.r1, (size_t)n_tok * c->d_model));
    norm_apply(m, out_a, s->x, na, n_tok);
    if (out_m) norm_apply(m, out_m, s->x, nm, n_tok);
}

// Sums a row-parallel partial result over the ranks.
static fl_code tp_reduce(model *m, void *buf, int n_tok, fl_error *err) {
    if (m->world == 1) return FL_OK;
    fl_code rc;
    OP(m->be, "all_reduce",
       rc = comm_all_reduce_sum(m->comm, m->be, buf, (size_t)n_tok * m->cfg.d_model, err));
    return rc;
}

// out[n_tok, d_model] = attention of h[n_tok, d_model] (this rank's heads, before all-reduce).
static void attention_block(model *m, kv_cache *kv, int layer, const attn_batch *ab, void *out,
                            const void *h, int n_tok) {
    backend *be = m->be;
    fwd_scratch *s = m->scratch;
    const layer_weights *lw = &m->w.layers[layer];
    int nh = m->w.n_head, nkv = m->w.n_head_kv, hd = m->cfg.head_dim, rd = m->cfg.rope.rot_dim;
    OP(be, "matmul qkv", be->matmul(be, s->qkv, h, lw->lin[LIN_QKV], n_tok));
    if (!s->unfused) {
        OP(be, "qkv_rotary_store",
           be->qkv_rotary_store(be, s->q, kv->k[layer], kv->v[layer], s->qkv, s->pos, s->base,
                                s->slots, n_tok, nh, nkv, hd, rd, m->pos_scale));
    } else {
        OP(be, "qkv_split", be->qkv_split(be, s->q, s->k, s->v, s->qkv, n_tok, nh, nkv, hd));
        OP(be, "rotary", be->rotary(be, s->q, s->pos, s->base, n_tok, nh, hd, rd, m->pos_scale));
        OP(be, "rotary", be->rotary(be, s->k, s->pos, s->base, n_tok, nkv, hd, rd, m->pos_scale));
        OP(be, "kv_store",
           be->kv_store(be, kv->k[layer], kv->v[layer], s->k, s->v, s->slots, n_tok, nkv, hd));
    }
    OP(be, "attention",
       be->attention(be, s->attn, s->q, kv->k[layer], kv->v[layer], ab, nh, nkv, hd,
                     1.0f / sqrtf((float)hd)));
    OP(be, "matmul attn_out", be->matmul(be, out, s->attn, lw->lin[LIN_ATTN_OUT], n_tok));
}

// out[n_tok, d_model] = MLP of h[n_tok, d_model] (this rank's columns, before all-reduce).
static void mlp_block(model *m, int layer, void *out, const void *h, int n_tok) {
    backend *be = m->be;
    fwd_scratch *s = m->scratch;
    const layer_weights *lw = &m->w.layers[layer];
    int d_ff = m->w.d_ff;
    OP(be, "matmul mlp_up", be->matmul(be, s->up, h, lw->lin[LIN_MLP_UP], n_tok));
    const void *act = s->up;
    if (m->cfg.mlp == MLP_SWIGLU) {
        OP(be, "swiglu", be->swiglu(be, s->act, s->up, n_tok, d_ff));
        act = s->act;
    } else {
        OP(be, "gelu", be->gelu(be, s->up, (size_t)n_tok * d_ff));
    }
    OP(be, "matmul mlp_down", be->matmul(be, out, act, lw->lin[LIN_MLP_DOWN], n_tok));
}

// The whole step on the backend: embedding, blocks, final norm, row gather and LM head into
// s->logits [n_rows, vocab_shard].
static fl_code forward_ops(model *m, kv_cache *kv, const attn_batch *ab, int n_tok, int n_rows,
                           fl_error *err) {
    backend *be = m->be;
    fwd_scratch *s = m->scratch;
    const model_config *c = &m->cfg;
    const model_weights *w = &m->w;
    size_t n_act = (size_t)n_tok * c->d_model;
    fl_code rc;
    OP(be, "embedding",
       be->embedding(be, s->x, w->embed, s->ids, n_tok, m->rank * w->vocab_shard));
    if ((rc = tp_reduce(m, s->x, n_tok, err))) return rc;
    // Each residual add is deferred into the next norm's pass (residual_norm_apply).
    residual res = {NULL, NULL};
    for (int l = 0; l < c->n_layer; l++) {
        const layer_weights *lw = &w->layers[l];
        bk_norm n0 = {lw->norm_w[0], lw->norm_b[0]}, n1 = {lw->norm_w[1], lw->norm_b[1]};
        if (c->parallel_attn) {
            // x = x + attn(norm_a(x)) + mlp(norm_m(x)), one all-reduce for both branches
            void *h_mlp = lw->norm_w[1] ? s->h_mlp : s->h_attn;
            residual_norm_apply(m, res, s->h_attn, n0, lw->norm_w[1] ? s->h_mlp : NULL, n1,
                                n_tok);
            attention_block(m, kv, l, ab, s->o, s->h_attn, n_tok);
            mlp_block(m, l, s->mlp_out, h_mlp, n_tok);
            if (m->world == 1 && !s->unfused) {
                res = (residual){s->o, s->mlp_out}; // the next norm adds both branches
            } else {
                OP(be, "add", be->add(be, s->o, s->o, s->mlp_out, n_act));
                if ((rc = tp_reduce(m, s->o, n_tok, err))) return rc;
                res = (residual){s->o, NULL};
            }
        } else {
            // x = x + attn(norm1(x)); x = x + mlp(norm2(x))
            residual_norm_apply(m, res, s->h_attn, n0, NULL, n0, n_tok);
            attention_block(m, kv, l, ab, s->o, s->h_attn, n_tok);
            if ((rc = tp_reduce(m, s->o, n_tok, err))) return rc;
            residual_norm_apply(m, (residual){s->o, NULL}, s->h_mlp, n1, NULL, n1, n_tok);
            mlp_block(m, l, s->mlp_out, s->h_mlp, n_tok);
            if ((rc = tp_reduce(m, s->mlp_out, n_tok, err))) return rc;
            res = (residual){s->mlp_out, NULL};
        }
    }
    bk_norm final = {w->final_norm_w, w->final_norm_b};
    residual_norm_apply(m, res, s->h_attn, final, NULL, final, n_tok);
    OP(be, "gather_rows", be->gather_rows(be, s->gathered, s->h_attn, s->rows, n_rows, c->d_model));
    OP(be, "lm_head",
       be->matmul(be, s->logits, s->gathered, w->lm_head ? w->lm_head : w->embed, n_rows));
    return FL_OK;
}

static fl_code seqs_check(const model *m, const kv_cache *kv, const fwd_seq *seqs, int n_seq,
                          fl_error *err) {
    if (kv->n_layer != m->cfg.n_layer || kv->n_head_kv != m->w.n_head_kv ||
        kv->head_dim != m->cfg.head_dim || kv->be != m->be)
        return fl_error_set(err, FL_EINVAL,
                            "forward: the KV cache (%d layers, %d KV heads of %d) was not made "
                            "for this model (%d layers, %d KV heads of %d)",
                            kv->n_layer, kv->n_head_kv, kv->head_dim, m->cfg.n_layer,
                            m->w.n_head_kv, m->cfg.head_dim);
    for (int i = 0; i < n_seq; i++) {
        const fwd_seq *q = &seqs[i];
        if (q->n_new < 1 || !q->kv)
            return fl_error_set(err, FL_EINVAL, "forward: sequence %d has no new tokens", i);
        int total = q->kv->n_tokens + q->n_new;
        if (total > q->kv->n_blocks * KV_BLOCK_SIZE)
            return fl_error_set(err, FL_EINVAL,
                                "forward: sequence %d needs %d tokens of cache, %d reserved", i,
                                total, q->kv->n_blocks * KV_BLOCK_SIZE);
        for (int j = 0; j < q->n_new; j++)
            if (q->tokens[j] < 0 || q->tokens[j] >= m->cfg.n_vocab)
                return fl_error_set(err, FL_EINVAL,
                                    "forward: sequence %d token %d is %d, outside the vocabulary "
                                    "of %d",
                                    i, j, q->tokens[j], m->cfg.n_vocab);
        for (int b = 0; b < q->kv->n_blocks; b++)
            if (q->kv->blocks[b] < 0 || q->kv->blocks[b] >= kv->n_blocks)
                return fl_error_set(err, FL_EINVAL, "forward: sequence %d holds invalid block %d",
                                    i, q->kv->blocks[b]);
    }
    return FL_OK;
}

// Graph key of a decode step (see backend.h): sequences, tokens, buffer generation and the
// context bucket, each in 16 bits.
static uint64_t graph_key(const fwd_scratch *s, int n_seq, int n_tok, int max_ctx) {
    uint64_t bucket = (uint64_t)(max_ctx + GRAPH_CTX_BUCKET - 1) / GRAPH_CTX_BUCKET;
    return (s->generation & 0xffff) << 48 | (bucket & 0xffff) << 32 |
           (uint64_t)(n_tok & 0xffff) << 16 | (uint64_t)(n_seq & 0xffff);
}

// TP: every rank's [n_rows, vocab_shard] block -> logits [n_rows, n_vocab] without padding.
static fl_code logits_gather(model *m, int n_rows, float *logits, fl_error *err) {
    fwd_scratch *s = m->scratch;
    int vs = m->w.vocab_shard, n_vocab = m->cfg.n_vocab;
    size_t n = (size_t)n_rows * vs;
    m->be->act_to_f32(m->be, s->h_shard, s->logits, n);
    fl_code rc = comm_all_gather_f32(m->comm, s->h_shard, s->h_all, n, err);
    if (rc) return rc;
    for (int r = 0; r < m->world; r++) {
        int cols = n_vocab - r * vs < vs ? n_vocab - r * vs : vs;
        for (int row = 0; row < n_rows && cols > 0; row++)
            memcpy(logits + (size_t)row * n_vocab + (size_t)r * vs,
                   s->h_all + (size_t)r * n + (size_t)row * vs, (size_t)cols * sizeof(float));
    }
    return FL_OK;
}

fl_code model_forward(model *m, kv_cache *kv, const fwd_seq *seqs, int n_seq, float *logits,
                      fl_error *err) {
    if (n_seq <= 0) return FL_OK;
    fl_code rc = seqs_check(m, kv, seqs, n_seq, err);
    if (rc) return rc;
    int n_tok = 0, n_bt = 0, n_rows = 0, max_n_q = 0, max_ctx = 0, decode_only = 1;
    for (int i = 0; i < n_seq; i++) {
        int ctx = seqs[i].kv->n_tokens + seqs[i].n_new;
        n_tok += seqs[i].n_new;
        n_bt += (ctx + KV_BLOCK_SIZE - 1) / KV_BLOCK_SIZE;
        n_rows += seqs[i].all_logits ? seqs[i].n_new : 1;
        if (seqs[i].n_new > max_n_q) max_n_q = seqs[i].n_new;
        if (ctx > max_ctx) max_ctx = ctx;
        decode_only = decode_only && seqs[i].n_new == 1;
    }
    if ((rc = scratch_ensure(m, n_tok, n_seq, n_bt, n_rows, err))) return rc;
    fwd_scratch *s = m->scratch;
    backend *be = m->be;

    // Host index arrays of the step.
    int t = 0, bt = 0, row = 0;
    for (int i = 0; i < n_seq; i++) {
        const fwd_seq *q = &seqs[i];
        const kv_seq *ks = q->kv;
        int n_past = ks->n_tokens, ctx = n_past + q->n_new;
        // Rotary base from the sequence's rotary length (fwd_seq.rope_len): the prompt length
        // for every chunk of a prefill, p + 1 when decoding position p.
        int rope_len = q->rope_len > 0 ? q->rope_len : ctx;
        float base = (float)rope_base_for_length(&m->cfg.rope, rope_len);
        s->h_seqs[i] =
            (attn_seq){.q_start = t, .n_q = q->n_new, .n_past = n_past, .block_table_offset = bt};
        int seq_blocks = (ctx + KV_BLOCK_SIZE - 1) / KV_BLOCK_SIZE;
        memcpy(s->h_bt + bt, ks->blocks, (size_t)seq_blocks * sizeof(int32_t));
        bt += seq_blocks;
        for (int j = 0; j < q->n_new; j++, t++) {
            int p = n_past + j;
            s->h_ids[t] = q->tokens[j];
            s->h_pos[t] = p;
            s->h_base[t] = base;
            s->h_slots[t] = ks->blocks[p / KV_BLOCK_SIZE] * KV_BLOCK_SIZE + p % KV_BLOCK_SIZE;
            if (q->all_logits || j == q->n_new - 1) s->h_rows[row++] = t;
        }
    }
    be->copy_to_device(be, s->ids, s->h_ids, (size_t)n_tok * 4);
    be->copy_to_device(be, s->pos, s->h_pos, (size_t)n_tok * 4);
    be->copy_to_device(be, s->base, s->h_base, (size_t)n_tok * 4);
    be->copy_to_device(be, s->slots, s->h_slots, (size_t)n_tok * 4);
    be->copy_to_device(be, s->rows, s->h_rows, (size_t)n_rows * 4);
    be->copy_to_device(be, s->bt, s->h_bt, (size_t)n_bt * 4);
    be->copy_to_device(be, s->seqs, s->h_seqs, (size_t)n_seq * sizeof(attn_seq));
    attn_batch ab = {.n_seq = n_seq,
                     .n_tok = n_tok,
                     .max_n_q = max_n_q,
                     .max_ctx = max_ctx,
                     .seqs_dev = s->seqs,
                     .block_tables_dev = s->bt,
                     .slots_dev = s->slots};

    // Decode steps replay a captured graph where the backend has them. Tensor-parallel steps do
    // only where the comm queues its collectives on the backend's stream (then every rank, fed
    // the same batches, captures and replays the same keys, as NCCL requires).
    int use_graph = decode_only && be->graph_replay && (m->world == 1 || comm_capturable(m->comm));
    if (use_graph && s->graph_kv != kv) { // captured graphs point at another cache's pools
        be->graph_reset(be);
        s->graph_kv = kv;
    }
    uint64_t key = use_graph ? graph_key(s, n_seq, n_tok, max_ctx) : 0;
    if (!use_graph || !be->graph_replay(be, key)) {
        if (use_graph) be->graph_capture_begin(be, key);
        rc = forward_ops(m, kv, &ab, n_tok, n_rows, err);
        if (use_graph) be->graph_capture_end(be, key);
        if (rc) return rc;
    }
    // Collectives may still be queued with the ops: wait for both before the host reads.
    if ((rc = m->world == 1 ? be->sync(be, err) : comm_step_wait(m->comm, be, err))) return rc;
    if (m->world == 1)
        be->act_to_f32(be, logits, s->logits, (size_t)n_rows * m->cfg.n_vocab);
    else if ((rc = logits_gather(m, n_rows, logits, err)))
        return rc;
    if ((rc = be->sync(be, err))) return rc;
    for (int i = 0; i < n_seq; i++)
        seqs[i].kv->n_tokens += seqs[i].n_new;
    return FL_OK;
}
