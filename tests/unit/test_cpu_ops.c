// Every CPU backend op against the double-precision references in helpers/op_reference.c, on
// seeded random inputs and odd shapes, compared by normalised MSE. Outputs start as NaN so an
// element an op fails to write shows up as a NaN.
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
#include "kernels/cpu/thread_pool.h"
#include "tests/unit/helpers/op_reference.h"

static const int TOKEN_COUNTS[] = {1, 3, 17, 130};
enum { N_TOKEN_COUNTS = sizeof TOKEN_COUNTS / sizeof TOKEN_COUNTS[0] };

// ---------------------------------------------------------------- helpers

static int setup_backend(void **state) {
    fl_error err = {0};
    backend *b = backend_cpu_create(3, &err); // more threads than this 2-core CI machine has
    if (!b) fprintf(stderr, "backend_cpu_create: %s\n", err.msg);
    *state = b;
    return b ? 0 : -1;
}

static int teardown_backend(void **state) {
    backend *b = *state;
    b->free(b);
    return 0;
}

static void *dev_upload(backend *b, const void *host, size_t nbytes) {
    void *p = b->buf_alloc(b, nbytes);
    assert_non_null(p);
    b->copy_to_device(b, p, host, nbytes);
    return p;
}

static void *dev_act(backend *b, const float *host, size_t n) {
    void *p = b->buf_alloc(b, n * dtype_size(b->act_dtype));
    assert_non_null(p);
    b->act_from_f32(b, p, host, n);
    return p;
}

static void *dev_act_nan(backend *b, size_t n) {
    float *nan_fill = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        nan_fill[i] = NAN;
    void *p = dev_act(b, nan_fill, n);
    free(nan_fill);
    return p;
}

static float *random_floats(ref_rng *r, size_t n, float lo, float hi) {
    float *x = malloc(n * sizeof(float));
    ref_fill_uniform(r, x, n, lo, hi);
    return x;
}

// Reads back an act buffer and checks it against ref: no NaN, nmse <= threshold.
static void check_act(backend *b, const char *what, const void *out_dev, const double *ref,
                      size_t n, double threshold) {
    fl_error err = {0};
    assert_int_equal(b->sync(b, &err), FL_OK);
    float *out = malloc(n * sizeof(float));
    b->act_to_f32(b, out, out_dev, n);
    int nans = ref_count_nan(out, n);
    double nmse = ref_nmse(out, ref, n);
    if (nans || !(nmse <= threshold))
        fprintf(stderr, "%s: %d NaN, nmse %.3g (threshold %.3g)\n", what, nans, nmse, threshold);
    free(out);
    assert_int_equal(nans, 0);
    assert_true(nmse <= threshold);
}

// ---------------------------------------------------------------- thread pool

typedef struct pool_count {
    int *hits;      // [n] times each item ran
    int bad_thread; // set when a chunk reports a thread index out of range
    int n_threads;
} pool_count;

static void pool_count_task(void *arg, int64_t begin, int64_t end, int thread) {
    pool_count *pc = arg;
    if (thread < 0 || thread >= pc->n_threads) pc->bad_thread = 1;
    for (int64_t i = begin; i < end; i++)
        __atomic_fetch_add(&pc->hits[i], 1, __ATOMIC_RELAXED);
}

static void test_thread_pool_runs_every_item_once(void **state) {
    thread_pool *p = thread_pool_create(4);
    assert_non_null(p);
    assert_int_equal(thread_pool_size(p), 4);
    const int64_t sizes[] = {0, 1, 5, 1000, 4097};
    for (int round = 0; round < 50; round++) { // many loops: workers must wake every time
        int64_t n = sizes[round % 5];
        pool_count pc = {calloc((size_t)n + 1, sizeof(int)), 0, 4};
        thread_pool_for(p, n, 1 + round % 3, pool_count_task, &pc);
        for (int64_t i = 0; i < n; i++)
            assert_int_equal(pc.hits[i], 1);
        assert_int_equal(pc.bad_thread, 0);
        free(pc.hits);
    }
    thread_pool_free(p);
}

// ---------------------------------------------------------------- backend creation

static void test_backend_create(void **state) {
    fl_error err = {0};
    backend *b = backend_create("cpu", &err);
    assert_non_null(b);
    assert_string_equal(b->name, "cpu");
    assert_int_equal(b->act_dtype, DTYPE_F32);
    assert_true(b->mem_available(b) > 0);
    b->free(b);

    b = backend_cpu_create(0, &err); // FALCONLITE_THREADS or all cores
    assert_non_null(b);
    b->free(b);

    assert_null(backend_create("tpu", &err));
    assert_int_equal(err.code, FL_EINVAL);
    assert_non_null(strstr(err.msg, "tpu"));

    b = backend_create("auto", &err);
    assert_non_null(b);
    b->free(b);
#ifndef FALCONLITE_HAVE_CUDA
    err = (fl_error){0};
    assert_null(backend_create("cuda", &err));
    assert_int_not_equal(err.code, FL_OK);
    assert_string_equal(err.msg, "falconlite was built without CUDA");
#endif
}

// ---------------------------------------------------------------- matmul

static void check_matmul(backend *b, ref_rng *r, const host_matrix *m, const char *what,
                         double threshold) {
    fl_error err = {0};
    bk_matrix *bm = b->matrix_create(b, m, &err);
    if (!bm) fprintf(stderr, "%s: %s\n", what, err.msg);
    assert_non_null(bm);
    for (int i = 0; i < N_TOKEN_COUNTS; i++) {
        int n_tok = TOKEN_COUNTS[i];
        float *x = random_floats(r, (size_t)n_tok * m->n_in, -1.0f, 1.0f);
        double *ref = malloc((size_t)n_tok * m->n_out * sizeof(double));
        ref_matmul(ref, x, m, n_tok);
        void *x_dev = dev_act(b, x, (size_t)n_tok * m->n_in);
        void *y_dev = dev_act_nan(b, (size_t)n_tok * m->n_out);
        b->matmul(b, y_dev, x_dev, bm, n_tok);
        char name[160];
        snprintf(name, sizeof name, "%s n_tok %d", what, n_tok);
        check_act(b, name, y_dev, ref, (size_t)n_tok * m->n_out, threshold);
        b->buf_free(b, x_dev);
        b->buf_free(b, y_dev);
        free(ref);
        free(x);
    }
    b->matrix_free(b, bm);
}

static void test_matmul_dense(void **state) {
    backend *b = *state;
    ref_rng r = {1};
    const int shapes[][2] = {{67, 45}, {256, 40}, {8, 1}}; // n_in, n_out
    const dtype types[] = {DTYPE_F32, DTYPE_F16, DTYPE_BF16};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        for (int t = 0; t < 3; t++) {
            for (int bias = 0; bias < 2; bias++) {
                ref_matrix rm;
                ref_matrix_dense(&rm, &r, shapes[s][0], shapes[s][1], types[t], bias);
                char what[128];
                snprintf(what, sizeof what, "dense %s %dx%d bias %d", dtype_name(types[t]),
                         shapes[s][0], shapes[s][1], bias);
                check_matmul(b, &r, &rm.m, what, 1e-11);
                ref_matrix_free(&rm);
            }
        }
    }
}

static void test_matmul_gptq(void **state) {
    backend *b = *state;
    ref_rng r = {2};
    const int shapes[][2] = {{256, 136}, {384, 264}}; // n_out % 16 = 8: half tiles and strips
    const int groups[] = {32, 128};
    for (size_t s = 0; s < 2; s++) {
        for (int g = 0; g < 2; g++) {
            for (int order = 0; order < 3; order++) { // 0: sequential, 1: act-order, 2: ragged
                for (int bias = 0; bias < 2; bias++) {
                    ref_matrix rm;
                    ref_matrix_gptq(&rm, &r, shapes[s][0], shapes[s][1], groups[g], order >= 1,
                                    order == 2, bias);
                    char what[128];
                    snprintf(what, sizeof what, "gptq %dx%d group %d order %d bias %d",
                             shapes[s][0], shapes[s][1], groups[g], order, bias);
                    check_matmul(b, &r, &rm.m, what, 1e-11);
                    ref_matrix_free(&rm);
                }
            }
        }
    }
}

static void test_matrix_create_rejects_bad_input(void **state) {
    backend *b = *state;
    ref_rng r = {3};
    ref_matrix rm;
    fl_error err = {0};
    ref_matrix_gptq(&rm, &r, 64, 16, 32, 0, 0, 0);
    rm.g_idx[5] = 7; // only 2 groups
    assert_null(b->matrix_create(b, &rm.m, &err));
    assert_int_equal(err.code, FL_EINVAL);
    assert_non_null(strstr(err.msg, "g_idx[5]"));
    rm.g_idx[5] = 0;
    rm.m.bits = 3;
    assert_null(b->matrix_create(b, &rm.m, &err));
    assert_int_equal(err.code, FL_EUNSUPPORTED);
    ref_matrix_free(&rm);

    ref_matrix_dense(&rm, &r, 4, 4, DTYPE_F32, 0);
    rm.m.w_type = DTYPE_I32;
    assert_null(b->matrix_create(b, &rm.m, &err));
    assert_int_equal(err.code, FL_EUNSUPPORTED);
    ref_matrix_free(&rm);
}

// ---------------------------------------------------------------- embedding, norms

static void test_embedding(void **state) {
    backend *b = *state;
    ref_rng r = {4};
    const dtype types[] = {DTYPE_F32, DTYPE_F16, DTYPE_BF16};
    for (int t = 0; t < 3; t++) {
        ref_matrix rm; // [n_vocab_shard 50, d_model 37]
        ref_matrix_dense(&rm, &r, 37, 50, types[t], 0);
        fl_error err = {0};
        bk_matrix *table = b->matrix_create(b, &rm.m, &err);
        assert_non_null(table);
        int32_t ids[17];
        for (int i = 0; i < 17; i++)
            ids[i] = 90 + (int32_t)(ref_rng_u32(&r) % 80); // some outside
        ids[0] = 100;                                      // first row of the shard
        ids[1] = 149;                                      // last row
        int32_t *ids_dev = dev_upload(b, ids, sizeof ids);
        void *out = dev_act_nan(b, 17 * 37);
        b->embedding(b, out, table, ids_dev, 17, 100);
        double ref[17 * 37];
        ref_embedding(ref, &rm.m, ids, 17, 100);
        check_act(b, "embedding", out, ref, 17 * 37, 0.0);
        b->buf_free(b, out);
        b->buf_free(b, ids_dev);
        b->matrix_free(b, table);
        ref_matrix_free(&rm);
    }
}

static void test_norms(void **state) {
    backend *b = *state;
    ref_rng r = {5};
    const int dims[] = {1, 7, 64, 333};
    for (int di = 0; di < 4; di++) {
        int d = dims[di];
        float *w_host = random_floats(&r, (size_t)d, 0.5f, 1.5f);
        float *bias_host = random_floats(&r, (size_t)d, -0.5f, 0.5f);
        float *w = b->vector_create(b, w_host, d), *bias = b->vector_create(b, bias_host, d);
        assert_non_null(w);
        assert_non_null(bias);
        for (int i = 0; i < N_TOKEN_COUNTS; i++) {
            int n_tok = TOKEN_COUNTS[i];
            size_t n = (size_t)n_tok * d;
            float *x = random_floats(&r, n, -3.0f, 5.0f); // mean far from 0: two-pass matters
            double *ref = malloc(n * sizeof(double));
            void *x_dev = dev_act(b, x, n), *out = dev_act_nan(b, n);
            for (int with_bias = 0; with_bias < 2; with_bias++) {
                b->layernorm(b, out, x_dev, w, with_bias ? bias : NULL, n_tok, d, 1e-5f);
                ref_layernorm(ref, x, w_host, with_bias ? bias_host : NULL, n_tok, d, 1e-5f);
                check_act(b, "layernorm", out, ref, n, 1e-12);
            }
            b->rmsnorm(b, out, x_dev, w, n_tok, d, 1e-6f);
            ref_rmsnorm(ref, x, w_host, n_tok, d, 1e-6f);
            check_act(b, "rmsnorm", out, ref, n, 1e-12);
            b->buf_free(b, x_dev);
            b->buf_free(b, out);
            free(ref);
            free(x);
        }
        free(w_host);
        free(bias_host);
    }
}

// ---------------------------------------------------------------- rotary

static void test_rotary(void **state) {
    backend *b = *state;
    ref_rng r = {6};
    const int head_dims[] = {64, 32};
    for (int hi = 0; hi < 2; hi++) {
        int head_dim = head_dims[hi];
        for (int partial = 0; partial < 2; partial++) {
            int rot_dim = partial ? head_dim / 2 : head_dim;
            for (int i = 0; i < N_TOKEN_COUNTS; i++) {
                int n_tok = TOKEN_COUNTS[i], n_heads = 3;
                size_t n = (size_t)n_tok * n_heads * head_dim;
                float *x = random_floats(&r, n, -1.0f, 1.0f);
                int32_t *pos = malloc((size_t)n_tok * sizeof(int32_t));
                float *base = malloc((size_t)n_tok * sizeof(float));
                for (int t = 0; t < n_tok; t++) {
                    pos[t] = (int32_t)(ref_rng_u32(&r) % 12000);
                    base[t] = t % 2 ? 10000.0f : 10000.0f * ref_rng_uniform(&r, 1.0f, 30.0f);
                }
                void *x_dev = dev_act(b, x, n);
                int32_t *pos_dev = dev_upload(b, pos, (size_t)n_tok * sizeof(int32_t));
                float *base_dev = dev_upload(b, base, (size_t)n_tok * sizeof(float));
                float pos_scale = partial ? 0.5f : 1.0f;
                b->rotary(b, x_dev, pos_dev, base_dev, n_tok, n_heads, head_dim, rot_dim,
                          pos_scale);
                double *ref = malloc(n * sizeof(double));
                ref_rotary(ref, x, pos, base, n_tok, n_heads, head_dim, rot_dim, pos_scale);
                check_act(b, "rotary", x_dev, ref, n, 1e-12);
                b->buf_free(b, x_dev);
                b->buf_free(b, pos_dev);
                b->buf_free(b, base_dev);
                free(ref);
                free(base);
                free(pos);
                free(x);
            }
        }
    }
}

// ---------------------------------------------------------------- qkv_split, kv_store, attention

static void test_qkv_split(void **state) {
    backend *b = *state;
    ref_rng r = {7};
    const int heads[][2] = {{1, 1}, {2, 1}, {8, 1}, {8, 2}, {4, 4}}; // n_head, n_head_kv
    for (int hi = 0; hi < 5; hi++) {
        int n_head = heads[hi][0], n_head_kv = heads[hi][1], head_dim = 32, n_tok = 17;
        size_t nq = (size_t)n_tok * n_head * head_dim, nkv = (size_t)n_tok * n_head_kv * head_dim;
        float *qkv = random_floats(&r, nq + 2 * nkv, -1.0f, 1.0f);
        void *qkv_dev = dev_act(b, qkv, nq + 2 * nkv);
        void *q = dev_act_nan(b, nq), *k = dev_act_nan(b, nkv), *v = dev_act_nan(b, nkv);
        b->qkv_split(b, q, k, v, qkv_dev, n_tok, n_head, n_head_kv, head_dim);
        double *rq = malloc(nq * sizeof(double)), *rk = malloc(nkv * sizeof(double)),
               *rv = malloc(nkv * sizeof(double));
        ref_qkv_split(rq, rk, rv, qkv, n_tok, n_head, n_head_kv, head_dim);
        check_act(b, "qkv_split q", q, rq, nq, 0.0);
        check_act(b, "qkv_split k", k, rk, nkv, 0.0);
        check_act(b, "qkv_split v", v, rv, nkv, 0.0);
        b->buf_free(b, qkv_dev);
        b->buf_free(b, q);
        b->buf_free(b, k);
        b->buf_free(b, v);
        free(rq);
        free(rk);
        free(rv);
        free(qkv);
    }
}

// A ragged batch: per sequence n_past cached tokens and n_q new ones.
typedef struct attn_case {
    int n_head, n_head_kv, head_dim;
    int n_seq;
    int n_past[4], n_q[4];
} attn_case;

static void run_attention_case(backend *b, ref_rng *r, const attn_case *ac) {
    int n_head = ac->n_head, n_head_kv = ac->n_head_kv, head_dim = ac->head_dim;
    attn_seq seqs[4];
    int n_tok = 0, n_blocks_total = 0, max_n_q = 0, max_ctx = 0;
    for (int s = 0; s < ac->n_seq; s++) {
        int n_ctx = ac->n_past[s] + ac->n_q[s];
        seqs[s] = (attn_seq){n_tok, ac->n_q[s], ac->n_past[s], n_blocks_total};
        n_tok += ac->n_q[s];
        n_blocks_total += (n_ctx + KV_BLOCK_SIZE - 1) / KV_BLOCK_SIZE;
        if (ac->n_q[s] > max_n_q) max_n_q = ac->n_q[s];
        if (n_ctx > max_ctx) max_ctx = n_ctx;
    }
    // Cache blocks handed out in a shuffled order, plus a few spare blocks.
    int n_blocks = n_blocks_total + 3;
    int32_t *tables = malloc((size_t)n_blocks * sizeof(int32_t));
    for (int i = 0; i < n_blocks; i++)
        tables[i] = i;
    for (int i = n_blocks - 1; i > 0; i--) {
        int j = (int)(ref_rng_u32(r) % (uint32_t)(i + 1));
        int32_t t = tables[i];
        tables[i] = tables[j];
        tables[j] = t;
    }
    size_t row = (size_t)n_head_kv * head_dim, cache_n = (size_t)n_blocks * KV_BLOCK_SIZE * row;
    // Unused slots hold NaN: attention must never let them reach a result.
    float *k_cache = malloc(cache_n * sizeof(float)), *v_cache = malloc(cache_n * sizeof(float));
    for (size_t i = 0; i < cache_n; i++)
        k_cache[i] = v_cache[i] = NAN;
    void *kc_dev = dev_act(b, k_cache, cache_n), *vc_dev = dev_act(b, v_cache, cache_n);

    // Store the past and new tokens of every sequence through kv_store, in one call.
    int n_store = 0;
    for (int s = 0; s < ac->n_seq; s++)
        n_store += ac->n_past[s] + ac->n_q[s];
    float *k_new = random_floats(r, (size_t)n_store * row, -2.0f, 2.0f);
    float *v_new = random_floats(r, (size_t)n_store * row, -1.0f, 1.0f);
    int32_t *slots = malloc((size_t)n_store * sizeof(int32_t));
    for (int s = 0, i = 0; s < ac->n_seq; s++)
        for (int p = 0; p < ac->n_past[s] + ac->n_q[s]; p++, i++)
            slots[i] = tables[seqs[s].block_table_offset + p / KV_BLOCK_SIZE] * KV_BLOCK_SIZE +
                       p % KV_BLOCK_SIZE;
    void *kn_dev = dev_act(b, k_new, (size_t)n_store * row);
    void *vn_dev = dev_act(b, v_new, (size_t)n_store * row);
    int32_t *slots_dev = dev_upload(b, slots, (size_t)n_store * sizeof(int32_t));
    b->kv_store(b, kc_dev, vc_dev, kn_dev, vn_dev, slots_dev, n_store, n_head_kv, head_dim);
    for (int i = 0; i < n_store; i++) { // the host copy the reference reads
        size_t dst = ((size_t)(slots[i] / KV_BLOCK_SIZE) * n_head_kv * KV_BLOCK_SIZE +
                      slots[i] % KV_BLOCK_SIZE) *
                     head_dim;
        for (int h = 0; h < n_head_kv; h++) {
            memcpy(k_cache + dst + (size_t)h * KV_BLOCK_SIZE * head_dim,
                   k_new + (size_t)i * row + (size_t)h * head_dim, head_dim * sizeof(float));
            memcpy(v_cache + dst + (size_t)h * KV_BLOCK_SIZE * head_dim,
                   v_new + (size_t)i * row + (size_t)h * head_dim, head_dim * sizeof(float));
        }
    }
    float *cache_out = malloc(cache_n * sizeof(float)); // bit-exact, NaN slots included
    b->act_to_f32(b, cache_out, kc_dev, cache_n);
    assert_memory_equal(cache_out, k_cache, cache_n * sizeof(float));
    b->act_to_f32(b, cache_out, vc_dev, cache_n);
    assert_memory_equal(cache_out, v_cache, cache_n * sizeof(float));
    free(cache_out);

    size_t nq = (size_t)n_tok * n_head * head_dim;
    float *q = random_floats(r, nq, -1.0f, 1.0f);
    void *q_dev = dev_act(b, q, nq), *out = dev_act_nan(b, nq);
    int32_t *new_slots = malloc((size_t)n_tok * sizeof(int32_t)); // the batch's own tokens
    for (int s = 0, i = 0, t = 0; s < ac->n_seq; s++)
        for (int p = 0; p < ac->n_past[s] + ac->n_q[s]; p++, i++)
            if (p >= ac->n_past[s]) new_slots[t++] = slots[i];
    int32_t *new_slots_dev = dev_upload(b, new_slots, (size_t)n_tok * sizeof(int32_t));
    attn_seq *seqs_dev = dev_upload(b, seqs, (size_t)ac->n_seq * sizeof(attn_seq));
    int32_t *tables_dev = dev_upload(b, tables, (size_t)n_blocks * sizeof(int32_t));
    attn_batch ab = {ac->n_seq, n_tok, max_n_q, max_ctx, seqs_dev, tables_dev, new_slots_dev};
    float scale = 1.0f / sqrtf((float)head_dim);
    b->attention(b, out, q_dev, kc_dev, vc_dev, &ab, n_head, n_head_kv, head_dim, scale);
    double *ref = malloc(nq * sizeof(double));
    ref_attention(ref, q, k_cache, v_cache, seqs, ac->n_seq, tables, n_head, n_head_kv, head_dim,
                  scale);
    char what[96];
    snprintf(what, sizeof what, "attention heads %d/%d dim %d seqs %d", n_head, n_head_kv, head_dim,
             ac->n_seq);
    check_act(b, what, out, ref, nq, 1e-10); // f32 softmax sums over up to 12K terms

    void *bufs[] = {kc_dev, vc_dev, kn_dev,   vn_dev,     slots_dev,
                    q_dev,  out,    seqs_dev, tables_dev, new_slots_dev};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        b->buf_free(b, bufs[i]);
    free(ref);
    free(q);
    free(new_slots);
    free(slots);
    free(k_new);
    free(v_new);
    free(k_cache);
    free(v_cache);
    free(tables);
}

static void test_attention(void **state) {
    backend *b = *state;
    ref_rng r = {8};
    const attn_case cases[] = {
        {1, 1, 64, 1, {0}, {1}},                      // a lone first token
        {2, 1, 64, 2, {0, 40}, {17, 1}},              // prefill + decode, multi-query
        {8, 1, 32, 3, {20, 0, 5}, {3, 130, 1}},       // chunked prefill, long prefill, decode
        {8, 2, 64, 4, {33, 15, 16, 0}, {1, 1, 1, 3}}, // decodes around block edges, GQA
        {8, 8, 32, 2, {100, 1}, {17, 16}},
        {2, 1, 20, 2, {7, 0}, {2, 5}}, // head_dim tails (8-wide, scalar)
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_attention_case(b, &r, &cases[i]);
}

static void test_attention_long_context(void **state) {
    backend *b = *state; // a 12K-token decode: must not need an L x L score matrix
    ref_rng r = {9};
    const attn_case c = {4, 2, 64, 2, {12000, 11000}, {1, 2}};
    run_attention_case(b, &r, &c);
}

// ---------------------------------------------------------------- element-wise, gather

static void test_elementwise(void **state) {
    backend *b = *state;
    ref_rng r = {10};
    // GELU's 1 + erf(x) cancels in f32 for x << 0 (in torch too): keep x above -3 so every
    // output carries a relative error near f32 epsilon. The largest size splits across threads.
    const size_t sizes[] = {5, 13, 40000};
    for (int si = 0; si < 3; si++) {
        size_t n = sizes[si];
        float *x = random_floats(&r, n, -3.0f, 6.0f), *y = random_floats(&r, n, -1.0f, 1.0f);
        double *ref = malloc(2 * n * sizeof(double));
        void *x_dev = dev_act(b, x, n), *y_dev = dev_act(b, y, n), *out = dev_act_nan(b, n);
        b->add(b, out, x_dev, y_dev, n);
        ref_add(ref, x, y, n);
        check_act(b, "add", out, ref, n, 1e-14);
        b->gelu(b, x_dev, n);
        ref_gelu(ref, x, n);
        check_act(b, "gelu", x_dev, ref, n, 1e-12);
        b->buf_free(b, x_dev);
        b->buf_free(b, y_dev);
        b->buf_free(b, out);
        free(ref);
        free(x);
        free(y);
    }
    for (int i = 0; i < N_TOKEN_COUNTS; i++) {
        int n_tok = TOKEN_COUNTS[i], d_ff = 75;
        size_t n = (size_t)n_tok * d_ff;
        float *gu = random_floats(&r, 2 * n, -8.0f, 8.0f);
        double *ref = malloc((n > 6 * (size_t)d_ff ? n : 6 * (size_t)d_ff) * sizeof(double));
        void *gu_dev = dev_act(b, gu, 2 * n), *out = dev_act_nan(b, n);
        b->swiglu(b, out, gu_dev, n_tok, d_ff);
        ref_swiglu(ref, gu, n_tok, d_ff);
        check_act(b, "swiglu", out, ref, n, 1e-12);

        int32_t rows[3] = {n_tok - 1, 0, n_tok / 2};
        int32_t *rows_dev = dev_upload(b, rows, sizeof rows);
        void *g = dev_act_nan(b, 3 * 2 * (size_t)d_ff);
        b->gather_rows(b, g, gu_dev, rows_dev, 3, 2 * d_ff);
        ref_gather_rows(ref, gu, rows, 3, 2 * d_ff);
        check_act(b, "gather_rows", g, ref, 3 * 2 * (size_t)d_ff, 0.0);
        b->buf_free(b, rows_dev);
        b->buf_free(b, g);
        b->buf_free(b, gu_dev);
        b->buf_free(b, out);
        free(ref);
        free(gu);
    }
}

static void test_sync_reports_first_error_once(void **state) {
    backend *b = *state;
    float x[4] = {0};
    int32_t pos[1] = {0};
    float base[1] = {10000.0f};
    b->rotary(b, x, pos, base, 1, 1, 4, 3, 1.0f); // odd rot_dim
    b->rotary(b, x, pos, base, 1, 1, 4, 6, 1.0f); // a second error is dropped
    fl_error err = {0};
    assert_int_equal(b->sync(b, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "rot_dim 3"));
    assert_int_equal(b->sync(b, &err), FL_OK);
}

// The shared argument checks (kernels/backend.c): a bad call is recorded and skipped, an empty
// one is a no-op, and a GPTQ matrix with a missing array is rejected before any copy.
static void test_checks_reject_bad_calls(void **state) {
    backend *b = *state;
    fl_error err = {0};
    ref_rng r = {5};
    ref_matrix rm;
    ref_matrix_dense(&rm, &r, 8, 8, DTYPE_F32, 0);
    bk_matrix *w = b->matrix_create(b, &rm.m, &err);
    assert_non_null(w);
    float x[8] = {0};
    b->matmul(b, NULL, x, w, 0); // nothing to do
    assert_int_equal(b->sync(b, &err), FL_OK);
    b->matmul(b, NULL, x, w, 1);
    assert_int_equal(b->sync(b, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "matmul"));
    b->attention(b, x, x, x, x, NULL, 3, 2, 4, 1.0f);
    assert_int_equal(b->sync(b, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "n_head 3"));
    b->matrix_free(b, w);
    ref_matrix_free(&rm);

    ref_matrix_gptq(&rm, &r, 64, 16, 32, 1, 0, 0);
    rm.m.qzeros = NULL;
    assert_null(b->matrix_create(b, &rm.m, &err));
    assert_int_equal(err.code, FL_EINVAL);
    assert_non_null(strstr(err.msg, "qzeros"));
    ref_matrix_free(&rm);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thread_pool_runs_every_item_once),
        cmocka_unit_test(test_backend_create),
        cmocka_unit_test(test_matmul_dense),
        cmocka_unit_test(test_matmul_gptq),
        cmocka_unit_test(test_matrix_create_rejects_bad_input),
        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_norms),
        cmocka_unit_test(test_rotary),
        cmocka_unit_test(test_qkv_split),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_attention_long_context),
        cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_sync_reports_first_error_once),
        cmocka_unit_test(test_checks_reject_bad_calls),
    };
    return cmocka_run_group_tests_name("cpu_ops", tests, setup_backend, teardown_backend);
}
