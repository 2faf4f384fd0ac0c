// Safetensors reader and writer: round trips (several dtypes, 0-d and empty tensors, shards with
// an index), a file written by the Python library, and every kind of corrupt input, each of which
// must give the right fl_code and a message naming the file and (where there is one) the tensor.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/safetensors.h"

static char tmpdir[256];

static int dir_setup(void **state) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/fl_test_st_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int dir_teardown(void **state) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void path_in(char *buf, size_t cap, const char *sub, const char *name) {
    if (sub) {
        snprintf(buf, cap, "%s/%s", tmpdir, sub);
        mkdir(buf, 0755);
        snprintf(buf, cap, "%s/%s/%s", tmpdir, sub, name);
    } else {
        snprintf(buf, cap, "%s/%s", tmpdir, name);
    }
}

static void text_write(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

// A raw safetensors file: declared header length, header text, then n_data bytes of 0xab.
static void raw_write(const char *path, uint64_t hlen, const char *header, size_t n_data) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    unsigned char le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)(hlen >> (8 * i));
    fwrite(le, 1, 8, f);
    fputs(header, f);
    for (size_t i = 0; i < n_data; i++)
        fputc(0xab, f);
    fclose(f);
}

static void raw_header_write(const char *path, const char *header, size_t n_data) {
    raw_write(path, strlen(header), header, n_data);
}

// Opens `path` expecting failure with `code` and a message containing each of the needles.
static void expect_open_error(const char *path, int is_dir, fl_code code, const char *needle1,
                              const char *needle2) {
    safetensors *st = (safetensors *)1;
    fl_error err = {0};
    fl_code rc =
        is_dir ? safetensors_open_dir(path, &st, &err) : safetensors_open_file(path, &st, &err);
    if (rc != code)
        fail_msg("expected %s, got %s: %s", fl_code_name(code), fl_code_name(rc), err.msg);
    assert_null(st);
    assert_int_equal(err.code, code);
    if (needle1 && !strstr(err.msg, needle1)) fail_msg("'%s' not in: %s", needle1, err.msg);
    if (needle2 && !strstr(err.msg, needle2)) fail_msg("'%s' not in: %s", needle2, err.msg);
}

typedef struct decl {
    const char *name;
    dtype type;
    int n_dim;
    int64_t shape[3];
} decl;

// Writes the tensors of `d` with byte i of the data section = (i * 7 + 3) & 0xff, in chunks of
// `chunk` bytes, and returns the data section size.
static size_t file_write(const char *path, const decl *d, int n, size_t chunk) {
    safetensors_writer *w;
    fl_error err = {0};
    assert_int_equal(safetensors_writer_create(path, &w, &err), FL_OK);
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        assert_int_equal(
            safetensors_writer_declare(w, d[i].name, d[i].type, d[i].n_dim, d[i].shape, &err),
            FL_OK);
        size_t nb = dtype_size(d[i].type);
        for (int j = 0; j < d[i].n_dim; j++)
            nb *= (size_t)d[i].shape[j];
        total += nb;
    }
    unsigned char *buf = malloc(total + 1);
    for (size_t i = 0; i < total; i++)
        buf[i] = (unsigned char)((i * 7 + 3) & 0xff);
    for (size_t off = 0; off < total; off += chunk) {
        size_t n_bytes = total - off < chunk ? total - off : chunk;
        assert_int_equal(safetensors_writer_write(w, buf + off, n_bytes, &err), FL_OK);
    }
    free(buf);
    assert_int_equal(safetensors_writer_finish(w, &err), FL_OK);
    return total;
}

static const decl round_trip_decls[] = {
    {"a.weight", DTYPE_F32, 2, {3, 5}},   {"b \"quoted\" \\ name", DTYPE_F16, 1, {7}},
    {"c.bf16", DTYPE_BF16, 3, {2, 1, 3}}, {"d.scalar", DTYPE_I64, 0, {0}},
    {"e.empty", DTYPE_U8, 2, {0, 4}},     {"f.i32", DTYPE_I32, 1, {3}},
    {"g.i8", DTYPE_I8, 1, {5}},           {"h.f64", DTYPE_F64, 1, {2}},
};
#define N_ROUND_TRIP ((int)(sizeof round_trip_decls / sizeof round_trip_decls[0]))

static void check_round_trip(const safetensors *st, const char *path, const decl *d, int n) {
    assert_int_equal(safetensors_count(st), n);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        const st_tensor *t = safetensors_at(st, i);
        assert_non_null(t);
        assert_string_equal(t->name, d[i].name); // declaration order is kept
        assert_ptr_equal(safetensors_find(st, d[i].name), t);
        assert_string_equal(t->file, path);
        assert_int_equal(t->type, d[i].type);
        assert_int_equal(t->n_dim, d[i].n_dim);
        size_t nb = dtype_size(d[i].type);
        for (int j = 0; j < d[i].n_dim; j++) {
            assert_int_equal(t->shape[j], d[i].shape[j]);
            nb *= (size_t)d[i].shape[j];
        }
        assert_int_equal(t->nbytes, nb);
        const unsigned char *p = t->data;
        for (size_t k = 0; k < nb; k++)
            assert_int_equal(p[k], ((off + k) * 7 + 3) & 0xff);
        off += nb;
    }
    assert_null(safetensors_find(st, "missing"));
    assert_null(safetensors_at(st, n));
}

static void test_round_trip(void **state) {
    char path[512];
    path_in(path, sizeof path, NULL, "rt.safetensors");
    size_t total = file_write(path, round_trip_decls, N_ROUND_TRIP, 3);

    // Header padded with spaces so the data section starts 8-byte aligned.
    FILE *f = fopen(path, "rb");
    unsigned char le[8];
    assert_int_equal(fread(le, 1, 8, f), 8);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | le[i];
    assert_int_equal(hlen % 8, 0);
    char *header = malloc(hlen + 1);
    assert_int_equal(fread(header, 1, hlen, f), hlen);
    header[hlen] = 0;
    fclose(f);
    assert_int_equal(header[0], '{');
    size_t end = hlen;
    while (end > 0 && header[end - 1] == ' ')
        end--;
    assert_int_equal(header[end - 1], '}');
    assert_true(hlen - end < 8);
    free(header);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal((uint64_t)sb.st_size, 8 + hlen + total);

    safetensors *st;
    fl_error err = {0};
    assert_int_equal(safetensors_open_file(path, &st, &err), FL_OK);
    check_round_trip(st, path, round_trip_decls, N_ROUND_TRIP);
    safetensors_close(st);

    // The one-file directory form gives the same tensors.
    char dir[512];
    path_in(dir, sizeof dir, "rtdir", "model.safetensors");
    file_write(dir, round_trip_decls, N_ROUND_TRIP, 1 << 20);
    char *slash = strrchr(dir, '/');
    *slash = 0;
    assert_int_equal(safetensors_open_dir(dir, &st, &err), FL_OK);
    *slash = '/';
    check_round_trip(st, dir, round_trip_decls, N_ROUND_TRIP);
    safetensors_close(st);
}

// A file written by the Python safetensors library (tests/data/formats/make_formats.py).
static void test_python_written(void **state) {
    const char *root = getenv("FL_TEST_DATA");
    char path[1024];
    snprintf(path, sizeof path, "%s/data/formats/python_written.safetensors",
             root ? root : "tests");
    safetensors *st;
    fl_error err = {0};
    if (safetensors_open_file(path, &st, &err)) fail_msg("%s", err.msg);
    assert_int_equal(safetensors_count(st), 9);

    const st_tensor *t;
    int64_t shape23[] = {2, 3};
    assert_int_equal(safetensors_expect(st, "f32", DTYPE_F32, 2, shape23, &t, &err), FL_OK);
    for (int i = 0; i < 6; i++)
        assert_true(((const float *)t->data)[i] == 0.5f * (float)i);
    int64_t shape3[] = {3};
    assert_int_equal(safetensors_expect(st, "f16", DTYPE_F16, 1, shape3, &t, &err), FL_OK);
    const uint16_t *h = t->data;
    assert_true(fp16_to_f32(h[0]) == 1.0f && fp16_to_f32(h[1]) == -2.0f &&
                fp16_to_f32(h[2]) == 0.5f);
    t = safetensors_find(st, "bf16");
    assert_true(bf16_to_f32(((const uint16_t *)t->data)[0]) == 3.0f);
    assert_true(bf16_to_f32(((const uint16_t *)t->data)[1]) == -0.25f);
    t = safetensors_find(st, "f64");
    assert_true(((const double *)t->data)[0] == 1.0 / 3.0);
    assert_int_equal(safetensors_expect(st, "i64_scalar", DTYPE_I64, 0, NULL, &t, &err), FL_OK);
    assert_int_equal(t->nbytes, 8);
    assert_int_equal(((const int64_t *)t->data)[0], -7);
    t = safetensors_find(st, "i32");
    assert_int_equal(((const int32_t *)t->data)[3], 2147483647);
    t = safetensors_find(st, "i8");
    assert_int_equal(((const int8_t *)t->data)[0], -128);
    int64_t any_by_4[] = {-1, 4};
    assert_int_equal(safetensors_expect(st, "u8_empty", DTYPE_U8, 2, any_by_4, &t, &err), FL_OK);
    assert_int_equal(t->shape[0], 0);
    assert_int_equal(t->nbytes, 0);
    safetensors_close(st);
}

static void test_expect_messages(void **state) {
    char path[512];
    decl d[] = {{"transformer.h.3.mlp.dense_h_to_4h.weight", DTYPE_F16, 2, {256, 64}}};
    path_in(path, sizeof path, NULL, "expect.safetensors");
    file_write(path, d, 1, 4096);
    safetensors *st;
    fl_error err = {0};
    assert_int_equal(safetensors_open_file(path, &st, &err), FL_OK);
    const st_tensor *t = NULL;
    int64_t want[] = {256, 128}, wild[] = {-1, 64};
    assert_int_equal(safetensors_expect(st, d[0].name, DTYPE_F16, 2, want, &t, &err), FL_EINVAL);
    char msg[1024];
    snprintf(msg, sizeof msg,
             "%s: tensor 'transformer.h.3.mlp.dense_h_to_4h.weight' has shape [256, 64], "
             "expected [256, 128]",
             path);
    assert_string_equal(err.msg, msg);
    assert_null(t);
    assert_int_equal(safetensors_expect(st, d[0].name, DTYPE_F16, 1, want, &t, &err), FL_EINVAL);
    assert_int_equal(safetensors_expect(st, d[0].name, DTYPE_F32, 2, wild, &t, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "has dtype F16, expected F32"));
    assert_non_null(strstr(err.msg, path));
    assert_int_equal(safetensors_expect(st, "lm_head.weight", DTYPE_F16, 2, wild, &t, &err),
                     FL_ENOTFOUND);
    assert_non_null(strstr(err.msg, "lm_head.weight"));
    assert_non_null(strstr(err.msg, path));
    assert_int_equal(safetensors_expect(st, d[0].name, DTYPE_F16, 2, wild, &t, &err), FL_OK);
    assert_ptr_equal(t, safetensors_find(st, d[0].name));
    safetensors_close(st);
}

static void index_write(const char *dir, const char *body) {
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    text_write(path, body);
}

static void test_sharded(void **state) {
    char p1[512], p2[512], dir[512];
    decl s1[] = {{"layer.0.w", DTYPE_F32, 2, {4, 4}}, {"embed", DTYPE_F16, 2, {10, 4}}};
    decl s2[] = {{"layer.1.w", DTYPE_F32, 2, {4, 4}}, {"head", DTYPE_BF16, 1, {3}}};
    path_in(p1, sizeof p1, "sharded", "model-00001-of-00002.safetensors");
    path_in(p2, sizeof p2, "sharded", "model-00002-of-00002.safetensors");
    file_write(p1, s1, 2, 5);
    file_write(p2, s2, 2, 5);
    snprintf(dir, sizeof dir, "%s/sharded", tmpdir);
    index_write(dir, "{\"metadata\":{\"total_size\":184},\"weight_map\":{"
                     "\"layer.1.w\":\"model-00002-of-00002.safetensors\","
                     "\"head\":\"model-00002-of-00002.safetensors\","
                     "\"layer.0.w\":\"model-00001-of-00002.safetensors\","
                     "\"embed\":\"model-00001-of-00002.safetensors\"}}");
    // A stray file beside an index is not opened.
    char stray[512];
    path_in(stray, sizeof stray, "sharded", "zz-stray.safetensors");
    text_write(stray, "junk");

    safetensors *st;
    fl_error err = {0};
    if (safetensors_open_dir(dir, &st, &err)) fail_msg("%s", err.msg);
    assert_int_equal(safetensors_count(st), 4);
    assert_string_equal(safetensors_at(st, 0)->name, "layer.0.w"); // shards in sorted order
    assert_string_equal(safetensors_find(st, "embed")->file, p1);
    assert_string_equal(safetensors_find(st, "head")->file, p2);
    const st_tensor *t = safetensors_find(st, "layer.1.w");
    assert_int_equal(((const unsigned char *)t->data)[0], 3); // first byte of shard 2's data
    safetensors_close(st);

    // Without the index, every *.safetensors is opened: the stray file is then an error.
    char index[600];
    snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
    unlink(index);
    expect_open_error(dir, 1, FL_EFORMAT, "zz-stray.safetensors", NULL);
    unlink(stray);
    if (safetensors_open_dir(dir, &st, &err)) fail_msg("%s", err.msg);
    assert_int_equal(safetensors_count(st), 4);
    assert_string_equal(safetensors_at(st, 2)->name, "layer.1.w");
    safetensors_close(st);

    // Index errors: a listed file that does not exist, a tensor not in the file named for it.
    index_write(dir, "{\"weight_map\":{\"layer.0.w\":\"model-00001-of-00002.safetensors\","
                     "\"ghost.weight\":\"model-00003-of-00002.safetensors\"}}");
    expect_open_error(dir, 1, FL_ENOTFOUND, "model-00003-of-00002.safetensors", "ghost.weight");
    expect_open_error(dir, 1, FL_ENOTFOUND, "model.safetensors.index.json", NULL);
    index_write(dir, "{\"weight_map\":{\"layer.0.w\":\"model-00002-of-00002.safetensors\"}}");
    expect_open_error(dir, 1, FL_ENOTFOUND, "model-00002-of-00002.safetensors", "layer.0.w");
    index_write(dir, "{\"weight_map\":{\"missing.bias\":\"model-00001-of-00002.safetensors\"}}");
    expect_open_error(dir, 1, FL_ENOTFOUND, "model.safetensors.index.json", "missing.bias");
    index_write(dir, "{\"weight_map\":{\"embed\":\"../elsewhere.safetensors\"}}");
    expect_open_error(dir, 1, FL_EFORMAT, "model.safetensors.index.json", "embed");
    index_write(dir, "{\"weight_map\":[}");
    expect_open_error(dir, 1, FL_EFORMAT, "model.safetensors.index.json", NULL);
}

static void test_duplicates_across_files(void **state) {
    char p1[512], p2[512], dir[512];
    decl d[] = {{"shared.weight", DTYPE_F32, 1, {2}}};
    path_in(p1, sizeof p1, "dup", "a.safetensors");
    path_in(p2, sizeof p2, "dup", "b.safetensors");
    file_write(p1, d, 1, 8);
    file_write(p2, d, 1, 8);
    snprintf(dir, sizeof dir, "%s/dup", tmpdir);
    expect_open_error(dir, 1, FL_EFORMAT, "shared.weight", "a.safetensors");

    char empty[512];
    path_in(empty, sizeof empty, "empty", "readme.txt");
    text_write(empty, "no weights here");
    *strrchr(empty, '/') = 0;
    expect_open_error(empty, 1, FL_ENOTFOUND, empty, NULL);
    snprintf(dir, sizeof dir, "%s/does-not-exist", tmpdir);
    expect_open_error(dir, 1, FL_ENOTFOUND, dir, NULL);
}

static void test_bad_files(void **state) {
    char path[512];
    path_in(path, sizeof path, NULL, "bad.safetensors");
    const char *ok_entry = "\"good\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";
    char header[1024];

    // Shorter than the length prefix; header length past the end of the file.
    text_write(path, "abc");
    expect_open_error(path, 0, FL_EFORMAT, path, "truncated");
    raw_write(path, 4096, "{}", 0);
    expect_open_error(path, 0, FL_EFORMAT, path, "past the end");
    raw_write(path, 0x7fffffffffffffffull, "{}", 0);
    expect_open_error(path, 0, FL_EFORMAT, path, "past the end");
    // A header over 100 MB inside a (sparse) file that is long enough.
    raw_write(path, 101u << 20, "{}", 0);
    assert_int_equal(truncate(path, (off_t)(102u << 20)), 0);
    expect_open_error(path, 0, FL_EFORMAT, path, "exceeds");

    // Malformed JSON, and JSON that is not an object.
    raw_header_write(path, "{\"good\":{\"dtype\":\"F32\",", 8);
    expect_open_error(path, 0, FL_EFORMAT, path, "malformed JSON");
    raw_header_write(path, "[1,2]", 8);
    expect_open_error(path, 0, FL_EFORMAT, path, "not a JSON object");

    // Unknown dtype.
    snprintf(header, sizeof header,
             "{%s,\"fp8.weight\":{\"dtype\":\"F8_E4M3\",\"shape\":[4],\"data_offsets\":[8,12]}}",
             ok_entry);
    raw_header_write(path, header, 12);
    expect_open_error(path, 0, FL_EUNSUPPORTED, "fp8.weight", "F8_E4M3");
    expect_open_error(path, 0, FL_EUNSUPPORTED, path, NULL);

    // Offsets past the data section (a truncated file), and begin > end.
    snprintf(header, sizeof header,
             "{%s,\"late.weight\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
             ok_entry);
    raw_header_write(path, header, 20);
    expect_open_error(path, 0, FL_EFORMAT, path, "late.weight");
    raw_header_write(path, header, 24);
    safetensors *st;
    fl_error err = {0};
    assert_int_equal(safetensors_open_file(path, &st, &err), FL_OK); // complete: fine
    safetensors_close(st);
    assert_int_equal(truncate(path, 8 + (off_t)strlen(header) + 23), 0);
    expect_open_error(path, 0, FL_EFORMAT, path, "late.weight");
    snprintf(header, sizeof header,
             "{%s,\"rev.weight\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}",
             ok_entry);
    raw_header_write(path, header, 8);
    expect_open_error(path, 0, FL_EFORMAT, path, "rev.weight");
    expect_open_error(path, 0, FL_EFORMAT, path, "end before they begin");
    snprintf(header, sizeof header,
             "{%s,\"neg.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}",
             ok_entry);
    raw_header_write(path, header, 8);
    expect_open_error(path, 0, FL_EFORMAT, path, "neg.weight");

    // Overlapping tensors.
    snprintf(header, sizeof header,
             "{%s,\"over.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
             ok_entry);
    raw_header_write(path, header, 12);
    expect_open_error(path, 0, FL_EFORMAT, "over.weight", "good");
    expect_open_error(path, 0, FL_EFORMAT, path, "overlaps");

    // shape x dtype != byte length.
    snprintf(header, sizeof header,
             "{%s,\"short.weight\":{\"dtype\":\"F16\",\"shape\":[3,2],\"data_offsets\":[8,16]}}",
             ok_entry);
    raw_header_write(path, header, 16);
    expect_open_error(path, 0, FL_EFORMAT, path, "short.weight");

    // Malformed entries.
    raw_header_write(
        path, "{\"x.weight\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8);
    expect_open_error(path, 0, FL_EFORMAT, path, "x.weight");
    raw_header_write(path, "{\"x.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}",
                     8);
    expect_open_error(path, 0, FL_EFORMAT, path, "x.weight");
    raw_header_write(path, "{\"x.weight\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
    expect_open_error(path, 0, FL_EFORMAT, path, "x.weight");
    raw_header_write(path,
                     "{\"x.weight\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                     "\"data_offsets\":[0,4]}}",
                     8);
    expect_open_error(path, 0, FL_EUNSUPPORTED, path, "x.weight");
    raw_header_write(path,
                     "{\"x.weight\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
                     "\"data_offsets\":[0,8]}}",
                     8);
    expect_open_error(path, 0, FL_EFORMAT, path, "x.weight");
    raw_header_write(path, "{\"x.weight\":7}", 8);
    expect_open_error(path, 0, FL_EFORMAT, path, "x.weight");

    // The same name twice in one header.
    snprintf(header, sizeof header, "{%s,%s}", ok_entry, ok_entry);
    raw_header_write(path, header, 8);
    expect_open_error(path, 0, FL_EFORMAT, path, "tensor 'good' appears twice");

    // Metadata is skipped; trailing-space padding is accepted.
    snprintf(header, sizeof header, "{\"__metadata__\":{\"format\":\"pt\"},%s}   ", ok_entry);
    raw_header_write(path, header, 8);
    assert_int_equal(safetensors_open_file(path, &st, &err), FL_OK);
    assert_int_equal(safetensors_count(st), 1);
    safetensors_close(st);

    path_in(path, sizeof path, NULL, "absent.safetensors");
    expect_open_error(path, 0, FL_ENOTFOUND, path, NULL);
}

// Enough tensors to grow the name index several times (a 70B checkpoint has thousands).
static void test_many_tensors(void **state) {
    char path[512];
    path_in(path, sizeof path, NULL, "many.safetensors");
    enum { N = 3000 };
    safetensors_writer *w;
    fl_error err = {0};
    assert_int_equal(safetensors_writer_create(path, &w, &err), FL_OK);
    int64_t one[] = {1};
    char name[64];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "transformer.h.%d.weight", i);
        assert_int_equal(safetensors_writer_declare(w, name, DTYPE_I32, 1, one, &err), FL_OK);
    }
    for (int32_t i = 0; i < N; i++)
        assert_int_equal(safetensors_writer_write(w, &i, sizeof i, &err), FL_OK);
    assert_int_equal(safetensors_writer_finish(w, &err), FL_OK);
    safetensors *st;
    assert_int_equal(safetensors_open_file(path, &st, &err), FL_OK);
    assert_int_equal(safetensors_count(st), N);
    for (int i = N - 1; i >= 0; i--) {
        snprintf(name, sizeof name, "transformer.h.%d.weight", i);
        const st_tensor *t = safetensors_find(st, name);
        assert_non_null(t);
        assert_int_equal(*(const int32_t *)t->data, i);
    }
    safetensors_close(st);
}

static void test_writer_errors(void **state) {
    char path[512];
    path_in(path, sizeof path, NULL, "w.safetensors");
    safetensors_writer *w;
    fl_error err = {0};
    int64_t shape[] = {2, 2};

    // Too few bytes: an error naming the incomplete tensor, and no file left behind.
    assert_int_equal(safetensors_writer_create(path, &w, &err), FL_OK);
    assert_int_equal(safetensors_writer_declare(w, "x", DTYPE_F32, 2, shape, &err), FL_OK);
    assert_int_equal(safetensors_writer_declare(w, "y", DTYPE_F32, 2, shape, &err), FL_OK);
    assert_int_equal(safetensors_writer_declare(w, "x", DTYPE_F32, 2, shape, &err), FL_EINVAL);
    float data[8] = {0};
    assert_int_equal(safetensors_writer_write(w, data, 20, &err), FL_OK);
    assert_int_equal(safetensors_writer_declare(w, "z", DTYPE_F32, 2, shape, &err), FL_EINVAL);
    assert_int_equal(safetensors_writer_finish(w, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "'y'"));
    assert_non_null(strstr(err.msg, path));
    assert_int_equal(access(path, F_OK), -1);

    // Too many bytes.
    assert_int_equal(safetensors_writer_create(path, &w, &err), FL_OK);
    assert_int_equal(safetensors_writer_declare(w, "x", DTYPE_F32, 2, shape, &err), FL_OK);
    assert_int_equal(safetensors_writer_write(w, data, 17, &err), FL_EINVAL);
    assert_int_equal(safetensors_writer_write(w, data, 1, &err), FL_EINVAL); // sticky
    assert_int_equal(safetensors_writer_finish(w, &err), FL_EINVAL);
    assert_int_equal(access(path, F_OK), -1);

    // Bad declarations.
    int64_t neg[] = {-2};
    assert_int_equal(safetensors_writer_create(path, &w, &err), FL_OK);
    assert_int_equal(safetensors_writer_declare(w, "n", DTYPE_F32, 1, neg, &err), FL_EINVAL);
    assert_int_equal(safetensors_writer_declare(w, "__metadata__", DTYPE_F32, 1, shape, &err),
                     FL_EINVAL);
    // No tensors at all is a valid (empty) file.
    assert_int_equal(safetensors_writer_finish(w, &err), FL_OK);
    safetensors *st;
    assert_int_equal(safetensors_open_file(path, &st, &err), FL_OK);
    assert_int_equal(safetensors_count(st), 0);
    safetensors_close(st);

    char bad[512];
    snprintf(bad, sizeof bad, "%s/no/such/dir/x.safetensors", tmpdir);
    assert_int_equal(safetensors_writer_create(bad, &w, &err), FL_EIO);
    assert_non_null(strstr(err.msg, bad));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_python_written),
        cmocka_unit_test(test_expect_messages),
        cmocka_unit_test(test_sharded),
        cmocka_unit_test(test_duplicates_across_files),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_many_tensors),
        cmocka_unit_test(test_writer_errors),
    };
    return cmocka_run_group_tests(tests, dir_setup, dir_teardown);
}
