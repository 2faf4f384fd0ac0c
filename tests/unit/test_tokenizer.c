// Tokenizer parity with HF tokenizers on the golden fixtures (tests/golden/make_tokenizer.py):
// a Falcon-style tokenizer (Falcon's exact pre-tokenizer Sequence, its special tokens, OA tokens)
// and a GPT-2-style one (ByteLevel alone). For every case: ids equal HF's, decode with and without
// skip_special equals HF's, and streaming decode emits only valid UTF-8 whose concatenation is the
// full decode. Also: special-token lookups, arbitrary bytes never crash and round-trip as
// from_utf8_lossy, 200k-character words encode, threads can share a tokenizer, variants of the
// pipeline (tests/golden/data/tokenizer_variants) match HF, and bad tokenizer.json files give
// clear errors.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/json_util.h"
#include "common/tokenizer.h"
#include "common/utf8.h"

static tokenizer *falcon, *bytelevel;
static char tmpdir[256];

static void fixture_path(char *out, size_t n, const char *dir, const char *file) {
    const char *root = getenv("FL_TEST_DATA");
    snprintf(out, n, "%s/golden/data/%s/%s", root ? root : "tests", dir, file);
}

static int setup(void **state) {
    char path[512];
    fl_error err = {0};
    fixture_path(path, sizeof path, "tokenizer", "tokenizer.json");
    if (tokenizer_load(path, &falcon, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    fixture_path(path, sizeof path, "tokenizer_bytelevel", "tokenizer.json");
    if (tokenizer_load(path, &bytelevel, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    snprintf(tmpdir, sizeof tmpdir, "/tmp/fl_test_tok_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
    tokenizer_free(falcon);
    tokenizer_free(bytelevel);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static int is_valid_utf8(const char *s, size_t len) {
    return utf8_valid_prefix((const uint8_t *)s, len) == len;
}

// Streams ids through a detok_stream and checks every chunk and the concatenation.
static void check_stream(const tokenizer *tok, const int32_t *ids, int n, int skip,
                         const char *expect, int case_no) {
    detok_stream *ds = detok_stream_create(tok, skip);
    assert_non_null(ds);
    size_t cap = strlen(expect) + 64, used = 0;
    char *all = malloc(cap);
    fl_error err = {0};
    for (int i = 0; i <= n; i++) {
        char *chunk;
        size_t len;
        fl_code rc = i < n ? detok_stream_push(ds, ids[i], &chunk, &len, &err)
                           : detok_stream_flush(ds, &chunk, &len, &err);
        assert_int_equal(rc, FL_OK);
        assert_int_equal(chunk[len], 0);
        if (!is_valid_utf8(chunk, len))
            fail_msg("case %d: chunk %d is not valid UTF-8", case_no, i);
        if (used + len + 1 > cap) {
            cap = (used + len + 1) * 2;
            all = realloc(all, cap);
        }
        memcpy(all + used, chunk, len);
        used += len;
        free(chunk);
    }
    all[used] = 0;
    if (strcmp(all, expect) != 0)
        fail_msg("case %d (skip_special=%d): stream gave \"%s\", decode \"%s\"", case_no, skip, all,
                 expect);
    free(all);
    detok_stream_free(ds);
}

// Checks tok against HF's results in cases ([{text, ids, decode, decode_skip}]); fails on any
// decode or stream difference and returns how many encodes differ (each printed).
static int check_case_list(const tokenizer *tok, const cJSON *cases, const char *label) {
    fl_error err = {0};
    int n_cases = cJSON_GetArraySize(cases), n_mismatch = 0;
    for (int c = 0; c < n_cases; c++) {
        const cJSON *cs = cJSON_GetArrayItem(cases, c);
        const cJSON *text = cJSON_GetObjectItem(cs, "text"), *jids = cJSON_GetObjectItem(cs, "ids");
        const char *dec = cJSON_GetObjectItem(cs, "decode")->valuestring;
        const char *dec_skip = cJSON_GetObjectItem(cs, "decode_skip")->valuestring;
        int n_ids = cJSON_GetArraySize(jids);
        int32_t *ids = malloc(sizeof(int32_t) * (size_t)(n_ids + 1));
        for (int i = 0; i < n_ids; i++)
            ids[i] = (int32_t)cJSON_GetArrayItem(jids, i)->valueint;
        if (cJSON_IsString(text)) { // null text: an id sequence no encode produces (decode only)
            int32_t *got;
            int n_got;
            assert_int_equal(tokenizer_encode(tok, text->valuestring, strlen(text->valuestring),
                                              &got, &n_got, &err),
                             FL_OK);
            int same = n_got == n_ids && memcmp(got, ids, sizeof(int32_t) * (size_t)n_ids) == 0;
            if (!same) {
                n_mismatch++;
                fprintf(stderr, "%s case %d: ids differ for \"%s\"\n  want:", label, c,
                        text->valuestring);
                for (int i = 0; i < n_ids; i++)
                    fprintf(stderr, " %d", ids[i]);
                fprintf(stderr, "\n  got: ");
                for (int i = 0; i < n_got; i++)
                    fprintf(stderr, " %d", got[i]);
                fprintf(stderr, "\n");
            }
            free(got);
        }
        for (int skip = 0; skip <= 1; skip++) {
            const char *want = skip ? dec_skip : dec;
            char *out;
            size_t len;
            assert_int_equal(tokenizer_decode(tok, ids, n_ids, skip, &out, &len, &err), FL_OK);
            if (strcmp(out, want) != 0)
                fail_msg("%s case %d (skip_special=%d): decode \"%s\", HF \"%s\"", label, c, skip,
                         out, want);
            free(out);
            check_stream(tok, ids, n_ids, skip, want, c);
        }
        free(ids);
    }
    return n_mismatch;
}

static void check_cases(const tokenizer *tok, const char *dir, int min_cases) {
    char path[512];
    fixture_path(path, sizeof path, dir, "cases.json");
    cJSON *cases;
    fl_error err = {0};
    if (json_load_file(path, &cases, &err)) fail_msg("%s", err.msg);
    int n_cases = cJSON_GetArraySize(cases);
    assert_true(n_cases >= min_cases);
    int n_mismatch = check_case_list(tok, cases, dir);
    cJSON_Delete(cases);
    if (n_mismatch)
        fail_msg("%s: %d of %d cases encode differently from HF", dir, n_mismatch, n_cases);
}

static void test_falcon_cases(void **state) {
    check_cases(falcon, "tokenizer", 250);
}
static void test_bytelevel_cases(void **state) {
    check_cases(bytelevel, "tokenizer_bytelevel", 50);
}

static void test_special_tokens(void **state) {
    static const char *falcon_special[] = {">>TITLE<<",    ">>ABSTRACT<<", ">>INTRODUCTION<<",
                                           ">>SUMMARY<<",  ">>COMMENT<<",  ">>ANSWER<<",
                                           ">>QUESTION<<", ">>DOMAIN<<",   ">>PREFIX<<",
                                           ">>SUFFIX<<",   ">>MIDDLE<<",   "<|endoftext|>"};
    for (int i = 0; i < 12; i++) {
        assert_int_equal(tokenizer_token_to_id(falcon, falcon_special[i]), i);
        assert_string_equal(tokenizer_id_to_token(falcon, i), falcon_special[i]);
        assert_true(tokenizer_is_special(falcon, i));
    }
    static const char *oa[] = {"<|system|>", "<|prefix_end|>", "<|prefix_begin|>", "<|assistant|>",
                               "<|prompter|>"};
    assert_int_equal(tokenizer_vocab_size(falcon), 1605);
    for (int i = 0; i < 5; i++) {
        int id = tokenizer_token_to_id(falcon, oa[i]);
        assert_int_equal(id, 1600 + i);
        assert_true(tokenizer_is_special(falcon, id));
        assert_string_equal(tokenizer_id_to_token(falcon, id), oa[i]);
    }
    int space_a = tokenizer_token_to_id(falcon, "\xC4\xA0"
                                                "a"); // "Ġa": raw vocab strings
    assert_true(space_a > 11);
    assert_false(tokenizer_is_special(falcon, space_a));
    assert_int_equal(tokenizer_token_to_id(falcon, "no such token"), -1);
    assert_null(tokenizer_id_to_token(falcon, 1605));
    assert_null(tokenizer_id_to_token(falcon, -1));
    assert_false(tokenizer_is_special(falcon, 99999));
    assert_int_equal(tokenizer_token_to_id(bytelevel, "<|endoftext|>"), 0);
    assert_int_equal(tokenizer_vocab_size(bytelevel), 700);
}

// from_utf8_lossy of s, for comparing against decode(encode(s)).
static char *lossy(const char *s, size_t n) {
    char *out = malloc(n * 3 + 1), *p = out;
    for (size_t i = 0; i < n;) {
        utf8_unit kind;
        size_t l = utf8_scan((const uint8_t *)s + i, n - i, &kind);
        if (kind == UTF8_VALID)
            memcpy(p, s + i, l), p += l;
        else
            memcpy(p, UTF8_REPLACEMENT, 3), p += 3;
        i += l;
    }
    *p = 0;
    return out;
}

static void test_arbitrary_bytes(void **state) {
    // Invalid UTF-8 input: each stray byte encodes as its own byte token, so decoding gives back
    // exactly what from_utf8_lossy makes of the input.
    srand(7);
    fl_error err = {0};
    for (int iter = 0; iter < 300; iter++) {
        char buf[96];
        int n = rand() % (int)sizeof buf;
        for (int i = 0; i < n; i++) {
            int r = rand() % 4;
            buf[i] = r == 0   ? (char)(rand() % 256)
                     : r == 1 ? " \n1a.<|>"[rand() % 8]
                              : (char)("\xC3\xA9\xE4\xB8\xAD\xF0\x9F\xA6\x85"[rand() % 9]);
        }
        const tokenizer *toks[] = {falcon, bytelevel};
        for (int t = 0; t < 2; t++) {
            int32_t *ids;
            int n_ids;
            assert_int_equal(tokenizer_encode(toks[t], buf, (size_t)n, &ids, &n_ids, &err), FL_OK);
            char *out, *want = lossy(buf, (size_t)n);
            size_t len;
            assert_int_equal(tokenizer_decode(toks[t], ids, n_ids, 0, &out, &len, &err), FL_OK);
            assert_string_equal(out, want);
            check_stream(toks[t], ids, n_ids, 0, want, -iter);
            free(out);
            free(want);
            free(ids);
        }
    }
    // Ids outside the vocabulary are skipped, as HF does.
    int32_t odd[] = {-5, 99999, tokenizer_token_to_id(falcon, "a")};
    char *out;
    assert_int_equal(tokenizer_decode(falcon, odd, 3, 0, &out, NULL, &err), FL_OK);
    assert_string_equal(out, "a");
    free(out);
}

static void test_long_words(void **state) {
    // One pre-token of 200k characters (a whitespace run, a letter run): the heap-based merge
    // loop keeps this quick, and the text round-trips. "ab" merges (HF: [556] per pair), "7" and
    // spaces exercise the Digits/Split and whitespace paths.
    size_t n = 200000;
    char *s = malloc(n + 1);
    const char *fill[] = {" ", "ab", "7"};
    fl_error err = {0};
    for (int f = 0; f < 3; f++) {
        size_t fl = strlen(fill[f]);
        for (size_t i = 0; i < n; i++)
            s[i] = fill[f][i % fl];
        s[n] = 0;
        int32_t *ids;
        int n_ids;
        assert_int_equal(tokenizer_encode(falcon, s, n, &ids, &n_ids, &err), FL_OK);
        if (!(n_ids > 0 && n_ids <= (int)n)) fail_msg("fill \"%s\": %d ids", fill[f], n_ids);
        if (f == 1) {
            assert_int_equal(n_ids, (int)n / 2);
            assert_int_equal(ids[0], 556);
        }
        char *out;
        assert_int_equal(tokenizer_decode(falcon, ids, n_ids, 1, &out, NULL, &err), FL_OK);
        assert_string_equal(out, s);
        free(out);
        free(ids);
    }
    free(s);
}

// Encoding is read-only on the tokenizer: threads sharing one must agree with HF on every case.
typedef struct thread_job {
    const cJSON *cases;
    int n_bad;
} thread_job;

static void *encode_all(void *arg) {
    thread_job *job = arg;
    const cJSON *cs;
    fl_error err = {0};
    cJSON_ArrayForEach(cs, job->cases) {
        const cJSON *text = cJSON_GetObjectItem(cs, "text"), *want = cJSON_GetObjectItem(cs, "ids");
        if (!cJSON_IsString(text)) continue;
        int32_t *ids;
        int n;
        if (tokenizer_encode(falcon, text->valuestring, strlen(text->valuestring), &ids, &n,
                             &err)) {
            job->n_bad++;
            continue;
        }
        int same = n == cJSON_GetArraySize(want);
        for (int i = 0; same && i < n; i++)
            same = ids[i] == cJSON_GetArrayItem(want, i)->valueint;
        job->n_bad += !same;
        free(ids);
    }
    return NULL;
}

static void test_threads(void **state) {
    char path[512];
    fixture_path(path, sizeof path, "tokenizer", "cases.json");
    cJSON *cases;
    fl_error err = {0};
    if (json_load_file(path, &cases, &err)) fail_msg("%s", err.msg);
    pthread_t th[4];
    thread_job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (thread_job){cases, 0};
        assert_int_equal(pthread_create(&th[i], NULL, encode_all, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(jobs[i].n_bad, 0);
    }
    cJSON_Delete(cases);
}

static void write_file(const char *name, const char *text, char *path, size_t n) {
    snprintf(path, n, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

// Loads text expecting code and a message naming the file and containing needle.
static void load_fails(const char *text, fl_code code, const char *needle) {
    char path[400];
    write_file("tokenizer.json", text, path, sizeof path);
    tokenizer *tok = NULL;
    fl_error err = {0};
    fl_code rc = tokenizer_load(path, &tok, &err);
    assert_null(tok);
    if (rc != code || !strstr(err.msg, path) || !strstr(err.msg, needle))
        fail_msg("expected %s containing \"%s\", got %s: %s", fl_code_name(code), needle,
                 fl_code_name(rc), err.msg);
}

#define MODEL_OK                                                                                   \
    "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b\"]}"

static void test_bad_files(void **state) {
    tokenizer *tok = NULL;
    fl_error err = {0};
    assert_int_equal(tokenizer_load("/nonexistent/tokenizer.json", &tok, &err), FL_EIO);
    assert_non_null(strstr(err.msg, "/nonexistent/tokenizer.json"));
    load_fails("{\"model\": {\"vocab\": {\"a\": 0,}", FL_EFORMAT, "malformed JSON");
    load_fails("[1, 2]", FL_EFORMAT, "not a JSON object");
    load_fails("{\"added_tokens\": []}", FL_ENOTFOUND, "model");
    load_fails("{\"model\":{\"type\":\"BPE\",\"merges\":[]}}", FL_ENOTFOUND, "model.vocab");
    load_fails("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}}}", FL_ENOTFOUND, "model.merges");
    load_fails("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":\"x\"},\"merges\":[]}}", FL_EFORMAT,
               "model.vocab[\"a\"]");
    load_fails("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a c\"]}}",
               FL_EFORMAT, "model.merges[0]: token \"c\" is not in model.vocab");
    load_fails(
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[[\"a\",\"b\"]]}}",
        FL_EFORMAT, "merged token \"ab\"");
    load_fails("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a\"]}}", FL_EFORMAT,
               "model.merges[0]");
    load_fails("{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", FL_EUNSUPPORTED, "Unigram");
    load_fails("{" MODEL_OK ",\"pre_tokenizer\":{\"type\":\"Metaspace\"}}", FL_EUNSUPPORTED,
               "Metaspace");
    load_fails("{" MODEL_OK ",\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":["
               "{\"type\":\"ByteLevel\"},{\"type\":\"Whitespace\"}]}}",
               FL_EUNSUPPORTED,
               "pre_tokenizer.pretokenizers[1]: pre-tokenizer type \"Whitespace\"");
    load_fails("{" MODEL_OK ",\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},"
               "\"behavior\":\"Isolated\"}}",
               FL_EFORMAT, "pre_tokenizer.pattern: bad regex");
    load_fails("{" MODEL_OK ",\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"a\"},"
               "\"behavior\":\"Sideways\"}}",
               FL_EUNSUPPORTED, "Sideways");
    load_fails("{" MODEL_OK ",\"normalizer\":{\"type\":\"NFKC\"}}", FL_EUNSUPPORTED, "NFKC");
    load_fails("{" MODEL_OK ",\"decoder\":{\"type\":\"WordPiece\"}}", FL_EUNSUPPORTED, "WordPiece");
    load_fails("{" MODEL_OK ",\"added_tokens\":[{\"content\":\"x\"}]}", FL_EFORMAT,
               "added_tokens[0].id");
}

// Replaces base's keys by override's, merging nested objects (make_tokenizer.py's merge_json).
static void json_merge(cJSON *base, const cJSON *override) {
    const cJSON *o;
    cJSON_ArrayForEach(o, override) {
        cJSON *b = cJSON_GetObjectItemCaseSensitive(base, o->string);
        if (cJSON_IsObject(b) && cJSON_IsObject(o))
            json_merge(b, o);
        else if (b)
            cJSON_ReplaceItemInObjectCaseSensitive(base, o->string, cJSON_Duplicate(o, 1));
        else
            cJSON_AddItemToObject(base, o->string, cJSON_Duplicate(o, 1));
    }
}

// The pipeline pieces the main fixtures do not use (other split behaviours, Digits individual,
// ByteLevel prefix space and no regex, Llama-3/SmolLM2-style Split then ByteLevel, inverted and
// literal splits, ignore_merges, lstrip/rstrip/single_word/normalized added tokens, unk tokens,
// no decoder): tokenizer.json variants from tests/golden/data/tokenizer_variants, each checked
// against HF's results.
static void test_variant_cases(void **state) {
    char path[512];
    fixture_path(path, sizeof path, "tokenizer_variants", "cases.json");
    cJSON *variants, *base;
    fl_error err = {0};
    if (json_load_file(path, &variants, &err)) fail_msg("%s", err.msg);
    fixture_path(path, sizeof path, "tokenizer_bytelevel", "tokenizer.json");
    if (json_load_file(path, &base, &err)) fail_msg("%s", err.msg);
    int n_mismatch = 0, n_variants = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, variants) {
        const char *name = cJSON_GetObjectItem(v, "name")->valuestring;
        const cJSON *over = cJSON_GetObjectItem(v, "tokenizer");
        int has_base = cJSON_IsString(cJSON_GetObjectItem(v, "base")); // else a whole tokenizer
        cJSON *tj = cJSON_Duplicate(has_base ? base : over, 1);
        if (has_base) json_merge(tj, over);
        char *text = cJSON_PrintUnformatted(tj);
        write_file("variant.json", text, path, sizeof path);
        tokenizer *tok = NULL;
        if (tokenizer_load(path, &tok, &err)) fail_msg("%s: %s", name, err.msg);
        n_mismatch += check_case_list(tok, cJSON_GetObjectItem(v, "cases"), name);
        tokenizer_free(tok);
        free(text);
        cJSON_Delete(tj);
        n_variants++;
    }
    cJSON_Delete(base);
    cJSON_Delete(variants);
    assert_true(n_variants >= 15);
    if (n_mismatch) fail_msg("%d variant cases encode differently from HF", n_mismatch);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_falcon_cases),   cmocka_unit_test(test_bytelevel_cases),
        cmocka_unit_test(test_special_tokens), cmocka_unit_test(test_arbitrary_bytes),
        cmocka_unit_test(test_long_words),     cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_variant_cases),  cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
