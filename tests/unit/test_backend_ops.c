// Backend-ops test (ggml's test-backend-ops is the model): every op runs on the CPU backend (the
// reference) and on the CUDA backend over the same seeded random inputs and odd shapes, and the
// CUDA output must match by normalised MSE under a per-op threshold, hold no NaN, write every
// output element (outputs start as NaN) and nothing past the end (a guard region must survive).
// Plain, the binary checks that every op of kernels/backend_ops.h has a case
// (test_every_op_has_a_case); with --gpu (its own ctest entry, test_backend_ops_cuda) it runs the
// cases too, and without CUDA built or a device present exits 77 (ctest: skipped) with the reason.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/backend_ops.h"
#include "tests/unit/helpers/gpu_probe.h"
#include "tests/unit/helpers/op_reference.h"

#define GUARD 64
#define GUARD_VALUE 4096.0f

// f16 rounding of inputs and outputs bounds what the GPU can match: a relative error of ~1e-3
// per value gives an nMSE near 1e-6; thresholds leave room for f16 accumulation orders.
#define THR_ELEMENTWISE 1e-5
#define THR_NORM 1e-5
#define THR_MATMUL 5e-5
#define THR_GPTQ 5e-5
#define THR_ATTENTION 1e-4

typedef struct ops_env {
    backend *cpu, *gpu;
    ref_rng rng;
} ops_env;

static int setup(void **state) {
    fl_error err = {0};
    ops_env *e = calloc(1, sizeof *e);
    e->cpu = backend_cpu_create(2, &err); // CPU-only checks (fused ops) run without a GPU too
    assert_non_null(e->cpu);
    e->rng.state = 20260527;
    e->gpu = backend_cuda_create(0, &err);
    if (!e->gpu) print_message("test_backend_ops: CUDA cases skipped: %s\n", err.msg);
    *state = e;
    return 0;
}

static int teardown(void **state) {
    ops_env *e = *state;
    if (e->gpu) e->gpu->free(e->gpu);
    if (e->cpu) e->cpu->free(e->cpu);
    free(e);
    return 0;
}

#define NEED_GPU(e)                                                                                \
    do {                                                                                           \
        if (!(e)->gpu) skip();                                                                     \
    } while (0)

static size_t act_size(backend *b) { return dtype_size(b->act_dtype); }

// Activation buffer holding x[n].
static void *act_upload(backend *b, const float *x, size_t n) {
    void *p = b->buf_alloc(b, n * act_size(b));
    assert_non_null(p);
    b->act_from_f32(b, p, x, n);
    return p;
}

// Output buffer of n values that start as NaN, followed by GUARD values that must survive.
static void *act_output(backend *b, size_t n) {
    float *init = malloc((n + GUARD) * sizeof(float));
    for (size_t i = 0; i < n; i++) init[i] = NAN;
    for (size_t i = n; i < n + GUARD; i++) init[i] = GUARD_VALUE;
    void *p = act_upload(b, init, n + GUARD);
    free(init);
    return p;
}

static void *raw_upload(backend *b, const void *x, size_t bytes) {
    void *p = b->buf_alloc(b, bytes);
    assert_non_null(p);
    b->copy_to_device(b, p, x, bytes);
    return p;
}

// Downloads n values (+ the guard when guarded) and checks the guard.
static float *act_download(backend *b, const void *p, size_t n, int guarded) {
    size_t total = n + (guarded ? GUARD : 0);
    float *out = malloc(total * sizeof(float));
    b->act_to_f32(b, out, p, total);
    fl_error err = {0};
    fl_code code = b->sync(b, &err);
    if (code != FL_OK) fail_msg("%s backend error: %s", b->name, err.msg);
    for (size_t i = n; i < total; i++)
        if (out[i] != GUARD_VALUE) fail_msg("%s wrote past its output (element %zu)", b->name, i);
    return out;
}

static void expect_close(const char *what, const float *gpu, const float *cpu, size_t n,
                         double thr) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(gpu[i])) fail_msg("%s: NaN (or unwritten element) at %zu", what, i);
        if (isnan(cpu[i])) fail_msg("%s: NaN in the CPU reference at %zu", what, i);
        double d = (double)gpu[i] - cpu[i];
        num += d * d;
        den += (double)cpu[i] * cpu[i];
    }
    double nmse = den > 0 ? num / den : num;
    if (!(nmse <= thr)) fail_msg("%s: nmse %.3g > %.3g", what, nmse, thr);
}

// Runs the same activation op on both backends and compares: fn(b, out, in...) through a
// callback that receives the per-backend buffers.
typedef struct act_case {
    const float *in[3];
    size_t in_n[3];
    int n_in;
    size_t out_n;
} act_case;
typedef void (*act_fn)(backend *b, void *out, void *const *in, void *ctx);

static void run_act_case(ops_env *e, const char *what, const act_case *c, act_fn fn, void *ctx,
                         double thr) {
    float *res[2];
    backend *bs[2] = {e->cpu, e->gpu};
    for (int k = 0; k < 2; k++) {
        backend *b = bs[k];
        void *in[3] = {0};
        for (int i = 0; i < c->n_in; i++) in[i] = act_upload(b, c->in[i], c->in_n[i]);
        void *out = act_output(b, c->out_n);
        fn(b, out, in, ctx);
        res[k] = act_download(b, out, c->out_n, 1);
        for (int i = 0; i < c->n_in; i++) b->buf_free(b, in[i]);
        b->buf_free(b, out);
    }
    expect_close(what, res[1], res[0], c->out_n, thr);
    free(res[0]);
    free(res[1]);
}

static float *rand_vec(ops_env *e, size_t n, float lo, float hi) {
    float *x = malloc(n * sizeof(float));
    ref_fill_uniform(&e->rng, x, n, lo, hi);
    return x;
}

// ---------------------------------------------------------------- matmul

typedef struct mm_ctx {
    bk_matrix *w[2];
    int n_tok;
} mm_ctx;

static void mm_fn(backend *b, void *out, void *const *in, void *ctx) {
    mm_ctx *m = ctx;
    b->matmul(b, out, in[0], m->w[b->act_dtype == DTYPE_F16], m->n_tok);
}

static void check_matmul(ops_env *e, const char *what, const host_matrix *hm, int n_tok,
                         double thr) {
    fl_error err = {0};
    mm_ctx m = {{e->cpu->matrix_create(e->cpu, hm, &err), NULL}, n_tok};
    assert_non_null(m.w[0]);
    m.w[1] = e->gpu->matrix_create(e->gpu, hm, &err);
    if (!m.w[1]) fail_msg("%s: cuda matrix_create: %s", what, err.msg);
    float *x = rand_vec(e, (size_t)n_tok * hm->n_in, -1, 1);
    act_case c = {{x}, {(size_t)n_tok * hm->n_in}, 1, (size_t)n_tok * hm->n_out};
    char label[160];
    snprintf(label, sizeof label, "%s n_tok=%d %dx%d", what, n_tok, hm->n_in, hm->n_out);
    run_act_case(e, label, &c, mm_fn, &m, thr);
    e->cpu->matrix_free(e->cpu, m.w[0]);
    e->gpu->matrix_free(e->gpu, m.w[1]);
    free(x);
}

static void test_matmul_dense(void **state) {
    ops_env *e = *state;
    NEED_GPU(e);
    const dtype types[] = {DTYPE_F32, DTYPE_F16, DTYPE_BF16};
    const int toks[] = {1, 3, 17};
    for (int t = 0; t < 3; t++)
        for (int i = 0; i < 3; i++) {
            ref_matrix rm;
            ref_matrix_dense(&rm, &e->rng, 200, 136, types[t], i != 1);
            check_matmul(e, dtype_name(types[t]), &rm.m, toks[i], THR_MATMUL);
            ref_matrix_free(&rm);
        }
    ref_matrix rm;
    ref_matrix_dense(&rm, &e->rng, 256, 72, DTYPE_F16, 1);
    check_matmul(e, "F16 long", &rm.m, 4097, THR_MATMUL);
    ref_matrix_free(&rm);
}

static void test_matmul_gptq(void **state) {
    ops_env *e = *state;
    NEED_GPU(e);
    const int toks[] = {1, 2, 3, 5, 8, 11, 16, 17, 64};
    const int groups[] = {32, 128};
    for (int g = 0; g < 2; g++)
        for (int act = 0; act < 2; act++)
            for (int i = 0; i < (int)(sizeof toks / sizeof toks[0]); i++) {
                ref_matrix rm;
                ref_matrix_gptq(&rm, &e->rng, 512, 264, groups[g], act, 0, i % 2);
                char what[64];
                snprintf(what, sizeof what, "gptq g%d act%d", groups[g], act);
                check_matmul(e, what, &rm.m, toks[i], THR_GPTQ);
                ref_matrix_free(&rm);
            }
    // ragged groups (a tensor-parallel slice of an act-order matrix), odd n_in
    for (int i = 0; i < 3; i++) {
        ref_matrix rm;
        ref_matrix_gptq(&rm, &e->rng, 328, 128, 32, 1, 1, 1);
        check_matmul(e, "gptq ragged", &rm.m, toks[i * 3 + 1], THR_GPTQ);
        ref_matrix_free(&rm);
    }
    // a wider shape: many K slices and column blocks, and a long prefill
    ref_matrix rm;
    ref_matrix_gptq(&rm, &e->rng, 2048, 1536, 128, 0, 0, 0);
    check_matmul(e, "gptq wide", &rm.m, 1, THR_GPTQ);
    check_matmul(e, "gptq wide", &rm.m, 4, THR_GPTQ);
    ref_matrix_free(&rm);
    ref_matrix_gptq(&rm, &e->rng, 256, 128, 128, 1, 0, 1);
    check_matmul(e, "gptq long", &rm.m, 4097, THR_GPTQ);
    ref_matrix_free(&rm);
}

// GPTQ matmul at every batch size the decode kernels take (1..64 rows) and a few prefill sizes,
// through each dispatch of the CUDA backend: the default, FALCONLITE_GPTQ_MMA=1 (the tensor-core
// kernel wherever it applies, 1 row included; one resident block per SM, so blocks walk several
// K units and cross column tiles) and FALCONLITE_GPTQ_MMA=0 (GEMV and dequant + GEMM only).
// Shapes: two column tiles of 256 with the second partial, groups of 32 / 128 and of 40 (5
// packed rows: mma k steps straddle groups), act-order, ragged groups, a long K.
static backend *gpu_with_env(const char *mma, const char *blocks_per_sm) {
    if (mma) setenv("FALCONLITE_GPTQ_MMA", mma, 1);
    if (blocks_per_sm) setenv("FALCONLITE_GPTQ_MMA_BLOCKS_PER_SM", blocks_per_sm, 1);
    fl_error err = {0};
    backend *b = backend_cuda_create(0, &err);
    unsetenv("FALCONLITE_GPTQ_MMA");
    unsetenv("FALCONLITE_GPTQ_MMA_BLOCKS_PER_SM");
    if (!b) fail_msg("backend_cuda_create: %s", err.msg);
    return b;
}

static void test_gptq_matmul_rows(void **state) {
    ops_env *e = *state;
    NEED_GPU(e);
    const struct { const char *mma, *bps; } modes[] = {{NULL, NULL}, {"1", "1"}, {"0", NULL}};
    const struct { int n_in, n_out, group, act, ragged; } small[] = {
        {328, 264, 32, 0, 0}, {328, 264, 32, 1, 0}, {520, 264, 128, 0, 0},
        {520, 264, 128, 1, 0}, {344, 264, 40, 1, 0}, {328, 136, 32, 1, 1}};
    const int prefill[] = {65, 100, 130};
    for (int md = 0; md < 3; md++) {
        ops_env em = *e;
        if (modes[md].mma) em.gpu = gpu_with_env(modes[md].mma, modes[md].bps);
        char what[96];
        for (int i = 0; i < (int)(sizeof small / sizeof small[0]); i++) {
            ref_matrix rm;
            ref_matrix_gptq(&rm, &e->rng, small[i].n_in, small[i].n_out, small[i].group,
                            small[i].act, small[i].ragged, i % 2);
            snprintf(what, sizeof what, "gptq rows mma=%s g%d act%d ragged%d",
                     modes[md].mma ? modes[md].mma : "auto", small[i].group, small[i].act,
                     small[i].ragged);
            for (int n_tok = 1; n_tok <= 64; n_tok++) check_matmul(&em, what, &rm.m, n_tok, THR_GPTQ);
            for (int t = 0; t < 3; t++) check_matmul(&em, what, &rm.m, prefill[t], THR_GPTQ);
            ref_matrix_free(&rm);
        }
        if (md < 2) // long K, 5 column tiles (the last 8 wide): 128 K units per tile
            for (int act = 0; act < 2; act++) {
                ref_matrix rm;
                ref_matrix_gptq(&rm, &e->rng, 8192, 1032, 128, act, 0, 1);
                snprintf(what, sizeof what, "gptq rows long mma=%s act%d",
                         modes[md].mma ? modes[md].mma : "auto", act);
                const int toks[] = {1, 3, 17, 64};
                for (int t = 0; t < 4; t++) check_matmul(&em, what, &rm.m, toks[t], THR_GPTQ);
                ref_matrix_free(&rm);
            }
        if (modes[md].mma) em.gpu->free(em.gpu);
    }
}

// ---------------------------------------------------------------- embedding, norms, elementwise

typedef struct emb_ctx {
    bk_matrix *table[2];
    int32_t *ids;
    int n_tok, row_start;
} emb_ctx;

static void emb_fn(backend *b, void *out, void *const *in, void *ctx) {
    emb_ctx *m = ctx;
    void *ids = raw_upload(b, m->ids, (size_t)m->n_tok * sizeof(int32_t));
    b->embedding(b, out, m->table[b->act_dtype == DTYPE_F16], ids, m->n_tok, m->row_start);
    b->sync(b, NULL);
    b->buf_free(b, ids);
}

static void test_embedding(void **state) {
    ops_env *e = *state;
    NEED_GPU(e);
    ref_matrix rm;
    ref_matrix_dense(&rm, &e->rng, 96, 50, DTYPE_BF16, 0); // [n_vocab_shard 50, d_model 96]
    fl_error err = {0};
    emb_ctx m = {{e->cpu->matrix_create(e->cpu, &rm.m, &err),
                  e->gpu->matrix_create(e->gpu, &rm.m, &err)}, NULL, 17, 40};
    assert_non_null(m.table[0]);
    assert_non_null(m.table[1]);
    int32_t ids[17];
    for (int t = 0; t < 17; t++) ids[t] = (int32_t)(ref_rng_u32(&e->rng) % 120); // some outside
    m.ids = ids;
    act_case c = {{0}, {0}, 0, (size_t)17 * 96};
    run_act_case(e, "embedding", &c, emb_fn, &m, THR_ELEMENTWISE);
    e->cpu->matrix_free(e->cpu, m.table[0]);
    e->gpu->matrix_free(e->gpu, m.table[1]);
    ref_matrix_free(&rm);
}

typedef struct norm_ctx {
    float *w[2], *bias[2];
    int n_tok, d, rms;
} norm_ctx;

static void norm_fn(backend *b, void *out, void *const *in, void *ctx) {
    norm_ctx *m = ctx;
    int k = b->act_dtype == DTYPE_F16;
    if (m->rms)
        b->rmsnorm(b, out, in[0], m->w[k], m->n_tok, m->d, 1e-6f);
    else
        b->layernorm(b, out, in[0], m->w[k], m->bias[k], m->n_tok, m->d, 1e-5f);
}

static void test_norms(void **state) {
    ops_env *e = *state;
    NEED_GPU(e);
    const int toks[] = {1, 3, 17}, dims[] = {64, 1000, 8192, 9000}; // 9000: the long-row path
    for (int i = 0; i < 3; i++)
        for (int kind = 0; kind < 3; kind++) { // layernorm + bias, layernorm, rmsnorm
            const int n_tok = toks[i], d = dims[(i + kind) % 4];
            float *x = rand_vec(e, (size_t)n_tok * d, -3, 5), *w = rand_vec(e, d, 0.5f, 1.5f);
            float *bias = rand_vec(e, d, -1, 1);
            norm_ctx m = {{0}, {0}, n_tok, d, kind == 2};
            backend *bs[2] = {e->cpu, e->gpu};
            for (int k = 0; k < 2; k++) {
                m.w[k] = bs[k]->vector_create(bs[k], w, d);
                m.bias[k] = kind == 0 ? bs[k]->vector_create(bs[k], bias, d) : NULL;
            }
            act_case c = {{x}, {(size_t)n_tok * d}, 1, (size_t)n_tok * d};
            run_act_case(e, kind == 2 ? "rmsnorm" : "layernorm", &c, norm_fn, &m, THR_NORM);
            for (int k = 0; k < 2; k++) {
                bs[k]->buf_free(bs[k], m.w[k]);
                if (m.bias[k]) bs[k]->buf_free(bs[k], m.bias[k]);
            }
            free(x);
            free(w);
            free(bias);
        }
}

typedef struct ew_ctx {
    int op; // 0 gelu, 1 swiglu, 2 add
    size_t n;
    int n_tok, d_ff;
} ew_ctx;

static void ew_fn(backend *b, void *out, void *const *in, void *ctx) {
    ew_ctx *m = ctx;
    if (m->op == 0) { // gelu is in place: out = x + 0 first, so out's sentinels are overwritten
        b->add(b, out, in[0], in[1], m->n);
        b->gelu(b, out, m->n);
    } else if (m->op == 1) {
        b->swiglu(b, out, in[0], m->n_tok, m->d_ff);
    } else {
        b->add(b, out, in[0], in[1], m->n);
    }
}

static void test_elementwise(void **state) {
    ops_env *e = *state;
    NEED_GPU(e);
    const int toks[] = {1, 3, 17, 4097};
    for (int i = 0; i < 4; i++) {
        const int n_tok = toks[i], d = 136;
        const size_t n = (size_t)n_tok * d;
        float *x = rand_vec(e, 2 * n, -6, 6), *y = rand_vec(e, n, -2, 2);
        float *zero = calloc(n, sizeof(float));
        ew_ctx m = {0, n, n_tok, d};
        act_case c = {{x, zero}, {n, n}, 2, n};
        run_act_case(e, "gelu", &c, ew_fn, &m, THR_ELEMENTWISE);
        m.op = 2;
        act_case ca = {{x, y}, {n, n}, 2, n};
        run_act_case(e, "add", &ca, ew_fn, &m, THR_ELEMENTWISE);
        m.op = 1;
        act_case cs = {{x}, {2 * n}, 1, n};
        run_act_case(e, "swiglu", &cs, ew_fn, &m, THR_ELEMENTWISE);
        free(x);
        free(y);
        free(zero);
    }
}

typedef struct gather_ctx {
    int32_t *rows;
    int n_rows, d;
} gather_ctx;

static void gather_fn(backend *b, void *out, void *const *in, void *ctx) {
    gather_ctx *m = ctx;
    void *rows = raw_upload(b, m->rows, (size_t)m->n_rows * sizeof(int32_t));
    b->gather_rows(b, out, in[0], rows, m->n_rows, m->d);
    b->sync(b, NULL);
    b->buf_free(b, rows);
}

static void test_gather_rows(void **state) {
    ops_env *e = *state;
    NEED_GPU(e);
    const int n_src = 17, d = 200, n_rows = 5;
    int32_t rows[] = {16, 0, 3, 3, 9};
    float *x = rand_vec(e, (size_t)n_src * d, -1, 1);
    gather_ctx m = {rows, n_rows, d};
    act_case c = {{x}, {(size_t)n_src * d}, 1, (size_t)n_rows * d};
    run_act_case(e, "gather_rows", &c, gather_fn, &m, THR_ELEMENTWISE);
    free(x);
}

// ---------------------------------------------------------------- qkv_split, rotary, kv_store

typedef struct qkv_ctx {
    int n_tok, n_head, n_head_kv, head_dim, part; // part: which of q, k, v is the output
} qkv_ctx;

static void qkv_fn(backend *b, void *out, void *const *in, void *ctx) {
    qkv_ctx *m = ctx;
    const size_t nq = (size_t)m->n_tok * m->n_head * m->head_dim;
    const size_t nkv = (size_t)m->n_tok * m->n_head_kv * m->head_dim;
    void *bufs[3];
    for (int i = 0; i < 3; i++)
        bufs[i] = i == m->part ? out : b->buf_alloc(b, (i == 0 ? nq : nkv) * act_size(b));
    b->qkv_split(b, bufs[0], bufs[1], bufs[2], in[0], m->n_tok, m->n_head, m->n_head_kv,
                 m->head_dim);
    b->sync(b, NULL);
    for (int i = 0; i < 3; i++)
        if (i != m->part) b->buf_free(b, bufs[i]);
}

static void test_qkv_split(void **state) {
    ops_env *e = *state;
    NEED_GPU(e);
    const int cfg[][3] = {{16, 2, 64}, {8, 1, 32}, {1, 1, 64}, {8, 8, 16}};
    for (int i = 0; i < 4; i++) {
        qkv_ctx m = {17, cfg[i][0], cfg[i][1], cfg[i][2], 0};
        const size_t n = (size_t)m.n_tok * (m.n_head + 2 * m.n_head_kv) * m.head_dim;
        float *qkv = rand_vec(e, n, -1, 1);
        for (int part = 0; part < 3; part++) {
            m.part = part;
            act_case c = {{qkv}, {n}, 1,
                          (size_t)m.n_tok * (part ? m.n_head_kv : m.n_head) * m.head_dim};
            run_act_case(e, "qkv_split", &c, qkv_fn, &m, THR_ELEMENTWISE);
        }
        free(qkv);
    }
}

typedef struct rot_ctx {
    int32_t *pos;
    float *base;
    int n_tok, n_heads, head_dim, rot_dim;
    float pos_scale;
} rot_ctx;

static void rot_fn(backend *b, void *out, void *const *in, void *ctx) {
    rot_ctx *m = ctx;
    const size_t n = (size_t)m->n_tok * m->n_heads * m->head_dim;
    void *pos = raw_upload(b, m->pos, (size_t)m->n_tok * sizeof(int32_t));
    void *base = raw_upload(b, m->base, (size_t)m->n_tok * sizeof(float));
    b->add(b, out, in[0], in[1], n); // out = x + 0, then rotate in place
    b->rotary(b, out, pos, base, m->n_tok, m->n_heads, m->head_dim, m->rot_dim, m->pos_scale);
    b->sync(b, NULL);
    b->buf_free(b, pos);
    b->buf_free(b, base);
}

static void test_rotary(void **state) {
    ops_env *e = *state;
    NEED_GPU(e);
    const int cfg[][4] = {{1, 8, 64, 64}, {17, 16, 64, 64}, {3, 1, 128, 64}, {5, 4, 32, 32}};
    for (int i = 0; i < 4; i++) {
        rot_ctx m = {NULL, NULL, cfg[i][0], cfg[i][1], cfg[i][2], cfg[i][3], i == 2 ? 0.5f : 1.0f};
        m.pos = malloc((size_t)m.n_tok * sizeof(int32_t));
        m.base = malloc((size_t)m.n_tok * sizeof(float));
        for (int t = 0; t < m.n_tok; t++) {
            m.pos[t] = (int32_t)(ref_rng_u32(&e->rng) % 12000);
            m.base[t] = 10000.0f * (1.0f + (float)(ref_rng_u32(&e->rng) % 1000) / 10.0f);
        }
        const size_t n = (size_t)m.n_tok * m.n_heads * m.head_dim;
        float *x = rand_vec(e, n, -2, 2), *zero = calloc(n, sizeof(float));
        act_case c = {{x, zero}, {n, n}, 2, n};
        run_act_case(e, "rotary", &c, rot_fn, &m, THR_ELEMENTWISE);
        free(x);
        free(zero);
        free(m.pos);
        free(m.base);
    }
}

// ---------------------------------------------------------------- KV cache and attention

// A paged cache with random contents on both backends, and a ragged batch over it.
typedef struct attn_setup {
    int n_head, n_head_kv, head_dim, n_blocks, n_seq, n_tok, max_n_q, max_ctx;
    attn_seq seqs[8];
    int32_t tables[4096];
    int n_table;
    float *kc, *vc;
} attn_setup;

static void attn_build(ops_env *e, attn_setup *s, const int (*sq)[2], int n_seq) {
    s->n_seq = n_seq;
    s->n_tok = s->max_n_q = s->max_ctx = 0;
    int need = 0;
    for (int i = 0; i < n_seq; i++) need += (sq[i][0] + sq[i][1] + KV_BLOCK_SIZE - 1) / KV_BLOCK_SIZE;
    s->n_blocks = need + 3;
    // shuffled block ids, so block tables are not in order
    int32_t *ids = malloc((size_t)s->n_blocks * sizeof(int32_t));
    for (int i = 0; i < s->n_blocks; i++) ids[i] = i;
    for (int i = s->n_blocks - 1; i > 0; i--) {
        int j = (int)(ref_rng_u32(&e->rng) % (uint32_t)(i + 1));
        int32_t t = ids[i];
        ids[i] = ids[j];
        ids[j] = t;
    }
    s->n_table = 0;
    for (int i = 0; i < n_seq; i++) {
        const int n_past = sq[i][0], n_q = sq[i][1];
        s->seqs[i] = (attn_seq){s->n_tok, n_q, n_past, s->n_table};
        for (int b = 0; b < (n_past + n_q + KV_BLOCK_SIZE - 1) / KV_BLOCK_SIZE; b++)
        {
            s->tables[s->n_table] = ids[s->n_table];
            s->n_table++;
        }
        s->n_tok += n_q;
        if (n_q > s->max_n_q) s->max_n_q = n_q;
        if (n_past + n_q > s->max_ctx) s->max_ctx = n_past + n_q;
    }
    free(ids);
    const size_t cache_n = (size_t)s->n_blocks * s->n_head_kv * KV_BLOCK_SIZE * s->head_dim;
    s->kc = rand_vec(e, cache_n, -1.5f, 1.5f);
    s->vc = rand_vec(e, cache_n, -1, 1);
}

typedef struct attn_ctx {
    attn_setup *s;
} attn_ctx;

static void attn_fn(backend *b, void *out, void *const *in, void *ctx) {
    attn_setup *s = ((attn_ctx *)ctx)->s;
    const size_t cache_n = (size_t)s->n_blocks * s->n_head_kv * KV_BLOCK_SIZE * s->head_dim;
    void *kc = act_upload(b, s->kc, cache_n), *vc = act_upload(b, s->vc, cache_n);
    void *seqs = raw_upload(b, s->seqs, (size_t)s->n_seq * sizeof(attn_seq));
    void *tables = raw_upload(b, s->tables, (size_t)s->n_table * sizeof(int32_t));
    attn_batch ab = {s->n_seq, s->n_tok, s->max_n_q, s->max_ctx, seqs, tables, NULL};
    b->attention(b, out, in[0], kc, vc, &ab, s->n_head, s->n_head_kv, s->head_dim,
                 1.0f / sqrtf((float)s->head_dim));
    b->sync(b, NULL);
    b->buf_free(b, kc);
    b->buf_free(b, vc);
    b->buf_free(b, seqs);
    b->buf_free(b, tables);
}

static void check_attention(ops_env *e, int n_head, int n_head_kv, int head_dim,
                            const int (*sq)[2], int n_seq) {
    attn_setup *s = calloc(1, sizeof *s);
    s->n_head = n_head;
    s->n_head_kv = n_head_kv;
    s->head_dim = head_dim;
    attn_build(e, s, sq, n_seq);
    const size_t nq = (size_t)s->n_tok * n_head * head_dim;
    float *q = rand_vec(e, nq, -1.5f, 1.5f);
    attn_ctx m = {s};
    act_case c = {{q}, {nq}, 1, nq};
    char what[96];
    snprintf(what, sizeof what, "attention heads %d/%d dim %d max_n_q %d", n_head, n_head_kv,
             head_dim, s->max_n_q);
    run_act_case(e, what, &c, attn_fn, &m, THR_ATTENTION);
    free(q);
    free(s->kc);
    free(s->vc);
    free(s);
}

static void test_attention_decode(void **state) {
    ops_env *e = *state;
    NEED_GPU(e);
    // (n_past, n_q): decodes at several context lengths, crossing split boundaries
    const int sq[][2] = {{40, 1}, {0, 1}, {300, 1}, {1030, 1}, {255, 1}};
    check_attention(e, 16, 2, 64, sq, 5);
    check_attention(e, 8, 8, 64, sq, 3);
    check_attention(e, 1, 1, 128, sq, 4);
    check_attention(e, 8, 1, 32, sq, 5);
    const int small_q[][2] = {{300, 3}, {17, 2}};
    check_attention(e, 16, 1, 64, small_q, 2);
    const int mid_sq[][2] = {{1000, 1}, {130, 1}, {5, 1}}; // one launch, in-kernel reduce
    check_attention(e, 16, 2, 64, mid_sq, 3);
    check_attention(e, 8, 1, 128, mid_sq, 3);
    const int long_sq[][2] = {{2100, 1}, {40, 1}}; // past the fused-reduce contexts
    check_attention(e, 16, 2, 64, long_sq, 2);
}

static void test_attention_prefill(void **state) {
    ops_env *e = *state;
    NEED_GPU(e);
    // ragged mixes of prefills (several with n_past > 0: chunked prompts) and decodes
    const int mix[][2] = {{0, 17}, {40, 1}, {100, 70}, {0, 3}, {0, 130}};
    check_attention(e, 16, 2, 64, mix, 5);
    check_attention(e, 8, 1, 128, mix, 5);
    check_attention(e, 8, 8, 64, mix, 3);
    check_attention(e, 16, 16, 32, mix, 3); // no tensor-core kernel for 32: fallback path
    const int longp[][2] = {{0, 4097}};
    check_attention(e, 2, 1, 64, longp, 1);
}

static void test_kv_store(void **state) {
    ops_env *e = *state;
    NEED_GPU(e);
    attn_setup *s = calloc(1, sizeof *s);
    s->n_head = 8;
    s->n_head_kv = 2;
    s->head_dim = 64;
    const int sq[][2] = {{0, 40}};
    attn_build(e, s, sq, 1);
    const int n_tok = 19;
    int32_t slots[19];
    for (int t = 0; t < n_tok; t++) slots[t] = (t * 7 + 3) % (s->n_blocks * KV_BLOCK_SIZE);
    const size_t nkv = (size_t)n_tok * s->n_head_kv * s->head_dim;
    const size_t cache_n = (size_t)s->n_blocks * s->n_head_kv * KV_BLOCK_SIZE * s->head_dim;
    float *k = rand_vec(e, nkv, -1, 1), *v = rand_vec(e, nkv, -1, 1);
    for (int which = 0; which < 2; which++) {
        // The cache itself is the output: compare the whole of it after the store.
        float *res[2];
        backend *bs[2] = {e->cpu, e->gpu};
        for (int j = 0; j < 2; j++) {
            backend *b = bs[j];
            void *kc = act_upload(b, s->kc, cache_n), *vc = act_upload(b, s->vc, cache_n);
            void *kb = act_upload(b, k, nkv), *vb = act_upload(b, v, nkv);
            void *sl = raw_upload(b, slots, sizeof slots);
            b->kv_store(b, kc, vc, kb, vb, sl, n_tok, s->n_head_kv, s->head_dim);
            res[j] = act_download(b, which ? vc : kc, cache_n, 0);
            void *bufs[] = {kc, vc, kb, vb, sl};
            for (int i = 0; i < 5; i++) b->buf_free(b, bufs[i]);
        }
        expect_close(which ? "kv_store v" : "kv_store k", res[1], res[0], cache_n, 1e-6);
        free(res[0]);
        free(res[1]);
    }
    free(k);
    free(v);
    free(s->kc);
    free(s->vc);
    free(s);
}

// ---------------------------------------------------------------- fused ops
// Each fused op must equal its unfused sequence exactly on the CPU backend (these parts run
// without a GPU) and match the CPU by nMSE on CUDA.

static void expect_same(const char *what, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0)
            fail_msg("%s: element %zu differs (%.9g vs %.9g)", what, i, a[i], b[i]);
}

typedef struct qrs_case {
    int n_tok, n_head, n_head_kv, head_dim, rot_dim, n_blocks;
    float pos_scale;
    int32_t pos[32], slots[32];
    float base[32];
    float *qkv, *kc, *vc; // host inputs
} qrs_case;

typedef struct qrs_out {
    float *q, *kc, *vc;
} qrs_out;

// Runs qkv_rotary_store (fused) or qkv_split + rotary + rotary + kv_store on b.
static qrs_out qrs_run(backend *b, const qrs_case *c, int fused) {
    const size_t hd = (size_t)c->head_dim, t = (size_t)c->n_tok;
    const size_t n_qkv = t * (c->n_head + 2 * c->n_head_kv) * hd, nq = t * c->n_head * hd;
    const size_t nkv = t * c->n_head_kv * hd;
    const size_t cache_n = (size_t)c->n_blocks * c->n_head_kv * KV_BLOCK_SIZE * hd;
    void *qkv = act_upload(b, c->qkv, n_qkv), *q = act_output(b, nq);
    void *kc = act_upload(b, c->kc, cache_n), *vc = act_upload(b, c->vc, cache_n);
    void *pos = raw_upload(b, c->pos, t * 4), *base = raw_upload(b, c->base, t * 4);
    void *slots = raw_upload(b, c->slots, t * 4);
    void *k = b->buf_alloc(b, nkv * act_size(b)), *v = b->buf_alloc(b, nkv * act_size(b));
    if (fused) {
        b->qkv_rotary_store(b, q, kc, vc, qkv, pos, base, slots, c->n_tok, c->n_head,
                            c->n_head_kv, c->head_dim, c->rot_dim, c->pos_scale);
    } else {
        b->qkv_split(b, q, k, v, qkv, c->n_tok, c->n_head, c->n_head_kv, c->head_dim);
        b->rotary(b, q, pos, base, c->n_tok, c->n_head, c->head_dim, c->rot_dim, c->pos_scale);
        b->rotary(b, k, pos, base, c->n_tok, c->n_head_kv, c->head_dim, c->rot_dim, c->pos_scale);
        b->kv_store(b, kc, vc, k, v, slots, c->n_tok, c->n_head_kv, c->head_dim);
    }
    qrs_out o = {act_download(b, q, nq, 1), act_download(b, kc, cache_n, 0),
                 act_download(b, vc, cache_n, 0)};
    void *bufs[] = {qkv, q, kc, vc, pos, base, slots, k, v};
    for (int i = 0; i < 9; i++) b->buf_free(b, bufs[i]);
    return o;
}

static void qrs_out_free(qrs_out *o) {
    free(o->q);
    free(o->kc);
    free(o->vc);
}

static void test_fused_qkv_rotary_store(void **state) {
    ops_env *e = *state;
    // n_tok, n_head, n_head_kv, head_dim, rot_dim: GQA, MQA with rot_dim < head_dim, MHA with an
    // odd head count per token row, a single token (decode)
    const int cfg[][5] = {{7, 16, 2, 64, 64}, {19, 8, 1, 32, 16}, {5, 6, 6, 48, 32},
                          {1, 64, 8, 128, 128}, {3, 4, 2, 40, 24}};
    for (int ci = 0; ci < 5; ci++) {
        qrs_case c = {.n_tok = cfg[ci][0], .n_head = cfg[ci][1], .n_head_kv = cfg[ci][2],
                      .head_dim = cfg[ci][3], .rot_dim = cfg[ci][4],
                      .pos_scale = ci == 2 ? 0.25f : 1.0f};
        c.n_blocks = c.n_tok / KV_BLOCK_SIZE + 3;
        const size_t hd = (size_t)c.head_dim;
        const size_t n_qkv = (size_t)c.n_tok * (c.n_head + 2 * c.n_head_kv) * hd;
        const size_t cache_n = (size_t)c.n_blocks * c.n_head_kv * KV_BLOCK_SIZE * hd;
        for (int t = 0; t < c.n_tok; t++) { // a ragged batch: unrelated positions and bases
            c.pos[t] = (int32_t)(ref_rng_u32(&e->rng) % 12000);
            c.base[t] = 10000.0f * (1.0f + (float)(ref_rng_u32(&e->rng) % 1000) / 10.0f);
            c.slots[t] = (t * 7 + 3) % (c.n_blocks * KV_BLOCK_SIZE);
        }
        if (c.n_tok > 2) c.slots[1] = -1; // a token without a cache slot
        c.qkv = rand_vec(e, n_qkv, -2, 2);
        c.kc = rand_vec(e, cache_n, -1, 1);
        c.vc = rand_vec(e, cache_n, -1, 1);
        const size_t nq = (size_t)c.n_tok * c.n_head * hd;
        qrs_out cf = qrs_run(e->cpu, &c, 1), cu = qrs_run(e->cpu, &c, 0);
        expect_same("cpu qkv_rotary_store q", cf.q, cu.q, nq);
        expect_same("cpu qkv_rotary_store k cache", cf.kc, cu.kc, cache_n);
        expect_same("cpu qkv_rotary_store v cache", cf.vc, cu.vc, cache_n);
        if (e->gpu) {
            qrs_out g = qrs_run(e->gpu, &c, 1);
            expect_close("qkv_rotary_store q", g.q, cf.q, nq, THR_ELEMENTWISE);
            expect_close("qkv_rotary_store k cache", g.kc, cf.kc, cache_n, THR_ELEMENTWISE);
            expect_close("qkv_rotary_store v cache", g.vc, cf.vc, cache_n, THR_ELEMENTWISE);
            qrs_out_free(&g);
        }
        qrs_out_free(&cf);
        qrs_out_free(&cu);
        free(c.qkv);
        free(c.kc);
        free(c.vc);
    }
}

typedef struct rn_case {
    int n_tok, d, rms, n_res, dual, bias;
    float *x, *r1, *r2, *w[2], *bias_v[2];
} rn_case;

typedef struct rn_out {
    float *x, *a, *m;
} rn_out;

// Runs residual_norm (fused) or add(s) + norm(s) on b.
static rn_out rn_run(backend *b, const rn_case *c, int fused) {
    const size_t n = (size_t)c->n_tok * c->d;
    const float eps = c->rms ? 1e-6f : 1e-5f;
    void *x = act_upload(b, c->x, n), *a = act_output(b, n), *m = c->dual ? act_output(b, n) : NULL;
    void *r1 = c->n_res > 0 ? act_upload(b, c->r1, n) : NULL;
    void *r2 = c->n_res > 1 ? act_upload(b, c->r2, n) : NULL;
    bk_norm nn[2];
    for (int i = 0; i < 2; i++)
        nn[i] = (bk_norm){b->vector_create(b, c->w[i], c->d),
                          c->bias ? b->vector_create(b, c->bias_v[i], c->d) : NULL};
    if (fused) {
        b->residual_norm(b, x, r1, r2, a, nn[0], m, nn[1], c->rms, c->n_tok, c->d, eps);
    } else {
        if (r2) b->add(b, r1, r1, r2, n);
        if (r1) b->add(b, x, x, r1, n);
        for (int i = 0; i < 1 + c->dual; i++) {
            if (c->rms)
                b->rmsnorm(b, i ? m : a, x, nn[i].w, c->n_tok, c->d, eps);
            else
                b->layernorm(b, i ? m : a, x, nn[i].w, nn[i].bias, c->n_tok, c->d, eps);
        }
    }
    rn_out o = {act_download(b, x, n, 0), act_download(b, a, n, 1),
                m ? act_download(b, m, n, 1) : NULL};
    void *bufs[] = {x, a, m, r1, r2, (void *)nn[0].w, (void *)nn[0].bias, (void *)nn[1].w,
                    (void *)nn[1].bias};
    for (int i = 0; i < 9; i++)
        if (bufs[i]) b->buf_free(b, bufs[i]);
    return o;
}

static void rn_out_free(rn_out *o) {
    free(o->x);
    free(o->a);
    free(o->m);
}

static void test_fused_residual_norm(void **state) {
    ops_env *e = *state;
    // n_tok, d, rms, residuals (0-2), dual, bias; 9000: the long-row path
    const int cfg[][6] = {{1, 8192, 0, 2, 1, 0}, {3, 1000, 0, 1, 1, 1}, {17, 64, 1, 2, 0, 0},
                          {2, 9000, 0, 2, 1, 1}, {5, 9000, 1, 1, 1, 0}, {4, 136, 0, 0, 1, 1},
                          {1, 4544, 0, 1, 0, 1}};
    for (int ci = 0; ci < 7; ci++) {
        rn_case c = {.n_tok = cfg[ci][0], .d = cfg[ci][1], .rms = cfg[ci][2],
                     .n_res = cfg[ci][3], .dual = cfg[ci][4], .bias = cfg[ci][5]};
        const size_t n = (size_t)c.n_tok * c.d;
        c.x = rand_vec(e, n, -3, 5);
        c.r1 = rand_vec(e, n, -1, 1);
        c.r2 = rand_vec(e, n, -1, 1);
        for (int i = 0; i < 2; i++) {
            c.w[i] = rand_vec(e, c.d, 0.5f, 1.5f);
            c.bias_v[i] = rand_vec(e, c.d, -1, 1);
        }
        rn_out cf = rn_run(e->cpu, &c, 1), cu = rn_run(e->cpu, &c, 0);
        char what[96];
        snprintf(what, sizeof what, "residual_norm %s d=%d residuals=%d dual=%d",
                 c.rms ? "rms" : "layer", c.d, c.n_res, c.dual);
        expect_same(what, cf.x, cu.x, n);
        expect_same(what, cf.a, cu.a, n);
        if (c.dual) expect_same(what, cf.m, cu.m, n);
        if (e->gpu) {
            rn_out g = rn_run(e->gpu, &c, 1);
            expect_close(what, g.x, cf.x, n, THR_ELEMENTWISE);
            expect_close(what, g.a, cf.a, n, THR_NORM);
            if (c.dual) expect_close(what, g.m, cf.m, n, THR_NORM);
            rn_out_free(&g);
        }
        rn_out_free(&cf);
        rn_out_free(&cu);
        free(c.x);
        free(c.r1);
        free(c.r2);
        for (int i = 0; i < 2; i++) {
            free(c.w[i]);
            free(c.bias_v[i]);
        }
    }
}

// The op profile: spans are counted per name, and graphs are neither captured nor replayed
// while a profile runs (the spans would otherwise vanish into one launch).
static void check_profile(backend *b) {
    if (!b->profile_begin) return;
    const size_t n = 4096;
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = (float)i / n;
    void *a = act_upload(b, x, n), *o = act_output(b, n);
    b->op_begin(b, "outside"); // no profile running: ignored
    b->op_end(b);
    b->profile_begin(b);
    if (b->graph_replay) assert_int_equal(b->graph_replay(b, 7), 0);
    for (int i = 0; i < 3; i++) {
        b->op_begin(b, "add");
        b->add(b, o, a, a, n);
        b->op_end(b);
    }
    b->op_begin(b, "gelu");
    b->gelu(b, o, n);
    b->op_end(b);
    op_profile_entry ent[8];
    fl_error err = {0};
    int got = b->profile_end(b, ent, 8, &err);
    if (got < 0) fail_msg("%s profile_end: %s", b->name, err.msg);
    assert_int_equal(got, 2);
    assert_string_equal(ent[0].name, "add");
    assert_int_equal(ent[0].calls, 3);
    assert_string_equal(ent[1].name, "gelu");
    assert_int_equal(ent[1].calls, 1);
    assert_true(ent[0].total_us >= 0 && ent[1].total_us >= 0);
    float *out = act_download(b, o, n, 1);
    for (size_t i = 0; i < n; i++) assert_false(isnan(out[i]));
    free(out);
    free(x);
    b->buf_free(b, a);
    b->buf_free(b, o);
}

static void test_op_profile(void **state) {
    ops_env *e = *state;
    check_profile(e->cpu);
    if (e->gpu) check_profile(e->gpu);
}

// ---------------------------------------------------------------- graphs and errors

// A decode-like step (GPTQ GEMV, decode attention, elementwise) captured once, then replayed
// with new inputs written to the same buffers: the replay must equal direct execution.
static void test_graph_replay(void **state) {
    ops_env *e = *state;
    NEED_GPU(e);
    backend *b = e->gpu;
    if (!b->graph_capture_begin) skip();
    fl_error err = {0};
    ref_matrix rm;
    ref_matrix_gptq(&rm, &e->rng, 1024, 1024, 128, 1, 0, 1);
    bk_matrix *w = b->matrix_create(b, &rm.m, &err);
    assert_non_null(w);
    attn_setup *s = calloc(1, sizeof *s);
    s->n_head = 16;
    s->n_head_kv = 1;
    s->head_dim = 64;
    const int sq[][2] = {{700, 1}};
    attn_build(e, s, sq, 1);
    const size_t cache_n = (size_t)s->n_blocks * s->n_head_kv * KV_BLOCK_SIZE * s->head_dim;
    void *kc = act_upload(b, s->kc, cache_n), *vc = act_upload(b, s->vc, cache_n);
    void *seqs = raw_upload(b, s->seqs, sizeof(attn_seq));
    void *tables = raw_upload(b, s->tables, (size_t)s->n_table * sizeof(int32_t));
    attn_batch ab = {1, 1, 1, s->max_ctx, seqs, tables, NULL};
    void *x = b->buf_alloc(b, 1024 * 2), *y = b->buf_alloc(b, 1024 * 2),
         *o = b->buf_alloc(b, 1024 * 2);
    float *direct[2], *replayed[2], poison[1024];
    for (int i = 0; i < 1024; i++) poison[i] = NAN;
    for (int round = 0; round < 2; round++) {
        float *xin = rand_vec(e, 1024, -1, 1);
        // direct
        b->act_from_f32(b, x, xin, 1024);
        b->matmul(b, y, x, w, 1);
        b->attention(b, o, y, kc, vc, &ab, 16, 1, 64, 0.125f);
        b->gelu(b, o, 1024);
        direct[round] = act_download(b, o, 1024, 0);
        // captured on round 0, replayed on round 1 (inputs refreshed before, as the driver does)
        b->act_from_f32(b, x, xin, 1024);
        b->act_from_f32(b, o, poison, 1024); // the replay must write every output
        if (round == 0) {
            assert_int_equal(b->graph_replay(b, 42), 0);
            b->graph_capture_begin(b, 42);
            b->matmul(b, y, x, w, 1);
            b->attention(b, o, y, kc, vc, &ab, 16, 1, 64, 0.125f);
            b->gelu(b, o, 1024);
            b->graph_capture_end(b, 42);
        } else {
            assert_int_equal(b->graph_replay(b, 42), 1);
        }
        replayed[round] = act_download(b, o, 1024, 0);
        // split-K partial sums are added atomically, so only the order of additions may differ
        expect_close("graph replay", replayed[round], direct[round], 1024, 1e-6);
        free(xin);
    }
    for (int r = 0; r < 2; r++) {
        free(direct[r]);
        free(replayed[r]);
    }
    b->graph_reset(b);
    assert_int_equal(b->graph_replay(b, 42), 0);
    void *bufs[] = {kc, vc, seqs, tables, x, y, o};
    for (int i = 0; i < 7; i++) b->buf_free(b, bufs[i]);
    b->matrix_free(b, w);
    ref_matrix_free(&rm);
    free(s->kc);
    free(s->vc);
    free(s);
}

// Errors are recorded, reported once by sync() with a message, and never abort.
static void test_error_reporting(void **state) {
    ops_env *e = *state;
    NEED_GPU(e);
    backend *b = e->gpu;
    attn_batch ab = {1, 1, 1, 1, NULL, NULL, NULL};
    b->attention(b, NULL, NULL, NULL, NULL, &ab, 3, 2, 64, 1.0f); // 3 heads over 2 KV heads
    fl_error err = {0};
    assert_int_not_equal(b->sync(b, &err), FL_OK);
    assert_non_null(strstr(err.msg, "n_head"));
    assert_int_equal(b->sync(b, &err), FL_OK);
    assert_null(b->buf_alloc(b, (size_t)1 << 50)); // 1 PiB: fails cleanly, not sticky
    assert_int_equal(b->sync(b, &err), FL_OK);
}

// ---------------------------------------------------------------- the op list

// Every case, with the ops of kernels/backend_ops.h it compares (space-separated names).
typedef struct op_case {
    const char *name;
    CMUnitTestFunction fn;
    const char *ops;
} op_case;

#define OP_CASE(fn, ops) {#fn, fn, ops}
static const op_case cases[] = {
    OP_CASE(test_matmul_dense, "matmul"),
    OP_CASE(test_matmul_gptq, "matmul"),
    OP_CASE(test_gptq_matmul_rows, "matmul"),
    OP_CASE(test_embedding, "embedding"),
    OP_CASE(test_norms, "layernorm rmsnorm"),
    OP_CASE(test_elementwise, "gelu add swiglu"),
    OP_CASE(test_gather_rows, "gather_rows"),
    OP_CASE(test_qkv_split, "qkv_split"),
    OP_CASE(test_rotary, "rotary"),
    OP_CASE(test_kv_store, "kv_store"),
    OP_CASE(test_attention_decode, "attention"),
    OP_CASE(test_attention_prefill, "attention"),
    OP_CASE(test_graph_replay, "matmul attention gelu"),
    OP_CASE(test_error_reporting, "attention"),
    OP_CASE(test_fused_qkv_rotary_store, "qkv_rotary_store"),
    OP_CASE(test_fused_residual_norm, "residual_norm"),
    OP_CASE(test_op_profile, ""),
};
#define N_CASES (sizeof cases / sizeof cases[0])

static int case_covers(const op_case *c, const char *op) {
    size_t n = strlen(op);
    for (const char *p = c->ops; (p = strstr(p, op)) != NULL; p += n)
        if ((p == c->ops || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0')) return 1;
    return 0;
}

// An op added to BACKEND_OPS without a comparison case here fails (runs without a GPU too).
static void test_every_op_has_a_case(void **state) {
    const char *ops[] = {
#define OP_NAME(op) #op,
        BACKEND_OPS(OP_NAME)
#undef OP_NAME
    };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        int covered = 0;
        for (size_t c = 0; c < N_CASES && !covered; c++) covered = case_covers(&cases[c], ops[i]);
        if (!covered) fail_msg("backend op %s has no CPU-vs-CUDA case in cases[]", ops[i]);
    }
}

// Plain: the op list's completeness (no GPU needed). --gpu: every CPU-vs-CUDA case too.
int main(int argc, char **argv) {
    int gpu = argc > 1 && !strcmp(argv[1], "--gpu");
    if (gpu) gpu_probe_require("test_backend_ops --gpu", 1);
    struct CMUnitTest tests[N_CASES + 1];
    tests[0] = (struct CMUnitTest)cmocka_unit_test(test_every_op_has_a_case);
    for (size_t i = 0; i < N_CASES; i++)
        tests[i + 1] = (struct CMUnitTest){cases[i].name, cases[i].fn, NULL, NULL, NULL};
    return _cmocka_run_group_tests("test_backend_ops", tests, gpu ? N_CASES + 1 : 1,
                                   gpu ? setup : NULL, gpu ? teardown : NULL);
}
