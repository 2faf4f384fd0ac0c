// GGUF reader and dequantizers against a file written by the `gguf` Python package
// (tests/golden/make_llama_fixtures.py): every metadata value type, one tensor of each ggml type
// compared with the package's own dequantization, then corrupt input: every truncation of the
// file and a few thousand seeded random mutations, none of which may crash, and each rejected
// file must name itself in the error.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/gguf.h"
#include "common/json_util.h"

#define FUZZ_ITERATIONS 3000

static char *data_path(const char *name) {
    const char *root = getenv("FL_TEST_DATA");
    static char buf[1024];
    snprintf(buf, sizeof buf, "%s/golden/data/gguf/%s", root ? root : "tests", name);
    return buf;
}

static void file_load(const char *name, char **data, size_t *len) {
    fl_error err = {0};
    assert_int_equal(file_read_all(data_path(name), data, len, &err), FL_OK);
}

static void test_metadata(void **state) {
    (void)state;
    fl_error err = {0};
    gguf_file *g;
    cJSON *ref;
    assert_int_equal(gguf_open(data_path("types.gguf"), &g, &err), FL_OK);
    assert_int_equal(json_load_file(data_path("types.json"), &ref, &err), FL_OK);
    assert_int_equal(gguf_version(g), 3);
    char *arch;
    assert_int_equal(gguf_get_string(g, "general.architecture", 0, &arch, &err), FL_OK);
    assert_string_equal(arch, "llama");
    free(arch);
    const cJSON *meta = cJSON_GetObjectItem(ref, "metadata"), *m;
    cJSON_ArrayForEach(m, meta) {
        const char *type = cJSON_GetObjectItem(m, "type")->valuestring;
        const cJSON *v = cJSON_GetObjectItem(m, "value");
        const gguf_kv *kv = gguf_kv_find(g, m->string);
        assert_non_null(kv);
        if (!strcmp(type, "u64")) { // 2^63 + 5: beyond a double's exact integers
            assert_int_equal(kv->type, GGUF_VT_U64);
            assert_true(kv->v.u == (1ull << 63) + 5);
            int64_t x;
            assert_int_equal(gguf_get_int(g, m->string, &x, &err), FL_EFORMAT); // out of range
        } else if (!strcmp(type, "string")) {
            char *s;
            assert_int_equal(gguf_get_string(g, m->string, 0, &s, &err), FL_OK);
            assert_string_equal(s, v->valuestring);
            free(s);
        } else if (!strcmp(type, "f32") || !strcmp(type, "f64")) {
            double x;
            assert_int_equal(gguf_get_float_or(g, m->string, 0, &x, &err), FL_OK);
            assert_true(x == v->valuedouble);
        } else if (!strcmp(type, "bool")) {
            int b;
            assert_int_equal(gguf_get_bool_or(g, m->string, 0, &b, &err), FL_OK);
            assert_int_equal(b, cJSON_IsTrue(v));
        } else if (!strcmp(type, "array_i32")) {
            assert_int_equal(kv->type, GGUF_VT_ARRAY);
            assert_int_equal(kv->elem_type, GGUF_VT_I32);
            assert_int_equal(kv->n, cJSON_GetArraySize(v));
            for (int i = 0; i < cJSON_GetArraySize(v); i++)
                assert_int_equal(gguf_array_int_at(kv, i), cJSON_GetArrayItem(v, i)->valueint);
        } else if (!strcmp(type, "array_str")) {
            assert_int_equal(kv->elem_type, GGUF_VT_STRING);
            assert_int_equal(kv->n, cJSON_GetArraySize(v));
            for (int i = 0; i < cJSON_GetArraySize(v); i++) {
                const char *want = cJSON_GetArrayItem(v, i)->valuestring;
                assert_int_equal(kv->strs[i].len, strlen(want));
                assert_memory_equal(kv->strs[i].ptr, want, strlen(want));
            }
        } else if (!strcmp(type, "array_nested")) { // parsed and skipped
            assert_int_equal(kv->elem_type, GGUF_VT_ARRAY);
            assert_int_equal(kv->n, v->valueint);
        } else { // the other integers
            int64_t x;
            assert_int_equal(gguf_get_int(g, m->string, &x, &err), FL_OK);
            assert_true(x == (int64_t)v->valuedouble);
        }
    }
    // Missing keys and wrong types are reported with the file and key.
    int64_t x;
    assert_int_equal(gguf_get_int(g, "no.such.key", &x, &err), FL_ENOTFOUND);
    assert_non_null(strstr(err.msg, "no.such.key"));
    assert_int_equal(gguf_get_int(g, "test.string", &x, &err), FL_EFORMAT);
    assert_non_null(strstr(err.msg, "types.gguf"));
    cJSON_Delete(ref);
    gguf_close(g);
}

static void test_dequantize(void **state) {
    (void)state;
    fl_error err = {0};
    gguf_file *g;
    cJSON *ref;
    assert_int_equal(gguf_open(data_path("types.gguf"), &g, &err), FL_OK);
    assert_int_equal(json_load_file(data_path("types.json"), &ref, &err), FL_OK);
    const cJSON *tensors = cJSON_GetObjectItem(ref, "tensors"), *t;
    int n_checked = 0;
    cJSON_ArrayForEach(t, tensors) {
        const gguf_tensor *gt = gguf_tensor_find(g, t->string);
        assert_non_null(gt);
        assert_string_equal(ggml_type_name(gt->type), cJSON_GetObjectItem(t, "type")->valuestring);
        const cJSON *ne = cJSON_GetObjectItem(t, "ne"), *vals = cJSON_GetObjectItem(t, "values");
        assert_int_equal(gt->n_dim, 2);
        assert_int_equal(gt->ne[0], cJSON_GetArrayItem(ne, 0)->valueint);
        assert_int_equal(gt->ne[1], cJSON_GetArrayItem(ne, 1)->valueint);
        assert_int_equal(gt->n_elem, cJSON_GetArraySize(vals));
        float *y = malloc(sizeof *y * (size_t)gt->n_elem);
        assert_int_equal(gguf_tensor_dequantize(g, gt, y, &err), FL_OK);
        for (int64_t i = 0; i < gt->n_elem; i++) {
            double want = cJSON_GetArrayItem(vals, (int)i)->valuedouble;
            if (fabs(y[i] - want) > 1e-6 * fmax(1.0, fabs(want)))
                fail_msg("%s[%lld]: got %.9g, the gguf package gives %.9g", t->string, (long long)i,
                         y[i], want);
        }
        free(y);
        n_checked++;
    }
    assert_int_equal(n_checked, 8); // F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q4_K Q6_K
    cJSON_Delete(ref);
    gguf_close(g);
}

// Opens a buffer and, when it parses, touches everything a consumer would: every metadata
// value, every string, every tensor's data.
static fl_code open_and_use(const char *buf, size_t len, fl_error *err) {
    gguf_file *g;
    fl_code rc = gguf_open_memory(buf, len, "mutant.gguf", &g, err);
    if (rc) {
        assert_non_null(strstr(err->msg, "mutant.gguf"));
        return rc;
    }
    volatile uint64_t sink = 0;
    for (int i = 0; i < gguf_kv_count(g); i++) {
        const gguf_kv *kv = gguf_kv_at(g, i);
        sink += strlen(kv->key);
        if (kv->type == GGUF_VT_STRING && kv->v.str.len)
            sink += (uint8_t)kv->v.str.ptr[kv->v.str.len - 1];
        for (uint64_t j = 0; kv->strs && j < kv->n; j++)
            if (kv->strs[j].len) sink += (uint8_t)kv->strs[j].ptr[kv->strs[j].len - 1];
        for (uint64_t j = 0; kv->elems && j < kv->n; j++)
            sink += (uint64_t)gguf_array_int_at(kv, j);
    }
    for (int i = 0; i < gguf_tensor_count(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        if (!t->data || t->n_elem > (1 << 20)) continue;
        float *y = malloc(sizeof *y * (size_t)t->n_elem);
        assert_non_null(y);
        fl_error e2;
        assert_int_equal(gguf_tensor_dequantize(g, t, y, &e2), FL_OK);
        free(y);
    }
    (void)sink;
    gguf_close(g);
    return FL_OK;
}

static void test_truncated(void **state) {
    (void)state;
    char *data;
    size_t len;
    file_load("types.gguf", &data, &len);
    fl_error err = {0};
    gguf_file *g;
    size_t data_end = 0; // the file may end in alignment padding after the last tensor
    assert_int_equal(gguf_open_memory(data, len, "types.gguf", &g, &err), FL_OK);
    for (int i = 0; i < gguf_tensor_count(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        size_t end = (size_t)((const char *)t->data - data) + t->nbytes;
        if (end > data_end) data_end = end;
    }
    gguf_close(g);
    assert_true(data_end > len - 64 && data_end <= len);
    // Every cut before the end of the last tensor is an error, never a crash.
    for (size_t cut = 0; cut < len; cut++) {
        char *copy = malloc(cut ? cut : 1); // exact size, so ASan sees any overread
        memcpy(copy, data, cut);
        fl_code rc = open_and_use(copy, cut, &err);
        if (cut < data_end)
            assert_int_not_equal(rc, FL_OK);
        else
            assert_int_equal(rc, FL_OK);
        free(copy);
    }
    assert_int_equal(open_and_use(data, len, &err), FL_OK);
    free(data);

    // Through the file API the message names the path and says what was cut.
    char path[] = "/tmp/fl_test_gguf_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    file_load("types.gguf", &data, &len);
    assert_int_equal(write(fd, data, len - 100), (ssize_t)(len - 100));
    close(fd);
    assert_int_equal(gguf_open(path, &g, &err), FL_EFORMAT);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "past the end of the file"));
    unlink(path);
    free(data);
    assert_int_equal(gguf_open("/nonexistent/x.gguf", &g, &err), FL_EIO);
    assert_non_null(strstr(err.msg, "/nonexistent/x.gguf"));
}

static void test_bad_headers(void **state) {
    (void)state;
    char *data;
    size_t len;
    file_load("types.gguf", &data, &len);
    fl_error err = {0};
    char *copy = malloc(len);
    memcpy(copy, data, len);
    copy[0] = 'X';
    assert_int_equal(open_and_use(copy, len, &err), FL_EFORMAT);
    assert_non_null(strstr(err.msg, "bad magic"));
    memcpy(copy, data, len);
    copy[4] = 1; // version 1 (32-bit counts)
    assert_int_equal(open_and_use(copy, len, &err), FL_EUNSUPPORTED);
    memcpy(copy, data, len);
    memset(copy + 8, 0xff, 8); // tensor count 2^64 - 1
    assert_int_equal(open_and_use(copy, len, &err), FL_EFORMAT);
    assert_non_null(strstr(err.msg, "do not fit"));
    free(copy);
    free(data);
}

static uint64_t rng_next(uint64_t *x) { // splitmix64
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// Seeded random mutations: byte flips, small integers and huge lengths written over random
// offsets (mostly in the header, metadata and tensor infos, where the parser reads).
static void test_fuzz(void **state) {
    (void)state;
    char *data;
    size_t len;
    file_load("types.gguf", &data, &len);
    fl_error err = {0};
    uint64_t seed = 20261127;
    int n_ok = 0;
    char *copy = malloc(len);
    for (int it = 0; it < FUZZ_ITERATIONS; it++) {
        memcpy(copy, data, len);
        size_t meta_end = len < 1400 ? len : 1400;
        int n_mut = 1 + (int)(rng_next(&seed) % 4);
        for (int k = 0; k < n_mut; k++) {
            uint64_t r = rng_next(&seed);
            size_t at = (size_t)(rng_next(&seed) % (r & 1 ? meta_end : len));
            switch ((r >> 1) % 4) {
            case 0:
                copy[at] ^= (char)(1u << ((r >> 8) % 8));
                break;
            case 1:
                copy[at] = (char)(r >> 16);
                break;
            case 2: { // a small integer (counts, types, dimensions)
                uint32_t v = (uint32_t)((r >> 16) % 40);
                if (at + 4 <= len) memcpy(copy + at, &v, 4);
                break;
            }
            default: { // a huge 64-bit value (lengths, offsets)
                uint64_t v = rng_next(&seed) | (1ull << 62);
                if (at + 8 <= len) memcpy(copy + at, &v, 8);
            }
            }
        }
        n_ok += open_and_use(copy, len, &err) == FL_OK;
    }
    // Some mutants still parse (flips inside tensor data or string bytes) and were fully used.
    assert_true(n_ok > 0 && n_ok < FUZZ_ITERATIONS);
    free(copy);
    free(data);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metadata),  cmocka_unit_test(test_dequantize),
        cmocka_unit_test(test_truncated), cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_fuzz),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
