// Seeded mutation fuzzing of the parsers that read untrusted bytes: safetensors files, config.json
// (+ quantize_config.json and the GPTQ / DNTK environment), tokenizer.json, and tokenizer
// encode/decode on random text and random ids. Every call must return FL_OK or an error whose
// code is set and whose message is not empty; a crash (or a sanitizer report, in a
// -fsanitize=address,undefined build) fails the test. Whatever loads must also satisfy the
// invariants its parser promises. Seeds are fixed, so a failure names an iteration that
// reproduces. For a longer hunt: FL_FUZZ_SEED=N changes every seed, FL_FUZZ_SCALE=K runs K times
// the iterations.
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

#include "common/log.h"
#include "common/model_config.h"
#include "common/safetensors.h"
#include "common/tokenizer.h"
#include "common/utf8.h"
#include "tests/unit/helpers/op_reference.h"

enum {
    ST_ITERS = 3000,
    CONFIG_ITERS = 3000,
    TOK_LOAD_ITERS = 2000,
    TOK_TEXT_ITERS = 3000,
    TOK_ID_ITERS = 3000
};

static char tmpdir[256];

// Thousands of small files are written and mapped: in memory (/dev/shm) where there is one,
// as rewriting a just-mapped file on disk costs milliseconds each.
static int dir_setup(void **state) {
    snprintf(tmpdir, sizeof tmpdir, "/dev/shm/fl_test_fuzz_XXXXXX");
    if (mkdtemp(tmpdir)) return 0;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/fl_test_fuzz_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int dir_teardown(void **state) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static uint32_t rnd(ref_rng *r, uint32_t n) {
    return n ? ref_rng_u32(r) % n : 0;
}

static ref_rng rng_seeded(uint64_t seed) {
    const char *v = getenv("FL_FUZZ_SEED");
    return (ref_rng){seed ^ (v ? strtoull(v, NULL, 0) * 0x9e3779b97f4a7c15ull : 0)};
}

static int iters(int n) {
    const char *v = getenv("FL_FUZZ_SCALE");
    int k = v ? atoi(v) : 1;
    return n * (k > 0 ? k : 1);
}

// The contract every fuzzed call is held to.
static void expect_ok_or_error(fl_code rc, const fl_error *err, const char *what, int iter) {
    if (rc == FL_OK) return;
    if (err->code != rc || !err->msg[0])
        fail_msg("%s, iteration %d: returned %s but the error says code %s, message '%s'", what,
                 iter, fl_code_name(rc), fl_code_name(err->code), err->msg);
}

// ---- byte buffers and mutators ------------------------------------------------------------

typedef struct bytes {
    unsigned char *p;
    size_t n, cap;
} bytes;

static void bytes_reserve(bytes *b, size_t n) {
    if (n <= b->cap && b->p) return;
    b->cap = n * 2 + 64;
    b->p = realloc(b->p, b->cap);
    assert_non_null(b->p);
}

static void bytes_set(bytes *b, const void *p, size_t n) {
    bytes_reserve(b, n);
    memcpy(b->p, p, n);
    b->n = n;
}

static void bytes_splice(bytes *b, size_t at, size_t n_del, const void *ins, size_t n_ins) {
    bytes_reserve(b, b->n - n_del + n_ins);
    memmove(b->p + at + n_ins, b->p + at + n_del, b->n - at - n_del);
    memcpy(b->p + at, ins, n_ins);
    b->n = b->n - n_del + n_ins;
}

static void file_put(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

static void file_slurp(const char *path, bytes *b) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    bytes_reserve(b, (size_t)n);
    assert_int_equal(fread(b->p, 1, (size_t)n, f), (size_t)n);
    b->n = (size_t)n;
    fclose(f);
}

// Tokens that sit on the edges of JSON and integer parsing; the first N_EDGE_SCALARS are values
// that can stand in for a number.
enum { N_EDGE_SCALARS = 21 };
static const char *const edge_tokens[] = {
    "null",
    "true",
    "false",
    "-1",
    "0",
    "1",
    "-0",
    "0.5",
    "1e999",
    "-1e999",
    "1e-999",
    "NaN",
    "2147483647",
    "2147483648",
    "-2147483649",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",
    "1e300",
    "3.5e38",
    "\"\"",
    "[]",
    "{}",
    "[[]]",
    "{\"\":{}}",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"\\u",
    "\xc3\x28",
    "\xff",
    "\"F32\"",
    "\"F16\"",
    "\"BF16\"",
    "\"I64\"",
    "\"U8\"",
    "\"BOOL\"",
    "\"F8_E4M3\"",
    ",",
    ":",
    "\"",
    "\\",
    "{",
    "}",
    "[",
    "]",
};
enum { N_EDGE = sizeof edge_tokens / sizeof edge_tokens[0] };

// One random edit of b[lo, n): bit flip, byte from JSON's alphabet, deletion, duplication,
// an edge token inserted or replacing a number, or truncation.
static void mutate_text(ref_rng *r, bytes *b, size_t lo) {
    static const char alphabet[] = "{}[]\":,.-+eE0123456789\\ntfu \t\n";
    if (b->n <= lo) {
        const char *t = edge_tokens[rnd(r, N_EDGE)];
        bytes_splice(b, b->n, 0, t, strlen(t));
        return;
    }
    size_t span = b->n - lo, at = lo + rnd(r, (uint32_t)span);
    switch (rnd(r, 8)) {
    case 0:
        b->p[at] ^= (unsigned char)(1u << rnd(r, 8));
        break;
    case 1:
        b->p[at] = (unsigned char)alphabet[rnd(r, sizeof alphabet - 1)];
        break;
    case 2:
        bytes_splice(b, at, 1 + rnd(r, (uint32_t)(b->n - at < 16 ? b->n - at : 16)), "", 0);
        break;
    case 3: { // duplicate a short range somewhere else
        size_t len = 1 + rnd(r, (uint32_t)(b->n - at < 32 ? b->n - at : 32));
        unsigned char tmp[32];
        memcpy(tmp, b->p + at, len);
        bytes_splice(b, lo + rnd(r, (uint32_t)span + 1), 0, tmp, len);
        break;
    }
    case 4: {
        const char *t = edge_tokens[rnd(r, N_EDGE)];
        bytes_splice(b, at, 0, t, strlen(t));
        break;
    }
    case 5:
    case 6: { // replace the number at or after `at` with an edge token
        size_t s = at;
        while (s < b->n && !(b->p[s] >= '0' && b->p[s] <= '9'))
            s++;
        if (s == b->n) break;
        size_t e = s;
        while (e < b->n && ((b->p[e] >= '0' && b->p[e] <= '9') || b->p[e] == '.'))
            e++;
        const char *t = edge_tokens[rnd(r, N_EDGE_SCALARS)];
        bytes_splice(b, s, e - s, t, strlen(t));
        break;
    }
    default:
        b->n = at;
        break;
    }
}

// ---- safetensors ------------------------------------------------------------------------

// A valid file with several dtypes, a 0-d and an empty tensor, written by the project's writer.
static void st_seed_write(const char *path, ref_rng *r) {
    static const struct {
        const char *name;
        dtype type;
        int n_dim;
        int64_t shape[3];
    } ts[] = {
        {"h.0.attn.qkv.weight", DTYPE_F16, 2, {3, 4}},
        {"h.0.mlp.qweight", DTYPE_I32, 2, {2, 3}},
        {"scales", DTYPE_BF16, 1, {5}},
        {"bias", DTYPE_F32, 3, {1, 2, 2}},
        {"step", DTYPE_I64, 0, {0}},
        {"empty", DTYPE_U8, 1, {0}},
    };
    safetensors_writer *w = NULL;
    fl_error err = {0};
    if (safetensors_writer_create(path, &w, &err)) fail_msg("%s", err.msg);
    size_t total = 0;
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) {
        if (safetensors_writer_declare(w, ts[i].name, ts[i].type, ts[i].n_dim, ts[i].shape, &err))
            fail_msg("%s", err.msg);
        size_t n = dtype_size(ts[i].type);
        for (int d = 0; d < ts[i].n_dim; d++)
            n *= (size_t)ts[i].shape[d];
        total += n;
    }
    unsigned char *data = malloc(total + 1);
    assert_non_null(data);
    for (size_t i = 0; i < total; i++)
        data[i] = (unsigned char)rnd(r, 256);
    if (safetensors_writer_write(w, data, total, &err)) fail_msg("%s", err.msg);
    if (safetensors_writer_finish(w, &err)) fail_msg("%s", err.msg);
    free(data);
}

static uint64_t le64_get(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void le64_put(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

// What an opened file must satisfy: the header promises shape x dtype = nbytes and data inside
// the mapping (reading every byte faults otherwise), and names that find their tensor.
static void st_check_opened(const safetensors *st, int iter) {
    volatile unsigned sum = 0;
    for (int i = 0; i < safetensors_count(st); i++) {
        const st_tensor *t = safetensors_at(st, i);
        assert_non_null(t->name);
        if (t->n_dim < 0 || t->n_dim > ST_MAX_DIMS)
            fail_msg("iteration %d: n_dim %d", iter, t->n_dim);
        size_t n = dtype_size(t->type);
        for (int d = 0; d < t->n_dim; d++) {
            if (t->shape[d] < 0) fail_msg("iteration %d: %s has a negative extent", iter, t->name);
            n *= (size_t)t->shape[d];
        }
        if (n != t->nbytes)
            fail_msg("iteration %d: %s: shape x dtype = %zu bytes but nbytes = %zu", iter, t->name,
                     n, t->nbytes);
        for (size_t k = 0; k < t->nbytes; k++)
            sum += ((const unsigned char *)t->data)[k];
        if (safetensors_find(st, t->name) == NULL)
            fail_msg("iteration %d: '%s' is listed but not found", iter, t->name);
    }
    (void)sum;
}

static void test_safetensors_mutations(void **state) {
    ref_rng r = rng_seeded(0x5afe7e45);
    const int n_iter = iters(ST_ITERS);
    char seed_path[300], path[300];
    snprintf(seed_path, sizeof seed_path, "%s/seed.safetensors", tmpdir);
    snprintf(path, sizeof path, "%s/fuzz.safetensors", tmpdir);
    st_seed_write(seed_path, &r);
    bytes seed = {0}, b = {0}, header = {0};
    file_slurp(seed_path, &seed);
    uint64_t hlen = le64_get(seed.p);
    assert_true(hlen + 8 <= seed.n);
    int n_ok = 0;
    for (int iter = 0; iter < n_iter; iter++) {
        bytes_set(&b, seed.p, seed.n);
        switch (iter % 5) {
        case 0: // bit flips anywhere, length prefix included
            for (uint32_t k = 1 + rnd(&r, 4); k > 0; k--)
                b.p[rnd(&r, (uint32_t)b.n)] ^= (unsigned char)(1u << rnd(&r, 8));
            break;
        case 1:
            b.n = rnd(&r, (uint32_t)b.n);
            break; // truncation
        case 2: {  // header length edits
            static const int64_t deltas[] = {-8, -2, -1, 1, 2, 8, 1000};
            uint64_t v;
            switch (rnd(&r, 4)) {
            case 0:
                v = hlen + (uint64_t)deltas[rnd(&r, 7)];
                break;
            case 1:
                v = (uint64_t)b.n - 8 + rnd(&r, 3);
                break;
            case 2:
                v = rnd(&r, 3);
                break;
            default:
                v = UINT64_MAX - rnd(&r, 3) * (UINT64_MAX / 4);
                break;
            }
            le64_put(b.p, v);
            break;
        }
        default: { // JSON edits, with the length prefix updated to the new header
            bytes_set(&header, b.p + 8, (size_t)hlen);
            for (uint32_t k = 1 + rnd(&r, 3); k > 0; k--)
                mutate_text(&r, &header, 0);
            bytes_splice(&b, 8, (size_t)hlen, header.p, header.n);
            le64_put(b.p, header.n);
            break;
        }
        }
        file_put(path, b.p, b.n);
        safetensors *st = NULL;
        fl_error err = {0};
        fl_code rc = safetensors_open_file(path, &st, &err);
        expect_ok_or_error(rc, &err, "safetensors_open_file", iter);
        if (rc == FL_OK) {
            st_check_opened(st, iter);
            safetensors_close(st);
            n_ok++;
        } else {
            assert_null(st);
            if (!strstr(err.msg, "fuzz.safetensors"))
                fail_msg("iteration %d: the message does not name the file: %s", iter, err.msg);
        }
    }
    // Some edits keep the file valid (a flipped data bit): both outcomes were exercised.
    assert_true(n_ok > 0 && n_ok < n_iter);
    free(seed.p);
    free(b.p);
    free(header.p);
}

// ---- config.json --------------------------------------------------------------------------

static const char *const config_seeds[] = {
    // HF falcon, 40B layout, GPTQ through config.json's quantization_config
    "{\"model_type\":\"falcon\",\"hidden_size\":256,\"num_hidden_layers\":2,"
    "\"num_attention_heads\":8,\"num_kv_heads\":2,\"new_decoder_architecture\":true,"
    "\"parallel_attn\":true,\"bias\":false,\"layer_norm_epsilon\":1e-05,\"vocab_size\":1000,"
    "\"bos_token_id\":11,\"eos_token_id\":[11,12],\"rope_theta\":10000.0,"
    "\"max_position_embeddings\":2048,\"quantization_config\":{\"quant_method\":\"gptq\","
    "\"bits\":4,\"group_size\":128,\"desc_act\":true,\"sym\":true}}",
    // legacy RefinedWebModel (7B layout) with HF dynamic rope scaling
    "{\"model_type\":\"RefinedWebModel\",\"hidden_size\":4544,\"n_layer\":32,\"n_head\":71,"
    "\"multi_query\":true,\"parallel_attn\":true,\"vocab_size\":65024,\"bias\":false,"
    "\"rope_scaling\":{\"type\":\"dynamic\",\"factor\":2.0}}",
    // legacy RefinedWeb (40B layout)
    "{\"model_type\":\"RefinedWeb\",\"hidden_size\":8192,\"n_layer\":60,\"n_head\":128,"
    "\"n_head_kv\":8,\"parallel_attn\":true,\"vocab_size\":65024,\"bias\":false}",
    // Llama with rope_parameters
    "{\"model_type\":\"llama\",\"hidden_size\":576,\"intermediate_size\":1536,"
    "\"num_hidden_layers\":30,\"num_attention_heads\":9,\"num_key_value_heads\":3,"
    "\"rms_norm_eps\":1e-05,\"vocab_size\":49152,\"tie_word_embeddings\":true,"
    "\"rope_parameters\":{\"rope_theta\":100000.0,\"rope_type\":\"linear\",\"factor\":4.0}}",
};
enum { N_CONFIG_SEEDS = sizeof config_seeds / sizeof config_seeds[0] };

static const char *const quant_seed =
    "{\"bits\":4,\"group_size\":128,\"desc_act\":true,\"sym\":true}";
static const char *const env_names[] = {"GPTQ_BITS", "GPTQ_GROUPSIZE", "DNTK_ALPHA_SCALER",
                                        "PRETRAINED_MAX_TOKENS"};
static const char *const env_values[] = {"4",   "128",         "0.25", "2048",  "",
                                         "0",   "-1",          "abc",  "1e999", "nan",
                                         "inf", "99999999999", "3",    "-0.0",  "4 "};

// What a loaded config must satisfy (config_validate and the rotary/GPTQ parsers promise it).
static void config_check_loaded(const model_config *c, int iter, const bytes *text) {
    char where[600];
    snprintf(where, sizeof where, "%d (config %.*s)", iter, (int)(text->n < 400 ? text->n : 400),
             (const char *)text->p);
    if (c->d_model <= 0 || c->n_layer <= 0 || c->n_head <= 0 || c->n_head_kv <= 0 ||
        c->head_dim <= 0 || c->d_ff <= 0 || c->n_vocab <= 0 || c->max_position_embeddings <= 0)
        fail_msg("iteration %s: loaded with a size <= 0", where);
    if (c->n_head % c->n_head_kv || c->head_dim % 2)
        fail_msg("iteration %s: kv heads %d / head_dim %d", where, c->n_head_kv, c->head_dim);
    if (!(c->norm_eps >= 0) || !isfinite(c->norm_eps))
        fail_msg("iteration %s: norm epsilon %g", where, c->norm_eps);
    if (!(c->rope.theta > 0) || !isfinite(c->rope.theta))
        fail_msg("iteration %s: rope theta %g", where, c->rope.theta);
    if (c->rope.rot_dim <= 0 || c->rope.rot_dim > c->head_dim)
        fail_msg("iteration %s: rot_dim %d (head_dim %d)", where, c->rope.rot_dim, c->head_dim);
    if (c->rope.mode == ROPE_FALCONLITE &&
        (!(c->rope.alpha > 0) || !isfinite(c->rope.alpha) || c->rope.threshold <= 0))
        fail_msg("iteration %s: falconlite alpha %g threshold %d", where, c->rope.alpha,
                 c->rope.threshold);
    if ((c->rope.mode == ROPE_DYNAMIC || c->rope.mode == ROPE_LINEAR) &&
        (!(c->rope.factor > 0) || !isfinite(c->rope.factor)))
        fail_msg("iteration %s: rope factor %g", where, c->rope.factor);
    if (c->quant.gptq && c->quant.bits != 2 && c->quant.bits != 3 && c->quant.bits != 4 &&
        c->quant.bits != 8)
        fail_msg("iteration %s: GPTQ bits %d", where, c->quant.bits);
    if (c->quant.gptq && c->quant.group_size <= 0 && c->quant.group_size != -1)
        fail_msg("iteration %s: GPTQ group size %d", where, c->quant.group_size);
    double base = rope_base_for_length(&c->rope, 12000);
    if (!(base > 0)) fail_msg("iteration %s: rotary base %g at L=12000", where, base);
}

static void test_model_config_mutations(void **state) {
    ref_rng r = rng_seeded(0xc0f19);
    const int n_iter = iters(CONFIG_ITERS);
    char config_path[300], quant_path[300];
    snprintf(config_path, sizeof config_path, "%s/config.json", tmpdir);
    snprintf(quant_path, sizeof quant_path, "%s/quantize_config.json", tmpdir);
    bytes b = {0}, q = {0};
    int n_ok = 0;
    for (int iter = 0; iter < n_iter; iter++) {
        const char *seed = config_seeds[iter % N_CONFIG_SEEDS];
        bytes_set(&b, seed, strlen(seed));
        for (uint32_t k = 1 + rnd(&r, 3); k > 0; k--)
            mutate_text(&r, &b, 0);
        file_put(config_path, b.p, b.n);
        unlink(quant_path);
        if (rnd(&r, 4) == 0) { // a quantize_config.json, mutated or not
            bytes_set(&q, quant_seed, strlen(quant_seed));
            if (rnd(&r, 2)) mutate_text(&r, &q, 0);
            file_put(quant_path, q.p, q.n);
        }
        for (size_t e = 0; e < sizeof env_names / sizeof env_names[0]; e++) {
            if (rnd(&r, 6) == 0)
                setenv(env_names[e], env_values[rnd(&r, sizeof env_values / sizeof env_values[0])],
                       1);
            else
                unsetenv(env_names[e]);
        }
        // The edges' readers fill the overrides model_config_load takes (it reads no environment).
        model_config c;
        fl_error err = {0};
        quant_overrides gptq = {0};
        rope_overrides rope = ROPE_OVERRIDES_NONE;
        fl_code rc = quant_overrides_add_env(&gptq, &err);
        if (rc == FL_OK) rc = model_config_load(tmpdir, &gptq, &c, &err);
        if (rc == FL_OK) rc = rope_overrides_add_env(&rope, &err);
        if (rc == FL_OK)
            rc = rope_config_apply_overrides(&c.rope, c.max_position_embeddings, &rope, &c.rope,
                                             &err);
        expect_ok_or_error(rc, &err, "model_config_load", iter);
        if (rc == FL_OK) {
            config_check_loaded(&c, iter, &b);
            n_ok++;
        }
    }
    for (size_t e = 0; e < sizeof env_names / sizeof env_names[0]; e++)
        unsetenv(env_names[e]);
    unlink(quant_path);
    assert_true(n_ok > 0 && n_ok < n_iter);
    free(b.p);
    free(q.p);
}

// ---- tokenizer.json -----------------------------------------------------------------------

static void tokenizer_path(char *out, size_t cap) {
    const char *data = getenv("FL_TEST_DATA");
    snprintf(out, cap, "%s/golden/data/tokenizer_bytelevel/tokenizer.json", data ? data : "tests");
}

typedef struct node_list {
    cJSON **items;
    int *depth;
    int n, cap;
} node_list;

static void nodes_collect(node_list *l, cJSON *node, int depth) {
    for (cJSON *c = node->child; c; c = c->next) {
        if (l->n == l->cap) {
            l->cap = l->cap * 2 + 256;
            l->items = realloc(l->items, (size_t)l->cap * sizeof *l->items);
            l->depth = realloc(l->depth, (size_t)l->cap * sizeof *l->depth);
            assert_true(l->items && l->depth);
        }
        l->items[l->n] = c;
        l->depth[l->n++] = depth;
        nodes_collect(l, c, depth + 1);
    }
}

// Random bytes, often not UTF-8.
static char *random_string(ref_rng *r) {
    size_t n = rnd(r, 12);
    char *s = malloc(n + 1);
    assert_non_null(s);
    for (size_t i = 0; i < n; i++)
        s[i] = (char)(1 + rnd(r, 255));
    s[n] = 0;
    return s;
}

// One structural edit of a parsed tokenizer.json: a node deleted, duplicated, retyped, or its
// key / string / number changed. Nodes near the top (model type, pre-tokenizer list) are picked
// as often as the thousands of vocab and merge entries.
static void tokenizer_json_mutate(ref_rng *r, cJSON *root) {
    node_list l = {0};
    nodes_collect(&l, root, 0);
    if (l.n == 0) return;
    cJSON *node = l.items[rnd(r, (uint32_t)l.n)];
    if (rnd(r, 2)) {
        int shallow = 0;
        for (int i = 0; i < l.n; i++)
            shallow += l.depth[i] <= 2;
        for (int i = 0, k = (int)rnd(r, (uint32_t)shallow); i < l.n; i++)
            if (l.depth[i] <= 2 && k-- == 0) node = l.items[i];
    }
    free(l.items);
    free(l.depth);
    cJSON *parent = NULL;
    // cJSON has no parent pointer: find it by the sibling chain's owner.
    node_list all = {0};
    nodes_collect(&all, root, 0);
    for (int i = -1; i < all.n && !parent; i++) {
        cJSON *p = i < 0 ? root : all.items[i];
        for (cJSON *c = p->child; c; c = c->next)
            if (c == node) parent = p;
    }
    free(all.items);
    free(all.depth);
    assert_non_null(parent);
    static const double numbers[] = {-1,   0,   1,   2147483647.0, 2147483648.0, -2147483649.0,
                                     1e30, 0.5, 499, 500,          65535};
    cJSON *repl = NULL;
    switch (rnd(r, 7)) {
    case 0:
        cJSON_DetachItemViaPointer(parent, node), cJSON_Delete(node);
        return;
    case 1: // duplicate (same key twice in an object, or an extra array element)
        repl = cJSON_Duplicate(node, 1);
        if (cJSON_IsArray(parent))
            cJSON_AddItemToArray(parent, repl);
        else
            cJSON_AddItemToObject(parent, node->string ? node->string : "", repl);
        return;
    case 2:
        repl = cJSON_CreateNull();
        break;
    case 3:
        repl = cJSON_CreateNumber(numbers[rnd(r, sizeof numbers / sizeof numbers[0])]);
        break;
    case 4: {
        char *s = random_string(r);
        repl = cJSON_CreateString(s);
        free(s);
        break;
    }
    case 5:
        repl = rnd(r, 2) ? cJSON_CreateArray() : cJSON_CreateObject();
        break;
    default: // rename the key
        if (node->string) {
            char *s = random_string(r);
            free(node->string);
            node->string = s;
        }
        return;
    }
    assert_non_null(repl);
    if (node->string) { // keep the member's key
        repl->string = strdup(node->string);
        assert_non_null(repl->string);
    }
    cJSON_ReplaceItemViaPointer(parent, node, repl);
}

// A loaded tokenizer must encode and decode ordinary text.
static void tokenizer_smoke(const tokenizer *tok, int iter) {
    static const char text[] = "Hello world 12345 <|endoftext|> caf\xc3\xa9 \xf0\x9f\x98\x80 it's";
    int32_t *ids = NULL;
    int n = 0;
    fl_error err = {0};
    fl_code rc = tokenizer_encode(tok, text, sizeof text - 1, &ids, &n, &err);
    expect_ok_or_error(rc, &err, "tokenizer_encode (mutated tokenizer)", iter);
    if (rc != FL_OK) return;
    char *out = NULL;
    size_t len = 0;
    rc = tokenizer_decode(tok, ids, n, 0, &out, &len, &err);
    expect_ok_or_error(rc, &err, "tokenizer_decode (mutated tokenizer)", iter);
    free(ids);
    free(out);
}

static void test_tokenizer_load_mutations(void **state) {
    ref_rng r = rng_seeded(0x70cc);
    const int n_iter = iters(TOK_LOAD_ITERS);
    char seed_path[300], path[300];
    tokenizer_path(seed_path, sizeof seed_path);
    snprintf(path, sizeof path, "%s/tokenizer.json", tmpdir);
    bytes seed = {0}, b = {0};
    file_slurp(seed_path, &seed);
    bytes_reserve(&seed, seed.n + 1);
    seed.p[seed.n] = 0;
    int n_ok = 0;
    for (int iter = 0; iter < n_iter; iter++) {
        if (iter % 2) { // byte-level edits
            bytes_set(&b, seed.p, seed.n);
            for (uint32_t k = 1 + rnd(&r, 4); k > 0; k--)
                mutate_text(&r, &b, 0);
            file_put(path, b.p, b.n);
        } else { // structural edits of the parsed JSON
            cJSON *root = cJSON_Parse((const char *)seed.p);
            assert_non_null(root);
            for (uint32_t k = 1 + rnd(&r, 3); k > 0; k--)
                tokenizer_json_mutate(&r, root);
            char *text = cJSON_PrintUnformatted(root);
            assert_non_null(text);
            file_put(path, text, strlen(text));
            free(text);
            cJSON_Delete(root);
        }
        tokenizer *tok = NULL;
        fl_error err = {0};
        fl_code rc = tokenizer_load(path, &tok, &err);
        expect_ok_or_error(rc, &err, "tokenizer_load", iter);
        if (rc == FL_OK) {
            assert_true(tokenizer_vocab_size(tok) > 0);
            tokenizer_smoke(tok, iter);
            tokenizer_free(tok);
            n_ok++;
        } else {
            assert_null(tok);
        }
    }
    assert_true(n_ok > 0 && n_ok < n_iter);
    free(seed.p);
    free(b.p);
}

// ---- encode / decode on random input ------------------------------------------------------

static tokenizer *tokenizer_seed_load(void) {
    char path[300];
    tokenizer_path(path, sizeof path);
    tokenizer *tok = NULL;
    fl_error err = {0};
    if (tokenizer_load(path, &tok, &err)) fail_msg("%s", err.msg);
    return tok;
}

static int utf8_is_valid(const char *s, size_t n) {
    return utf8_valid_prefix((const uint8_t *)s, n) == n;
}

// Random text: raw bytes, random code points (every UTF-8 length, surrogate-adjacent and
// noncharacter ones), or pieces that hit the special token, contractions, digits and spaces.
static void random_text(ref_rng *r, bytes *b) {
    static const char *const pieces[] = {
        "<|endoftext|>",
        "<|endoftext",
        "|>",
        " ",
        "  ",
        "\n",
        "\r\n",
        "\t",
        "123456",
        "'s",
        "'S",
        "don't",
        " Hello",
        "world",
        "\xc3\xb1",
        "\xf0\x9f\x98\x80",
        "\xe2\x80\x8b",
        "\xef\xbf\xbd",
        "...",
        "!!",
        "a1b2",
        " \n ",
        "\x00",
        "\xed\x9f\xbf",
        "\xf4\x8f\xbf\xbf",
    };
    static const uint32_t cps[] = {0x7f,    0x80,     0x7ff, 0x800,  0xfffd,  0xfffe, 0xffff,
                                   0x10000, 0x10ffff, 0x301, 0x4e2d, 0x1f600, 0xd7ff, 0xe000};
    b->n = 0;
    int kind = (int)rnd(r, 3), count = (int)rnd(r, 40);
    for (int i = 0; i < count; i++) {
        char c[4];
        if (kind == 0) {
            c[0] = (char)rnd(r, 256);
            bytes_splice(b, b->n, 0, c, 1);
        } else if (kind == 1) {
            uint32_t cp = rnd(r, 2) ? 0x20 + rnd(r, 0x5f) : cps[rnd(r, sizeof cps / sizeof cps[0])];
            bytes_splice(b, b->n, 0, c, (size_t)utf8_encode(cp, c));
        } else {
            const char *p = pieces[rnd(r, sizeof pieces / sizeof pieces[0])];
            bytes_splice(b, b->n, 0, p, p[0] ? strlen(p) : 1);
        }
    }
}

// Decodes ids whole and streamed; the stream's chunks must concatenate to the whole decode, and
// both must be valid UTF-8. Returns the whole decode (caller frees) or NULL on an error.
static char *decode_both(const tokenizer *tok, const int32_t *ids, int n, int skip, int iter,
                         size_t *len_out) {
    char *whole = NULL;
    size_t len = 0;
    fl_error err = {0};
    fl_code rc = tokenizer_decode(tok, ids, n, skip, &whole, &len, &err);
    expect_ok_or_error(rc, &err, "tokenizer_decode", iter);
    if (rc != FL_OK) return NULL;
    if (!utf8_is_valid(whole, len)) fail_msg("iteration %d: decode is not valid UTF-8", iter);
    detok_stream *ds = detok_stream_create(tok, skip);
    assert_non_null(ds);
    bytes streamed = {0};
    bytes_reserve(&streamed, 1);
    int failed = 0;
    for (int i = 0; i <= n && !failed; i++) {
        char *chunk = NULL;
        size_t cl = 0;
        fl_error e2 = {0};
        rc = i < n ? detok_stream_push(ds, ids[i], &chunk, &cl, &e2)
                   : detok_stream_flush(ds, &chunk, &cl, &e2);
        expect_ok_or_error(rc, &e2, "detok_stream_push/flush", iter);
        failed = rc != FL_OK;
        if (!failed) {
            if (!utf8_is_valid(chunk, cl))
                fail_msg("iteration %d: a streamed chunk is not valid UTF-8", iter);
            bytes_splice(&streamed, streamed.n, 0, chunk, cl);
        }
        free(chunk);
    }
    if (!failed && (streamed.n != len || memcmp(streamed.p, whole, len)))
        fail_msg("iteration %d: streamed decode differs from the whole decode", iter);
    detok_stream_free(ds);
    free(streamed.p);
    *len_out = len;
    return whole;
}

static void test_tokenizer_encode_random_text(void **state) {
    ref_rng r = rng_seeded(0x7e47);
    const int n_iter = iters(TOK_TEXT_ITERS);
    tokenizer *tok = tokenizer_seed_load();
    int vocab = tokenizer_vocab_size(tok);
    bytes text = {0};
    for (int iter = 0; iter < n_iter; iter++) {
        random_text(&r, &text);
        bytes_reserve(&text, text.n + 1);
        int32_t *ids = NULL;
        int n = -1;
        fl_error err = {0};
        fl_code rc = tokenizer_encode(tok, (const char *)text.p, text.n, &ids, &n, &err);
        expect_ok_or_error(rc, &err, "tokenizer_encode", iter);
        int valid = utf8_is_valid((const char *)text.p, text.n);
        if (rc != FL_OK) {
            if (valid) fail_msg("iteration %d: valid UTF-8 text rejected: %s", iter, err.msg);
            continue;
        }
        if (n < 0 || (text.n > 0 && n == 0))
            fail_msg("iteration %d: %d ids for %zu bytes", iter, n, text.n);
        for (int i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= vocab)
                fail_msg("iteration %d: id %d out of range", iter, ids[i]);
        size_t len = 0;
        char *back = decode_both(tok, ids, n, 0, iter, &len);
        // Byte-level BPE without a normalizer is lossless on valid UTF-8.
        if (back && valid && (len != text.n || memcmp(back, text.p, len)))
            fail_msg("iteration %d: decode(encode(text)) != text", iter);
        free(back);
        free(ids);
    }
    free(text.p);
    tokenizer_free(tok);
}

static void test_tokenizer_decode_random_ids(void **state) {
    ref_rng r = rng_seeded(0x1d5);
    const int n_iter = iters(TOK_ID_ITERS);
    tokenizer *tok = tokenizer_seed_load();
    int vocab = tokenizer_vocab_size(tok);
    const int32_t wild[] = {-1, -2, INT32_MIN, INT32_MAX, vocab, vocab + 1, vocab + 1000};
    int32_t ids[48], kept[48];
    for (int iter = 0; iter < n_iter; iter++) {
        int n = (int)rnd(&r, 48), n_kept = 0;
        for (int i = 0; i < n; i++) {
            ids[i] = rnd(&r, 5) ? (int32_t)rnd(&r, (uint32_t)vocab) : wild[rnd(&r, 7)];
            if (ids[i] >= 0 && ids[i] < vocab) kept[n_kept++] = ids[i];
        }
        int skip = (int)rnd(&r, 2);
        size_t len = 0, kept_len = 0;
        char *whole = decode_both(tok, ids, n, skip, iter, &len);
        if (!whole) continue; // an error with a message: allowed for out-of-range ids
        if (n_kept < n) {
            // Accepted: out-of-range ids must then be dropped, as HF's decode does.
            char *ref = decode_both(tok, kept, n_kept, skip, iter, &kept_len);
            assert_non_null(ref);
            if (kept_len != len || memcmp(ref, whole, len))
                fail_msg("iteration %d: out-of-range ids changed the decoded text", iter);
            free(ref);
        }
        free(whole);
    }
    tokenizer_free(tok);
}

int main(void) {
    log_current_level = LOG_ERROR; // mutated files draw warnings by design
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_safetensors_mutations),
        cmocka_unit_test(test_model_config_mutations),
        cmocka_unit_test(test_tokenizer_load_mutations),
        cmocka_unit_test(test_tokenizer_encode_random_text),
        cmocka_unit_test(test_tokenizer_decode_random_ids),
    };
    return cmocka_run_group_tests(tests, dir_setup, dir_teardown);
}
