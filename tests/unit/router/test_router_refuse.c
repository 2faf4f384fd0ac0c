// The edge's refusals without sockets: UTF-8 and finite floats in the one validation routine, the
// byte bound that refuses a prompt before tokenizing (and never refuses a valid one), client
// errors without server paths, and OpenAI request parsing (mapping and OpenAI-style errors).
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_shard.h"
#include "router/openai_api.h"
#include "router/validate.h"

static const validate_limits lim = {
    .max_best_of = 2, .max_stop_sequences = 4, .max_input_length = 16, .max_total_tokens = 64};

static const char *check_params(gen_request_in *in) {
    static fl_error err;
    gen_params p;
    memset(&err, 0, sizeof err);
    if (validate_params(&lim, in, &p, &err) != FL_OK) return err.msg;
    for (int i = 0; i < p.n_stop; i++)
        free(p.stop[i]);
    free(p.stop);
    return "";
}

static void request_in(gen_request_in *in, const char *text, size_t len) {
    gen_request_in_init(in);
    in->inputs = malloc(len + 1);
    memcpy(in->inputs, text, len);
    in->inputs[len] = 0;
    in->inputs_len = len;
}

static void test_floats_and_utf8(void **state) {
    const double bad[] = {NAN, INFINITY, -INFINITY, 1e39, -HUGE_VAL};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gen_request_in in;
        request_in(&in, "hi", 2);
        in.params.has_temperature = true, in.params.temperature = bad[i];
        assert_string_equal(check_params(&in), "`temperature` must be a finite number");
        in.params.has_temperature = false;
        in.params.has_top_p = true, in.params.top_p = bad[i];
        assert_string_equal(check_params(&in), "`top_p` must be a finite number");
        in.params.has_top_p = false;
        in.params.has_typical_p = true, in.params.typical_p = bad[i];
        assert_string_equal(check_params(&in), "`typical_p` must be a finite number");
        in.params.has_typical_p = false;
        in.params.has_repetition_penalty = true, in.params.repetition_penalty = bad[i];
        assert_string_equal(check_params(&in), "`repetition_penalty` must be a finite number");
        gen_request_in_clear(&in);
    }
    const char *invalid[] = {"\xff", "caf\xc3", "\xed\xa0\x80", "\xc0\xaf", "a\x80"};
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        gen_request_in in;
        request_in(&in, invalid[i], strlen(invalid[i]));
        assert_string_equal(check_params(&in), "`inputs` must be valid UTF-8");
        gen_request_in_clear(&in);
        request_in(&in, "ok", 2);
        in.params.stop = calloc(1, sizeof(char *));
        in.params.stop[0] = strdup(invalid[i]);
        in.params.n_stop = 1;
        assert_string_equal(check_params(&in), "`stop` sequences must be valid UTF-8");
        gen_request_in_clear(&in);
    }
    gen_request_in in;
    const char *ok = "caf\xc3\xa9 \xe2\x98\x95";
    request_in(&in, ok, strlen(ok));
    assert_string_equal(check_params(&in), "");
    gen_request_in_clear(&in);
}

// A text whose byte length rules it out is refused before tokenizing; the bound holds for every
// text (token count >= bytes / bound), so no valid prompt is refused.
static void test_byte_bound(void **state) {
    size_t bound = tokenizer_max_token_bytes(fake_tok);
    assert_true(bound > 0);
    const char *samples[] = {"hello world", "                                ",
                             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
                             "<|endoftext|><|endoftext|>", "0123456789012345678901234567890"};
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        int32_t *ids = NULL;
        int n = 0;
        size_t len = strlen(samples[i]);
        assert_int_equal(tokenizer_encode(fake_tok, samples[i], len, &ids, &n, NULL), FL_OK);
        assert_true((size_t)n * bound >= len);
        size_t sum = 0;
        for (int k = 0; k < n; k++)
            sum += tokenizer_token_bytes(fake_tok, ids[k]);
        assert_int_equal(sum, len); // each token stands for exactly its bytes
        free(ids);
    }
    size_t len = (size_t)lim.max_input_length * bound + 1;
    char *text = malloc(len + 1);
    memset(text, 'a', len);
    text[len] = 0;
    gen_request_in in;
    request_in(&in, text, len);
    gen_request *out = NULL;
    fl_error err = {0};
    assert_int_equal(validate_request(&lim, fake_tok, &in, &out, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "`inputs` must have less than 16 tokens. Given: at least "));
    gen_request_in_clear(&in);
    // With truncate the same text is valid: it is tokenized and cut.
    request_in(&in, text, len);
    in.params.has_truncate = true, in.params.truncate = 4;
    assert_int_equal(validate_request(&lim, fake_tok, &in, &out, &err), FL_OK);
    assert_int_equal(out->n_input, 4);
    gen_request_free(out);
    gen_request_in_clear(&in);
    free(text);
}

static void test_public_errors(void **state) {
    const char *leak = "Request failed during generation: unix:/tmp/text-generation-server-0: No "
                       "such file or directory";
    assert_null(strchr(gen_error_public(GEN_ERR_GENERATION, leak), '/'));
    assert_null(strchr(gen_error_public(GEN_ERR_UNHEALTHY, "cannot open /models/x"), '/'));
    assert_string_equal(gen_error_public(GEN_ERR_GENERATION, "Request failed during generation: "
                                                             "out of memory"),
                        "Request failed during generation: out of memory");
    assert_string_equal(gen_error_public(GEN_ERR_VALIDATION, "a/b"), "a/b");
}

static const openai_limits oa_lim = {.max_n = 2, .default_max_tokens = 48};

static bool parse(openai_kind kind, const char *body, const chat_template *t, openai_request *r,
                  openai_error *e) {
    memset(e, 0, sizeof *e);
    return openai_parse(kind, body, strlen(body), &oa_lim, t, r, e);
}

static void test_openai_parse(void **state) {
    chat_template *t = NULL;
    assert_int_equal(chat_template_create("chatml", &t, NULL), FL_OK);
    openai_request r;
    openai_error e;
    assert_true(parse(OPENAI_CHAT,
                      "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"S\"},"
                      "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"U\"}]}],"
                      "\"temperature\":0,\"top_p\":1,\"stop\":\"x\",\"n\":2,\"seed\":7,\"x\":1}",
                      t, &r, &e));
    assert_string_equal(r.in.inputs,
                        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n"
                        "<|im_start|>assistant\n");
    assert_false(r.in.params.do_sample); // temperature 0: greedy
    assert_false(r.in.params.has_temperature || r.in.params.has_top_p);
    assert_int_equal(r.in.params.max_new_tokens, 48);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.in.params.n_stop, 1);
    gen_request_in c;
    assert_true(openai_request_choice(&r, 1, &c));
    assert_int_equal(c.params.seed, 8);
    assert_string_equal(c.params.stop[0], "x");
    gen_request_in_clear(&c);
    openai_request_clear(&r);

    assert_true(parse(OPENAI_COMPLETION, "{\"prompt\":[\"p\"],\"max_tokens\":3,\"top_p\":0.5}", t,
                      &r, &e));
    assert_true(r.in.params.do_sample && r.in.params.has_top_p);
    assert_int_equal(r.in.params.max_new_tokens, 3);
    openai_request_clear(&r);

    const struct {
        openai_kind kind;
        const char *body, *param;
        int status;
    } bad[] = {
        {OPENAI_CHAT, "{nope", "", 400},
        {OPENAI_CHAT, "{}", "messages", 400},
        {OPENAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"u\"}],\"temperature\":\"x\"}",
         "temperature", 400},
        {OPENAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"u\"}],\"n\":3}", "n", 400},
        {OPENAI_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"u\"}],\"frequency_penalty\":1}",
         "frequency_penalty", 400},
        {OPENAI_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"u\"}],\"top_logprobs\":1}",
         "top_logprobs", 400},
        {OPENAI_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\","
         "\"content\":\"b\"},{\"role\":\"user\",\"content\":\"c\"}]}",
         "messages", 400},
        {OPENAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}",
         "messages.content", 400},
        {OPENAI_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"u\"}],\"stream_options\":{}}",
         "stream_options", 400},
        {OPENAI_COMPLETION, "{\"prompt\":\"p\",\"echo\":true}", "echo", 400},
        {OPENAI_COMPLETION, "{\"prompt\":\"p\",\"logprobs\":2}", "logprobs", 400},
        {OPENAI_COMPLETION, "{\"prompt\":5}", "prompt", 400},
        {OPENAI_COMPLETION, "{\"prompt\":\"p\",\"stop\":[1]}", "stop", 400},
        {OPENAI_COMPLETION, "{\"prompt\":\"p\",\"max_tokens\":0}", "max_tokens", 400},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_false(parse(bad[i].kind, bad[i].body, t, &r, &e));
        assert_int_equal(e.status, bad[i].status);
        assert_string_equal(e.param, bad[i].param);
        char *json = openai_error_json(&e);
        assert_non_null(strstr(json, "\"type\":\"invalid_request_error\""));
        free(json);
    }
    chat_template_free(t);
}

// Streamed text holds back what may start a stop sequence and leaves the stop sequence out.
static void test_openai_stream_stop(void **state) {
    openai_request r;
    openai_error e;
    assert_true(parse(OPENAI_COMPLETION, "{\"prompt\":\"p\",\"stop\":[\"END\"]}", NULL, &r, &e));
    openai_meta m;
    openai_meta_init(&m, OPENAI_COMPLETION, "model");
    openai_choice_stream s = {0};
    const char *pieces[] = {"ab", "E", "N"};
    const char *want[] = {"\"text\":\"ab\"", NULL, NULL};
    for (int i = 0; i < 3; i++) {
        gen_event ev = {.kind = GEN_EVENT_TOKEN, .token = {.text = (char *)pieces[i]}};
        char *chunk = openai_chunk_event(&r, &m, 0, &s, &ev);
        if (want[i])
            assert_non_null(strstr(chunk, want[i]));
        else
            assert_null(chunk);
        free(chunk);
    }
    gen_event end = {.kind = GEN_EVENT_END,
                     .token = {.text = "D"},
                     .generated_text = "abEND",
                     .finish = FINISH_STOP_SEQUENCE};
    char *chunk = openai_chunk_event(&r, &m, 0, &s, &end);
    assert_non_null(strstr(chunk, "\"text\":\"\""));
    assert_non_null(strstr(chunk, "\"finish_reason\":\"stop\""));
    free(chunk);
    openai_choice_stream_clear(&s);
    openai_request_clear(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_floats_and_utf8),
        cmocka_unit_test(test_byte_bound),
        cmocka_unit_test(test_public_errors),
        cmocka_unit_test(test_openai_parse),
        cmocka_unit_test(test_openai_stream_stop),
    };
    return cmocka_run_group_tests(tests, fake_tok_setup, fake_tok_teardown);
}
