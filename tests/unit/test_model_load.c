// Model loading: bad checkpoints give one clear error naming the file and tensor or field (never a
// crash), and tensor-parallel slices (world 2) reproduce the world-1 matrices' math.
#define _GNU_SOURCE // memmem
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json_util.h"
#include "common/safetensors.h"
#include "shard/engine/model.h"
#include "shard/engine/model_weights.h"

#define FP32_CASE "falcon40b_gqa_fp32"
#define GPTQ_CASE "falcon40b_gptq_actorder"
#define MQA_CASE  "falcon7b_mqa_fp32"

static backend *be;

static int setup(void **state) {
    fl_error err = {0};
    be = backend_cpu_create(1, &err);
    return be ? 0 : -1;
}

static int teardown(void **state) {
    be->free(be);
    return 0;
}

static void golden_dir(const char *name, char *out, size_t cap) {
    const char *data = getenv("FL_TEST_DATA");
    snprintf(out, cap, "%s/golden/data/models/%s", data ? data : "tests", name);
}

static void skip_without(const char *name) {
    char dir[512];
    struct stat st;
    golden_dir(name, dir, sizeof dir);
    if (stat(dir, &st) != 0) {
        print_message("skipping: golden model %s is missing\n", dir);
        skip();
    }
}

static void file_write(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void file_copy(const char *src, const char *dst) {
    char *data;
    size_t n;
    fl_error err = {0};
    assert_int_equal(file_read_all(src, &data, &n, &err), FL_OK);
    file_write(dst, data, n);
    free(data);
}

// A scratch copy of a golden model (config, quantize config, weights) in a fresh temp dir.
typedef struct tmp_model {
    char dir[64];
    char config[128], quant[128], weights[128];
} tmp_model;

static void tmp_model_create(tmp_model *t, const char *name) {
    skip_without(name);
    strcpy(t->dir, "/tmp/fl_model_load_XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->config, sizeof t->config, "%s/config.json", t->dir);
    snprintf(t->quant, sizeof t->quant, "%s/quantize_config.json", t->dir);
    snprintf(t->weights, sizeof t->weights, "%s/model.safetensors", t->dir);
    char src[600], base[512];
    golden_dir(name, base, sizeof base);
    snprintf(src, sizeof src, "%s/config.json", base);
    file_copy(src, t->config);
    snprintf(src, sizeof src, "%s/model.safetensors", base);
    file_copy(src, t->weights);
    snprintf(src, sizeof src, "%s/quantize_config.json", base);
    if (access(src, R_OK) == 0) file_copy(src, t->quant);
}

static void tmp_model_free(tmp_model *t) {
    unlink(t->config);
    unlink(t->quant);
    unlink(t->weights);
    rmdir(t->dir);
}

// Replaces the first occurrence of `from` in a text file with `to`.
static void file_replace(const char *path, const char *from, const char *to) {
    char *data;
    size_t n;
    fl_error err = {0};
    assert_int_equal(file_read_all(path, &data, &n, &err), FL_OK);
    char *at = memmem(data, n, from, strlen(from));
    assert_non_null(at);
    size_t head = (size_t)(at - data), tail = n - head - strlen(from);
    char *out = malloc(head + strlen(to) + tail);
    memcpy(out, data, head);
    memcpy(out + head, to, strlen(to));
    memcpy(out + head + strlen(to), at + strlen(from), tail);
    file_write(path, out, head + strlen(to) + tail);
    free(out);
    free(data);
}

// Rewrites the weights without tensor `drop` (may be NULL) and with element `poke_index` of the
// int32 tensor `poke` (may be NULL) set to poke_value.
static void weights_rewrite(const tmp_model *t, const char *drop, const char *poke,
                            int64_t poke_index, int32_t poke_value) {
    fl_error err = {0};
    safetensors *st = NULL;
    char src[160];
    snprintf(src, sizeof src, "%s.orig", t->weights);
    assert_int_equal(rename(t->weights, src), 0);
    assert_int_equal(safetensors_open_file(src, &st, &err), FL_OK);
    safetensors_writer *w = NULL;
    assert_int_equal(safetensors_writer_create(t->weights, &w, &err), FL_OK);
    int n = safetensors_count(st);
    for (int i = 0; i < n; i++) {
        const st_tensor *x = safetensors_at(st, i);
        if (drop && !strcmp(x->name, drop)) continue;
        assert_int_equal(safetensors_writer_declare(w, x->name, x->type, x->n_dim, x->shape, &err),
                         FL_OK);
    }
    for (int i = 0; i < n; i++) {
        const st_tensor *x = safetensors_at(st, i);
        if (drop && !strcmp(x->name, drop)) continue;
        if (poke && !strcmp(x->name, poke)) {
            int32_t *copy = malloc(x->nbytes);
            memcpy(copy, x->data, x->nbytes);
            copy[poke_index] = poke_value;
            assert_int_equal(safetensors_writer_write(w, copy, x->nbytes, &err), FL_OK);
            free(copy);
        } else {
            assert_int_equal(safetensors_writer_write(w, x->data, x->nbytes, &err), FL_OK);
        }
    }
    assert_int_equal(safetensors_writer_finish(w, &err), FL_OK);
    safetensors_close(st);
    unlink(src);
}

// model_load must fail with `code` (or any error when code is FL_OK) and a message holding
// every one of the NULL-terminated strings.
static void expect_load_error(const char *dir, fl_code code, ...) {
    fl_error err = {0};
    model *m = NULL;
    model_options opt = {.rank = 0, .world = 1};
    fl_code rc = model_load(dir, &opt, be, &m, &err);
    print_message("  -> %s: %s\n", fl_code_name(rc), err.msg);
    assert_int_not_equal(rc, FL_OK);
    assert_null(m);
    if (code != FL_OK) assert_int_equal(rc, code);
    va_list ap;
    va_start(ap, code);
    for (const char *s = va_arg(ap, const char *); s; s = va_arg(ap, const char *))
        if (!strstr(err.msg, s)) fail_msg("error '%s' does not mention '%s'", err.msg, s);
    va_end(ap);
}

static void test_load_ok(void **state) {
    tmp_model t;
    tmp_model_create(&t, GPTQ_CASE);
    fl_error err = {0};
    model *m = NULL;
    assert_int_equal(model_load(t.dir, NULL, be, &m, &err), FL_OK);
    const model_config *c = model_get_config(m);
    assert_int_equal(c->quant.gptq, 1);
    assert_int_equal(c->n_head_kv, 2);
    assert_true(model_weight_bytes(m) > 0);
    kv_cache *kv = NULL;
    assert_int_equal(model_kv_cache_create(m, 4, &kv, &err), FL_OK);
    assert_int_equal(kv->n_layer, c->n_layer);
    assert_int_equal(kv->n_head_kv, 2);
    assert_int_equal(kv->head_dim, c->head_dim);
    kv_cache_free(kv);
    model_free(m);
    tmp_model_free(&t);
}

static void test_missing_dir(void **state) {
    expect_load_error("/nonexistent/fl_model", FL_OK, "/nonexistent/fl_model", NULL);
}

static void test_truncated_weights(void **state) {
    tmp_model t;
    tmp_model_create(&t, FP32_CASE);
    struct stat st;
    assert_int_equal(stat(t.weights, &st), 0);
    assert_int_equal(truncate(t.weights, st.st_size - 1000), 0);
    expect_load_error(t.dir, FL_OK, "model.safetensors", NULL);
    assert_int_equal(truncate(t.weights, 5), 0); // shorter than the header length field
    expect_load_error(t.dir, FL_OK, "model.safetensors", NULL);
    tmp_model_free(&t);
}

static void test_missing_tensor(void **state) {
    tmp_model t;
    tmp_model_create(&t, FP32_CASE);
    weights_rewrite(&t, "transformer.h.1.mlp.dense_4h_to_h.weight", NULL, 0, 0);
    expect_load_error(t.dir, FL_ENOTFOUND, "transformer.h.1.mlp.dense_4h_to_h.weight", NULL);
    weights_rewrite(&t, "transformer.ln_f.bias", NULL, 0, 0);
    expect_load_error(t.dir, FL_ENOTFOUND, "transformer.ln_f.bias", NULL);
    tmp_model_free(&t);
}

static void test_shape_contradicts_config(void **state) {
    tmp_model t;
    tmp_model_create(&t, FP32_CASE);
    file_replace(t.config, "\"ffn_hidden_size\": 256", "\"ffn_hidden_size\": 128");
    expect_load_error(t.dir, FL_EINVAL, "model.safetensors",
                      "transformer.h.0.mlp.dense_h_to_4h.weight", "[256, 64]", "[128, 64]", NULL);
    tmp_model_free(&t);
}

static void test_malformed_config(void **state) {
    tmp_model t;
    tmp_model_create(&t, FP32_CASE);
    file_write(t.config, "{\"hidden_size\": 64,", 19);
    expect_load_error(t.dir, FL_EFORMAT, "config.json", NULL);
    tmp_model_free(&t);
}

static void test_unknown_dtype(void **state) {
    tmp_model t;
    tmp_model_create(&t, FP32_CASE);
    // Same length, so the header stays consistent apart from the dtype.
    file_replace(t.weights, "\"dtype\":\"F32\"", "\"dtype\":\"Q32\"");
    expect_load_error(t.dir, FL_OK, "model.safetensors", "Q32", NULL);
    tmp_model_free(&t);
}

static void test_gptq_group_size_not_dividing(void **state) {
    tmp_model t;
    tmp_model_create(&t, GPTQ_CASE);
    file_replace(t.quant, "\"group_size\": 32", "\"group_size\": 24");
    expect_load_error(t.dir, FL_OK, "group", "24", NULL);
    tmp_model_free(&t);
}

static void test_gptq_bits(void **state) {
    tmp_model t;
    tmp_model_create(&t, GPTQ_CASE);
    file_replace(t.quant, "\"bits\": 4", "\"bits\": 3");
    expect_load_error(t.dir, FL_EUNSUPPORTED, "3", NULL);
    tmp_model_free(&t);
}

static void test_gptq_bad_g_idx(void **state) {
    tmp_model t;
    tmp_model_create(&t, GPTQ_CASE);
    weights_rewrite(&t, NULL, "transformer.h.1.self_attention.dense.g_idx", 5, 99);
    expect_load_error(t.dir, FL_EINVAL, "model.safetensors",
                      "transformer.h.1.self_attention.dense.g_idx", "99", NULL);
    tmp_model_free(&t);
}

static void test_gptq_missing_scales(void **state) {
    tmp_model t;
    tmp_model_create(&t, GPTQ_CASE);
    weights_rewrite(&t, "transformer.h.0.mlp.dense_4h_to_h.scales", NULL, 0, 0);
    expect_load_error(t.dir, FL_ENOTFOUND, "transformer.h.0.mlp.dense_4h_to_h.scales", NULL);
    tmp_model_free(&t);
}

static void test_tp_needs_comm_and_kv_groups(void **state) {
    skip_without(MQA_CASE);
    char dir[512];
    golden_dir(MQA_CASE, dir, sizeof dir);
    fl_error err = {0};
    model *m = NULL;
    model_options opt = {.rank = 0, .world = 2};
    assert_int_equal(model_load(dir, &opt, be, &m, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "comm"));
    // Multi-query: one KV head cannot be split over two ranks.
    model_config cfg;
    model_weights w;
    assert_int_equal(model_config_load(dir, NULL, &cfg, &err), FL_OK);
    assert_int_equal(model_weights_load(&w, dir, &cfg, 1, 2, be, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "KV heads"));
}

// model_forward refuses bad steps with FL_EINVAL and leaves the sequence untouched.
static void test_forward_rejects_bad_input(void **state) {
    skip_without(FP32_CASE);
    char dir[512];
    golden_dir(FP32_CASE, dir, sizeof dir);
    fl_error err = {0};
    model *m = NULL;
    assert_int_equal(model_load(dir, NULL, be, &m, &err), FL_OK);
    int n_vocab = model_get_config(m)->n_vocab;
    kv_cache *kv = NULL, *other = NULL;
    assert_int_equal(model_kv_cache_create(m, 4, &kv, &err), FL_OK);
    kv_seq seq = {0};
    assert_int_equal(kv_seq_reserve(kv, &seq, KV_BLOCK_SIZE, &err), FL_OK);
    int32_t tokens[KV_BLOCK_SIZE + 1] = {0};
    float *logits = malloc((size_t)n_vocab * sizeof(float));
    fwd_seq fs = {.tokens = tokens, .n_new = KV_BLOCK_SIZE + 1, .kv = &seq};
    assert_int_equal(model_forward(m, kv, &fs, 1, logits, &err), FL_EINVAL); // not reserved
    assert_non_null(strstr(err.msg, "reserved"));
    fs.n_new = 2;
    tokens[1] = n_vocab;
    assert_int_equal(model_forward(m, kv, &fs, 1, logits, &err), FL_EINVAL); // outside vocab
    assert_non_null(strstr(err.msg, "vocabulary"));
    tokens[1] = 5;
    assert_int_equal(kv_cache_create(be, 1, 2, 8, 4, &other, &err), FL_OK);
    assert_int_equal(model_forward(m, other, &fs, 1, logits, &err), FL_EINVAL); // wrong cache
    assert_non_null(strstr(err.msg, "KV cache"));
    assert_int_equal(seq.n_tokens, 0);
    assert_int_equal(model_forward(m, kv, &fs, 1, logits, &err), FL_OK);
    assert_int_equal(seq.n_tokens, 2);
    kv_seq_release(kv, &seq);
    kv_cache_free(other);
    kv_cache_free(kv);
    free(logits);
    model_free(m);
}

// ---- tensor-parallel slices against the world-1 math

// y[n_tok, n_out] = x[n_tok, n_in] @ m on the backend, through host buffers.
static float *matmul_host(const bk_matrix *m, const float *x, int n_tok, int n_in, int n_out) {
    void *dx = be->buf_alloc(be, (size_t)n_tok * n_in * 4);
    void *dy = be->buf_alloc(be, (size_t)n_tok * n_out * 4);
    be->act_from_f32(be, dx, x, (size_t)n_tok * n_in);
    be->matmul(be, dy, dx, m, n_tok);
    float *y = malloc((size_t)n_tok * n_out * 4);
    be->act_to_f32(be, y, dy, (size_t)n_tok * n_out);
    assert_int_equal(be->sync(be, NULL), FL_OK);
    be->buf_free(be, dx);
    be->buf_free(be, dy);
    return y;
}

static void assert_close(float got, float want, const char *what, int i) {
    if (fabsf(got - want) > 1e-4f * (1.0f + fabsf(want)))
        fail_msg("%s[%d]: world 2 gives %g, world 1 %g", what, i, got, want);
}

static void tp_slices_check(const char *name) {
    skip_without(name);
    char dir[512];
    golden_dir(name, dir, sizeof dir);
    fl_error err = {0};
    model_config cfg;
    assert_int_equal(model_config_load(dir, NULL, &cfg, &err), FL_OK);
    model_weights full, part[2];
    if (model_weights_load(&full, dir, &cfg, 0, 1, be, &err) ||
        model_weights_load(&part[0], dir, &cfg, 0, 2, be, &err) ||
        model_weights_load(&part[1], dir, &cfg, 1, 2, be, &err))
        fail_msg("load: %s", err.msg);
    const int n_tok = 3, d = cfg.d_model, f = cfg.d_ff, hd = cfg.head_dim;
    const int qkv = (cfg.n_head + 2 * cfg.n_head_kv) * hd, vocab = cfg.n_vocab;
    const int vs = part[0].vocab_shard;
    assert_int_equal(vs, (vocab + 1) / 2);
    int widest = f > qkv ? f : qkv;
    widest = widest > vocab ? widest : vocab;
    float *x = malloc((size_t)n_tok * widest * 4);
    srand(7);
    for (int i = 0; i < n_tok * widest; i++)
        x[i] = (float)rand() / RAND_MAX - 0.5f;

    for (int l = 0; l < cfg.n_layer; l++) {
        const layer_weights *lf = &full.layers[l];
        // Column parallel (QKV by whole KV groups, MLP up): each rank has a block of columns.
        struct {
            arch_linear lin;
            int n_out;
        } cols[] = {{LIN_QKV, qkv}, {LIN_MLP_UP, f}};
        for (int c = 0; c < 2; c++) {
            int n = cols[c].n_out, h = n / 2;
            float *y = matmul_host(lf->lin[cols[c].lin], x, n_tok, d, n);
            for (int r = 0; r < 2; r++) {
                float *yr = matmul_host(part[r].layers[l].lin[cols[c].lin], x, n_tok, d, h);
                for (int t = 0; t < n_tok; t++)
                    for (int j = 0; j < h; j++)
                        assert_close(yr[t * h + j], y[t * n + r * h + j], "column slice", j);
                free(yr);
            }
            free(y);
        }
        // Row parallel (attention out, MLP down): the ranks' partial sums add up.
        struct {
            arch_linear lin;
            int n_in;
        } rows[] = {{LIN_ATTN_OUT, d}, {LIN_MLP_DOWN, f}};
        for (int c = 0; c < 2; c++) {
            int k = rows[c].n_in, h = k / 2;
            float *y = matmul_host(lf->lin[rows[c].lin], x, n_tok, k, d);
            float *xr = malloc((size_t)n_tok * h * 4), *sum = calloc((size_t)n_tok * d, 4);
            for (int r = 0; r < 2; r++) {
                for (int t = 0; t < n_tok; t++)
                    memcpy(xr + t * h, x + t * k + r * h, (size_t)h * 4);
                float *yr = matmul_host(part[r].layers[l].lin[rows[c].lin], xr, n_tok, h, d);
                for (int i = 0; i < n_tok * d; i++)
                    sum[i] += yr[i];
                free(yr);
            }
            for (int i = 0; i < n_tok * d; i++)
                assert_close(sum[i], y[i], "row partial sum", i);
            free(xr);
            free(sum);
            free(y);
        }
    }
    // LM head on vocab: rank r holds rows [r * vs, r * vs + vs), zero padding past n_vocab.
    const bk_matrix *head = full.lm_head ? full.lm_head : full.embed;
    float *y = matmul_host(head, x, n_tok, d, vocab);
    for (int r = 0; r < 2; r++) {
        const bk_matrix *hr = part[r].lm_head ? part[r].lm_head : part[r].embed;
        float *yr = matmul_host(hr, x, n_tok, d, vs);
        for (int t = 0; t < n_tok; t++)
            for (int j = 0; j < vs; j++) {
                int col = r * vs + j;
                assert_close(yr[t * vs + j], col < vocab ? y[t * vocab + col] : 0.0f, "vocab", j);
            }
        free(yr);
    }
    free(y);
    free(x);
    model_weights_free(&full, be);
    model_weights_free(&part[0], be);
    model_weights_free(&part[1], be);
}

static void test_tp_slices_fp32(void **state) {
    tp_slices_check(FP32_CASE);
}

static void test_tp_slices_gptq(void **state) {
    tp_slices_check(GPTQ_CASE);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_ok),
        cmocka_unit_test(test_missing_dir),
        cmocka_unit_test(test_truncated_weights),
        cmocka_unit_test(test_missing_tensor),
        cmocka_unit_test(test_shape_contradicts_config),
        cmocka_unit_test(test_malformed_config),
        cmocka_unit_test(test_unknown_dtype),
        cmocka_unit_test(test_gptq_group_size_not_dividing),
        cmocka_unit_test(test_gptq_bits),
        cmocka_unit_test(test_gptq_bad_g_idx),
        cmocka_unit_test(test_gptq_missing_scales),
        cmocka_unit_test(test_forward_rejects_bad_input),
        cmocka_unit_test(test_tp_needs_comm_and_kv_groups),
        cmocka_unit_test(test_tp_slices_fp32),
        cmocka_unit_test(test_tp_slices_gptq),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
