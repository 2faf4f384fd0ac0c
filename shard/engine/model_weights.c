#include "shard/engine/model_weights.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dtype.h"
#include "common/safetensors.h"

#define MAX_KV_GROUPS 256 // KV heads per rank when q, k, v are fused group by group

typedef struct loader {
    const char *dir;
    safetensors *st;
    const model_config *cfg;
    backend *be;
    int rank, world;
    size_t bytes;
} loader;

// n_out rows [start, start + count) of checkpoint part `part`; rows at or past the part's
// extent read as zeros (vocab padding).
typedef struct mat_span {
    int part;
    int64_t start, count;
} mat_span;

// One backend matrix assembled from up to ARCH_MAX_PARTS checkpoint tensors.
typedef struct mat_spec {
    char names[ARCH_MAX_PARTS][160]; // tensor prefixes (".weight", ".qweight", ... appended)
    int n_parts;
    int64_t part_n_out[ARCH_MAX_PARTS]; // expected outputs of each part (from the config)
    int64_t n_in;                       // expected inputs
    int64_t k0, kn;                     // input rows kept by this rank (row parallel)
    const mat_span *spans;
    int n_spans;
    int bias;       // load the parts' .bias
    int allow_gptq; // linear layers may be GPTQ; embedding and LM head are dense
} mat_spec;

static int dtype_is_float(dtype t) {
    return t == DTYPE_F32 || t == DTYPE_F16 || t == DTYPE_BF16;
}

static fl_code tensor_check_dtype(const st_tensor *t, int float_ok, dtype want, fl_error *err) {
    if (float_ok ? dtype_is_float(t->type) : t->type == want) return FL_OK;
    return fl_error_set(err, FL_EUNSUPPORTED, "%s: tensor '%s' has dtype %s, expected %s", t->file,
                        t->name, dtype_name(t->type),
                        float_ok ? "F32, F16 or BF16" : dtype_name(want));
}

static float tensor_f32_at(const st_tensor *t, int64_t i) {
    switch (t->type) {
    case DTYPE_F16:
        return fp16_to_f32(((const uint16_t *)t->data)[i]);
    case DTYPE_BF16:
        return bf16_to_f32(((const uint16_t *)t->data)[i]);
    default:
        return ((const float *)t->data)[i];
    }
}

// A norm weight or bias [d_model] as a backend f32 vector.
static fl_code vector_load(loader *ld, const char *name, float **out, fl_error *err) {
    int64_t d = ld->cfg->d_model;
    const st_tensor *t;
    fl_code rc = safetensors_expect_shape(ld->st, name, 1, &d, &t, err);
    if (!rc) rc = tensor_check_dtype(t, 1, DTYPE_F32, err);
    if (rc) return rc;
    float *host = malloc((size_t)d * sizeof *host);
    if (!host) return fl_error_set(err, FL_ENOMEM, "%s: out of memory", name);
    for (int64_t i = 0; i < d; i++)
        host[i] = tensor_f32_at(t, i);
    *out = ld->be->vector_create(ld->be, host, (int)d);
    free(host);
    if (!*out) return fl_error_set(err, FL_ENOMEM, "%s: backend cannot allocate a vector", name);
    return FL_OK;
}

// Loads prefix.weight and, for LayerNorm, prefix.bias.
static fl_code norm_load(loader *ld, const char *prefix, float **w, float **b, fl_error *err) {
    char name[192];
    snprintf(name, sizeof name, "%s.weight", prefix);
    fl_code rc = vector_load(ld, name, w, err);
    if (rc || ld->cfg->norm != NORM_LAYERNORM) return rc;
    snprintf(name, sizeof name, "%s.bias", prefix);
    return vector_load(ld, name, b, err);
}

static int64_t spans_n_out(const mat_spec *s) {
    int64_t n = 0;
    for (int i = 0; i < s->n_spans; i++)
        n += s->spans[i].count;
    return n;
}

// Biases [n_out] of the spans, or NULL in *out when the spec has none.
static fl_code bias_build(loader *ld, const mat_spec *s, float **out, fl_error *err) {
    *out = NULL;
    if (!s->bias) return FL_OK;
    const st_tensor *t[ARCH_MAX_PARTS] = {0};
    for (int p = 0; p < s->n_parts; p++) {
        char name[192];
        snprintf(name, sizeof name, "%s.bias", s->names[p]);
        fl_code rc = safetensors_expect_shape(ld->st, name, 1, &s->part_n_out[p], &t[p], err);
        if (!rc) rc = tensor_check_dtype(t[p], 1, DTYPE_F32, err);
        if (rc) return rc;
    }
    float *b = malloc((size_t)spans_n_out(s) * sizeof *b);
    if (!b) return fl_error_set(err, FL_ENOMEM, "%s.bias: out of memory", s->names[0]);
    int64_t o = 0;
    for (int i = 0; i < s->n_spans; i++) {
        const mat_span *sp = &s->spans[i];
        for (int64_t r = sp->start; r < sp->start + sp->count; r++)
            b[o++] = r < s->part_n_out[sp->part] ? tensor_f32_at(t[sp->part], r) : 0.0f;
    }
    *out = b;
    return FL_OK;
}

// Dense parts [n_out_p, n_in] -> one contiguous [n_out, kn] buffer in the checkpoint dtype.
static fl_code dense_build(loader *ld, const mat_spec *s, host_matrix *hm, void **buf,
                           fl_error *err) {
    const st_tensor *t[ARCH_MAX_PARTS] = {0};
    for (int p = 0; p < s->n_parts; p++) {
        char name[192];
        snprintf(name, sizeof name, "%s.weight", s->names[p]);
        int64_t shape[2] = {s->part_n_out[p], s->n_in};
        fl_code rc = safetensors_expect_shape(ld->st, name, 2, shape, &t[p], err);
        if (!rc) rc = tensor_check_dtype(t[p], 1, DTYPE_F32, err);
        if (rc) return rc;
        if (t[p]->type != t[0]->type)
            return fl_error_set(
                err, FL_EUNSUPPORTED, "%s: tensor '%s' has dtype %s but '%s' has %s", t[p]->file,
                t[p]->name, dtype_name(t[p]->type), t[0]->name, dtype_name(t[0]->type));
    }
    size_t es = dtype_size(t[0]->type), row = (size_t)s->kn * es;
    int64_t n_out = spans_n_out(s);
    char *w = malloc((size_t)n_out * row);
    if (!w) return fl_error_set(err, FL_ENOMEM, "%s: out of host memory", s->names[0]);
    char *dst = w;
    for (int i = 0; i < s->n_spans; i++) {
        const mat_span *sp = &s->spans[i];
        const char *src = t[sp->part]->data;
        for (int64_t r = sp->start; r < sp->start + sp->count; r++, dst += row) {
            if (r < s->part_n_out[sp->part])
                memcpy(dst, src + ((size_t)r * (size_t)s->n_in + (size_t)s->k0) * es, row);
            else
                memset(dst, 0, row);
        }
    }
    hm->kind = MATRIX_DENSE;
    hm->w = w;
    hm->w_type = t[0]->type;
    *buf = w;
    ld->bytes += (size_t)n_out * row;
    return FL_OK;
}

// The GPTQ tensors of one part, validated against the config.
typedef struct gptq_part {
    const st_tensor *qweight, *qzeros, *scales, *g_idx;
} gptq_part;

static fl_code gptq_part_get(loader *ld, const mat_spec *s, int p, int n_groups, gptq_part *g,
                             fl_error *err) {
    char name[192];
    int64_t n = s->part_n_out[p], k = s->n_in;
    int64_t qw_shape[2] = {k / 8, n}, qz_shape[2] = {n_groups, n / 8}, sc_shape[2] = {n_groups, n};
    fl_code rc;
    snprintf(name, sizeof name, "%s.qweight", s->names[p]);
    if ((rc = safetensors_expect_shape(ld->st, name, 2, qw_shape, &g->qweight, err)) ||
        (rc = tensor_check_dtype(g->qweight, 0, DTYPE_I32, err)))
        return rc;
    snprintf(name, sizeof name, "%s.qzeros", s->names[p]);
    if ((rc = safetensors_expect_shape(ld->st, name, 2, qz_shape, &g->qzeros, err)) ||
        (rc = tensor_check_dtype(g->qzeros, 0, DTYPE_I32, err)))
        return rc;
    snprintf(name, sizeof name, "%s.scales", s->names[p]);
    if ((rc = safetensors_expect_shape(ld->st, name, 2, sc_shape, &g->scales, err))) return rc;
    if (g->scales->type != DTYPE_F16 && g->scales->type != DTYPE_F32)
        return tensor_check_dtype(g->scales, 0, DTYPE_F16, err);
    snprintf(name, sizeof name, "%s.g_idx", s->names[p]);
    if ((rc = safetensors_expect_shape(ld->st, name, 1, &k, &g->g_idx, err)) ||
        (rc = tensor_check_dtype(g->g_idx, 0, DTYPE_I32, err)))
        return rc;
    const int32_t *gi = g->g_idx->data;
    for (int64_t i = 0; i < k; i++)
        if (gi[i] < 0 || gi[i] >= n_groups)
            return fl_error_set(err, FL_EINVAL,
                                "%s: tensor '%s' holds group %d at input %" PRId64
                                ", outside [0, %d)",
                                g->g_idx->file, name, gi[i], i, n_groups);
    return FL_OK;
}

typedef struct gptq_bufs {
    int32_t *qweight, *qzeros, *g_idx;
    uint16_t *scales;
} gptq_bufs;

static void gptq_bufs_free(gptq_bufs *b) {
    free(b->qweight);
    free(b->qzeros);
    free(b->g_idx);
    free(b->scales);
}

// GPTQ parts -> contiguous qweight [kn/8, n_out], qzeros [G, n_out/8], scales [G, n_out] fp16
// and g_idx [kn]. Row parallel keeps every group's scales and zeros: g_idx holds global ids.
static fl_code gptq_build(loader *ld, const mat_spec *s, host_matrix *hm, gptq_bufs *b,
                          fl_error *err) {
    const model_config *cfg = ld->cfg;
    char name[192];
    snprintf(name, sizeof name, "%s.qweight", s->names[0]);
    const char *file = safetensors_find(ld->st, name)->file;
    int bits = cfg->quant.bits ? cfg->quant.bits : 4;
    if (bits != 4)
        return fl_error_set(err, FL_EUNSUPPORTED,
                            "%s: tensor '%s': GPTQ with %d bits (from the quantize config) is not "
                            "supported, only 4",
                            file, name, bits);
    if (s->n_in % 8)
        return fl_error_set(err, FL_EINVAL,
                            "%s: tensor '%s': GPTQ input size %" PRId64 " is not a multiple of 8",
                            file, name, s->n_in);
    // Groups: from the quantize config, else from the scales tensor.
    int group_size = cfg->quant.group_size, n_groups;
    if (group_size == -1) {
        group_size = (int)s->n_in;
    } else if (group_size <= 0) {
        snprintf(name, sizeof name, "%s.scales", s->names[0]);
        const st_tensor *sc = safetensors_find(ld->st, name);
        if (!sc || sc->n_dim != 2 || sc->shape[0] <= 0)
            return fl_error_set(err, FL_ENOTFOUND,
                                "%s: tensor '%s' missing or malformed (needed for the group size)",
                                file, name);
        group_size = (int)(s->n_in / sc->shape[0]);
    }
    if (group_size <= 0 || s->n_in % group_size)
        return fl_error_set(err, FL_EINVAL,
                            "%s: tensor '%s': GPTQ group size %d does not divide the input size "
                            "%" PRId64,
                            file, name, group_size, s->n_in);
    n_groups = (int)(s->n_in / group_size);
    gptq_part g[ARCH_MAX_PARTS];
    for (int p = 0; p < s->n_parts; p++) {
        fl_code rc = gptq_part_get(ld, s, p, n_groups, &g[p], err);
        if (rc) return rc;
        if (p && memcmp(g[p].g_idx->data, g[0].g_idx->data, (size_t)s->n_in * 4))
            return fl_error_set(err, FL_EUNSUPPORTED,
                                "%s: tensor '%s.g_idx' differs from '%s.g_idx'; fusing these "
                                "GPTQ matrices needs one input order",
                                g[p].g_idx->file, s->names[p], s->names[0]);
    }
    if (s->k0 % 8 || s->kn % 8)
        return fl_error_set(err, FL_EINVAL,
                            "%s: tensor '%s.qweight': tensor-parallel input slice [%" PRId64
                            ", +%" PRId64 ") does not align to GPTQ's 8 inputs per word",
                            file, s->names[0], s->k0, s->kn);
    for (int i = 0; i < s->n_spans; i++) {
        const mat_span *sp = &s->spans[i];
        if (sp->start % 8 || sp->count % 8 || sp->start + sp->count > s->part_n_out[sp->part])
            return fl_error_set(err, FL_EINVAL,
                                "%s: tensor '%s.qzeros': output slice [%" PRId64 ", +%" PRId64
                                ") does not align to GPTQ's 8 outputs per zero word",
                                file, s->names[sp->part], sp->start, sp->count);
    }
    int64_t n_out = spans_n_out(s), kw = s->kn / 8;
    b->qweight = malloc((size_t)(kw * n_out) * 4);
    b->qzeros = malloc((size_t)(n_groups * n_out / 8) * 4);
    b->scales = malloc((size_t)(n_groups * n_out) * 2);
    b->g_idx = malloc((size_t)s->kn * 4);
    if (!b->qweight || !b->qzeros || !b->scales || !b->g_idx)
        return fl_error_set(err, FL_ENOMEM, "%s: out of host memory", s->names[0]);
    int64_t col = 0;
    for (int i = 0; i < s->n_spans; i++) {
        const mat_span *sp = &s->spans[i];
        const gptq_part *gp = &g[sp->part];
        int64_t n = s->part_n_out[sp->part];
        const int32_t *qw = gp->qweight->data, *qz = gp->qzeros->data;
        for (int64_t r = 0; r < kw; r++)
            memcpy(b->qweight + r * n_out + col, qw + (s->k0 / 8 + r) * n + sp->start,
                   (size_t)sp->count * 4);
        for (int64_t gr = 0; gr < n_groups; gr++) {
            memcpy(b->qzeros + gr * (n_out / 8) + col / 8, qz + gr * (n / 8) + sp->start / 8,
                   (size_t)sp->count / 8 * 4);
            uint16_t *dst = b->scales + gr * n_out + col;
            int64_t src = gr * n + sp->start;
            if (gp->scales->type == DTYPE_F16)
                memcpy(dst, (const uint16_t *)gp->scales->data + src, (size_t)sp->count * 2);
            else
                for (int64_t c = 0; c < sp->count; c++)
                    dst[c] = f32_to_fp16(((const float *)gp->scales->data)[src + c]);
        }
        col += sp->count;
    }
    memcpy(b->g_idx, (const int32_t *)g[0].g_idx->data + s->k0, (size_t)s->kn * 4);
    hm->kind = MATRIX_GPTQ;
    hm->qweight = b->qweight;
    hm->qzeros = b->qzeros;
    hm->scales = b->scales;
    hm->g_idx = b->g_idx;
    hm->bits = 4;
    hm->group_size = group_size;
    hm->n_groups = n_groups;
    ld->bytes += (size_t)(kw * n_out) * 4 + (size_t)(n_groups * n_out) * 2 +
                 (size_t)(n_groups * n_out / 8) * 4 + (size_t)s->kn * 4;
    return FL_OK;
}

static int tensor_exists(loader *ld, const char *prefix, const char *suffix) {
    char name[192];
    snprintf(name, sizeof name, "%s%s", prefix, suffix);
    return safetensors_find(ld->st, name) != NULL;
}

static fl_code matrix_load(loader *ld, const mat_spec *s, bk_matrix **out, fl_error *err) {
    host_matrix hm = {.n_in = (int)s->kn, .n_out = (int)spans_n_out(s)};
    void *dense = NULL;
    gptq_bufs gb = {0};
    float *bias = NULL;
    fl_code rc = s->allow_gptq && tensor_exists(ld, s->names[0], ".qweight")
                     ? gptq_build(ld, s, &hm, &gb, err)
                     : dense_build(ld, s, &hm, &dense, err);
    if (!rc) rc = bias_build(ld, s, &bias, err);
    if (!rc) {
        hm.bias = bias;
        *out = ld->be->matrix_create(ld->be, &hm, err);
        if (!*out) rc = fl_error_wrap(err, "%s", s->names[0]);
    }
    free(dense);
    free(bias);
    gptq_bufs_free(&gb);
    return rc;
}

// ---- the model's matrices

typedef struct dims {
    int d_model, n_head, n_head_kv, head_dim, d_ff, n_vocab;
} dims;

static fl_code linear_load(loader *ld, const arch_desc *a, int layer, arch_linear lin,
                           const dims *d, bk_matrix **out, fl_error *err) {
    int r = ld->rank, w = ld->world;
    mat_spec s = {.n_parts = a->n_parts[lin], .allow_gptq = 1};
    char prefix[96];
    snprintf(prefix, sizeof prefix, a->layer_prefix, layer);
    for (int p = 0; p < s.n_parts; p++)
        snprintf(s.names[p], sizeof s.names[p], "%s%s", prefix, a->linear[lin][p]);
    int row_parallel = lin == LIN_ATTN_OUT || lin == LIN_MLP_DOWN;
    // Row-parallel partial sums are all-reduced: only rank 0 adds the bias.
    s.bias = ld->cfg->bias && a->bias_when_config[lin] && (!row_parallel || r == 0);

    mat_span spans[ARCH_MAX_PARTS * MAX_KV_GROUPS];
    int n = 0, hd = d->head_dim;
    int group_q = d->n_head / d->n_head_kv; // query heads per KV head
    int g0 = r * d->n_head_kv / w, ng = d->n_head_kv / w;
    switch (lin) {
    case LIN_QKV:
        s.n_in = d->d_model;
        if (s.n_parts == 1) { // already grouped: [n_head_kv][group_q + 2][head_dim]
            s.part_n_out[0] = (int64_t)(d->n_head + 2 * d->n_head_kv) * hd;
            spans[n++] =
                (mat_span){0, (int64_t)g0 * (group_q + 2) * hd, (int64_t)ng * (group_q + 2) * hd};
        } else { // q, k, v -> grouped, one KV group at a time
            if (ng > MAX_KV_GROUPS)
                return fl_error_set(err, FL_EUNSUPPORTED, "%s: more than %d KV heads per rank",
                                    s.names[0], MAX_KV_GROUPS);
            s.part_n_out[0] = (int64_t)d->n_head * hd;
            s.part_n_out[1] = s.part_n_out[2] = (int64_t)d->n_head_kv * hd;
            for (int g = g0; g < g0 + ng; g++) {
                spans[n++] = (mat_span){0, (int64_t)g * group_q * hd, (int64_t)group_q * hd};
                spans[n++] = (mat_span){1, (int64_t)g * hd, hd};
                spans[n++] = (mat_span){2, (int64_t)g * hd, hd};
            }
        }
        s.k0 = 0, s.kn = s.n_in;
        break;
    case LIN_ATTN_OUT:
        s.n_in = (int64_t)d->n_head * hd;
        s.part_n_out[0] = d->d_model;
        s.k0 = s.n_in / w * r, s.kn = s.n_in / w;
        spans[n++] = (mat_span){0, 0, d->d_model};
        break;
    case LIN_MLP_UP: { // column parallel; parts are gate, up (or the one up matrix)
        int64_t f = d->d_ff / w;
        s.n_in = d->d_model;
        s.k0 = 0, s.kn = s.n_in;
        for (int p = 0; p < s.n_parts; p++) {
            s.part_n_out[p] = d->d_ff;
            spans[n++] = (mat_span){p, f * r, f};
        }
        break;
    }
    default: // LIN_MLP_DOWN
        s.n_in = d->d_ff;
        s.part_n_out[0] = d->d_model;
        s.k0 = s.n_in / w * r, s.kn = s.n_in / w;
        spans[n++] = (mat_span){0, 0, d->d_model};
        break;
    }
    s.spans = spans;
    s.n_spans = n;
    return matrix_load(ld, &s, out, err);
}

// The vocab-parallel embedding or LM head: rows [rank * vocab_shard, +vocab_shard), zero rows
// past n_vocab.
static fl_code vocab_matrix_load(loader *ld, const char *prefix, const dims *d, int vocab_shard,
                                 bk_matrix **out, fl_error *err) {
    mat_span span = {0, (int64_t)ld->rank * vocab_shard, vocab_shard};
    mat_spec s = {.n_parts = 1,
                  .part_n_out = {d->n_vocab},
                  .n_in = d->d_model,
                  .k0 = 0,
                  .kn = d->d_model,
                  .spans = &span,
                  .n_spans = 1};
    snprintf(s.names[0], sizeof s.names[0], "%s", prefix);
    return matrix_load(ld, &s, out, err);
}

static fl_code layer_load(loader *ld, const arch_desc *a, int i, const dims *d, layer_weights *lw,
                          fl_error *err) {
    const model_config *cfg = ld->cfg;
    char prefix[96], name[192];
    snprintf(prefix, sizeof prefix, a->layer_prefix, i);
    // Norm names by layout: two norms (ln_attn, ln_mlp), or input (+ post when sequential).
    const char *norms[2];
    if (cfg->n_norm_in_layer == 2) {
        norms[0] = a->norm_pair[0], norms[1] = a->norm_pair[1];
    } else {
        norms[0] = a->norm_input, norms[1] = cfg->parallel_attn ? NULL : a->norm_post;
    }
    for (int k = 0; k < 2; k++) {
        if (!norms[k]) continue;
        snprintf(name, sizeof name, "%s%s", prefix, norms[k]);
        fl_code rc = norm_load(ld, name, &lw->norm_w[k], &lw->norm_b[k], err);
        if (rc) return rc;
    }
    for (int l = 0; l < LIN_COUNT; l++) {
        fl_code rc = linear_load(ld, a, i, (arch_linear)l, d, &lw->lin[l], err);
        if (rc) return rc;
    }
    return FL_OK;
}

static fl_code tp_check(const model_config *cfg, int rank, int world, fl_error *err) {
    if (world < 1 || rank < 0 || rank >= world)
        return fl_error_set(err, FL_EINVAL, "tensor parallel rank %d of world %d is invalid", rank,
                            world);
    if (cfg->n_head_kv % world)
        return fl_error_set(err, FL_EINVAL,
                            "tensor parallel world %d must divide the %d KV heads (n_head_kv)",
                            world, cfg->n_head_kv);
    if (cfg->d_ff % world)
        return fl_error_set(err, FL_EINVAL, "tensor parallel world %d must divide d_ff %d", world,
                            cfg->d_ff);
    if (cfg->n_head_kv <= 0 || cfg->n_head % cfg->n_head_kv)
        return fl_error_set(err, FL_EINVAL, "config.json: n_head_kv %d must divide n_head %d",
                            cfg->n_head_kv, cfg->n_head);
    return FL_OK;
}

fl_code model_weights_load(model_weights *w, const char *dir, model_config *cfg, int rank,
                           int world, backend *be, fl_error *err) {
    memset(w, 0, sizeof *w);
    const arch_desc *a = arch_get(cfg->arch);
    if (!a) return fl_error_set(err, FL_EUNSUPPORTED, "%s: unknown architecture", dir);
    fl_code rc = tp_check(cfg, rank, world, err);
    if (rc) return rc;
    loader ld = {.dir = dir, .cfg = cfg, .be = be, .rank = rank, .world = world};
    if ((rc = safetensors_open_dir(dir, &ld.st, err))) return rc;

    dims d = {cfg->d_model, cfg->n_head, cfg->n_head_kv, cfg->head_dim, cfg->d_ff, cfg->n_vocab};
    w->n_head = cfg->n_head / world;
    w->n_head_kv = cfg->n_head_kv / world;
    w->d_ff = cfg->d_ff / world;
    w->vocab_shard = (cfg->n_vocab + world - 1) / world;

    // A model is GPTQ when its first linear layer has a qweight tensor.
    char prefix[192];
    snprintf(prefix, sizeof prefix, a->layer_prefix, 0);
    strncat(prefix, a->linear[LIN_QKV][0], sizeof prefix - strlen(prefix) - 1);
    cfg->quant.gptq = tensor_exists(&ld, prefix, ".qweight");

    // A separate head only when the config unties it and it is stored; one stored matrix
    // serves as both when either name is absent (as HF ties them).
    const char *embed_name = tensor_exists(&ld, a->embed, ".weight") ? a->embed : a->lm_head;
    int has_head = !cfg->tie_word_embeddings && embed_name != a->lm_head &&
                   tensor_exists(&ld, a->lm_head, ".weight");
    rc = vocab_matrix_load(&ld, embed_name, &d, w->vocab_shard, &w->embed, err);
    size_t embed_bytes = ld.bytes;
    if (!rc && has_head)
        rc = vocab_matrix_load(&ld, a->lm_head, &d, w->vocab_shard, &w->lm_head, err);
    // The embedding is only gathered per step; it is streamed when it is also the head.
    if (has_head) ld.bytes -= embed_bytes;
    if (!rc) rc = norm_load(&ld, a->final_norm, &w->final_norm_w, &w->final_norm_b, err);
    if (!rc) {
        w->layers = calloc((size_t)cfg->n_layer, sizeof *w->layers);
        if (!w->layers)
            rc = fl_error_set(err, FL_ENOMEM, "out of memory");
        else
            w->n_layer = cfg->n_layer;
    }
    for (int i = 0; !rc && i < cfg->n_layer; i++)
        rc = layer_load(&ld, a, i, &d, &w->layers[i], err);
    w->stream_bytes = ld.bytes;
    safetensors_close(ld.st);
    if (rc) model_weights_free(w, be);
    return rc;
}

void model_weights_free(model_weights *w, backend *be) {
    if (w->layers) {
        for (layer_weights *lw = w->layers; lw < w->layers + w->n_layer; lw++) {
            for (int k = 0; k < 2; k++) {
                if (lw->norm_w[k]) be->buf_free(be, lw->norm_w[k]);
                if (lw->norm_b[k]) be->buf_free(be, lw->norm_b[k]);
            }
            for (int l = 0; l < LIN_COUNT; l++)
                if (lw->lin[l]) be->matrix_free(be, lw->lin[l]);
        }
        free(w->layers);
    }
    if (w->embed) be->matrix_free(be, w->embed);
    if (w->lm_head) be->matrix_free(be, w->lm_head);
    if (w->final_norm_w) be->buf_free(be, w->final_norm_w);
    if (w->final_norm_b) be->buf_free(be, w->final_norm_b);
    memset(w, 0, sizeof *w);
}
