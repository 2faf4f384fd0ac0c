// TGI's HTTP JSON schemas: request parsing (defaults, presence, type errors as 422, syntax errors
// as 400), the exact response, stream-event and error bodies, and the Prometheus text.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "router/api_json.h"
#include "router/metrics.h"

static json_parse_status parse(const char *body, gen_request_in *in, bool *stream, char *msg) {
    return api_json_parse_request(body, strlen(body), in, stream, msg, 512);
}

static void test_parse_request(void **state) {
    gen_request_in in;
    char msg[512];
    bool stream = false;
    assert_int_equal(
        parse("{\"inputs\":\"hi\",\"stream\":true,\"parameters\":{\"do_sample\":true,"
              "\"max_new_tokens\":250,\"typical_p\":0.2,\"seed\":1,\"temperature\":null,"
              "\"stop\":[\"a\",\"bc\"],\"truncate\":null,\"details\":true,\"unknown\":5}}",
              &in, &stream, msg),
        JSON_PARSE_OK);
    assert_string_equal(in.inputs, "hi");
    assert_true(stream);
    assert_true(in.params.do_sample && in.params.details);
    assert_true(in.params.has_max_new_tokens && in.params.max_new_tokens == 250);
    assert_true(in.params.has_typical_p && fabs(in.params.typical_p - 0.2) < 1e-9);
    assert_true(in.params.has_seed && in.params.seed == 1);
    assert_false(in.params.has_temperature); // null = absent
    assert_false(in.params.has_truncate);
    assert_int_equal(in.params.n_stop, 2);
    assert_string_equal(in.params.stop[1], "bc");
    gen_request_in_clear(&in);

    // No parameters at all: every default.
    assert_int_equal(parse("{\"inputs\":\"x\"}", &in, NULL, msg), JSON_PARSE_OK);
    assert_false(in.params.has_max_new_tokens || in.params.has_top_k || in.params.do_sample);
    assert_false(in.params.ignore_eos);
    gen_request_in_clear(&in);

    // The falconlite extension ignore_eos (absent from TGI's schema).
    assert_int_equal(
        parse("{\"inputs\":\"x\",\"parameters\":{\"ignore_eos\":true}}", &in, NULL, msg),
        JSON_PARSE_OK);
    assert_true(in.params.ignore_eos);
    gen_request_in_clear(&in);
    assert_int_equal(
        parse("{\"inputs\":\"x\",\"parameters\":{\"ignore_eos\":null}}", &in, NULL, msg),
        JSON_PARSE_OK);
    assert_false(in.params.ignore_eos);
    gen_request_in_clear(&in);
}

static void test_parse_errors(void **state) {
    gen_request_in in;
    char msg[512];
    assert_int_equal(parse("{\"inputs\": \"x\",", &in, NULL, msg), JSON_PARSE_SYNTAX);
    assert_int_equal(parse("{\"parameters\":{}}", &in, NULL, msg), JSON_PARSE_TYPE);
    assert_non_null(strstr(msg, "missing field `inputs`"));
    assert_int_equal(parse("{\"inputs\":3}", &in, NULL, msg), JSON_PARSE_TYPE);
    assert_int_equal(
        parse("{\"inputs\":\"x\",\"parameters\":{\"max_new_tokens\":-1}}", &in, NULL, msg),
        JSON_PARSE_TYPE);
    assert_non_null(strstr(msg, "parameters.max_new_tokens"));
    assert_int_equal(parse("{\"inputs\":\"x\",\"parameters\":{\"top_k\":1.5}}", &in, NULL, msg),
                     JSON_PARSE_TYPE);
    assert_int_equal(parse("{\"inputs\":\"x\",\"parameters\":{\"stop\":\"a\"}}", &in, NULL, msg),
                     JSON_PARSE_TYPE);
    assert_int_equal(parse("{\"inputs\":\"x\",\"parameters\":{\"do_sample\":1}}", &in, NULL, msg),
                     JSON_PARSE_TYPE);
    assert_int_equal(parse("{\"inputs\":\"x\",\"parameters\":{\"ignore_eos\":1}}", &in, NULL, msg),
                     JSON_PARSE_TYPE);
    assert_non_null(strstr(msg, "parameters.ignore_eos"));
    // Out-of-range values that parse are left for validation (TGI's 422 with its message).
    assert_int_equal(
        parse("{\"inputs\":\"x\",\"parameters\":{\"top_k\":-1,\"top_p\":1.0}}", &in, NULL, msg),
        JSON_PARSE_OK);
    assert_true(in.params.has_top_k && in.params.top_k == -1);
    gen_request_in_clear(&in);
}

static void test_render(void **state) {
    char *s = api_json_error("Model is overloaded", "overloaded");
    assert_string_equal(s, "{\"error\":\"Model is overloaded\",\"error_type\":\"overloaded\"}");
    free(s);

    gen_token toks[2] = {{.id = 5, .text = "Hel", .logprob = -0.5f, .special = false},
                         {.id = 11, .text = "<|endoftext|>", .logprob = -0.25f, .special = true}};
    gen_token pre[1] = {{.id = 7, .text = "A", .logprob = NAN}};
    gen_result r = {.generated_text = "Hel",
                    .finish = FINISH_EOS_TOKEN,
                    .generated_tokens = 2,
                    .has_seed = true,
                    .seed = 18446744073709551615ULL,
                    .prefill = pre,
                    .n_prefill = 1,
                    .tokens = toks,
                    .n_tokens = 2};
    gen_outcome o = {.results = &r, .n_results = 1};
    s = api_json_generate(&o, false);
    assert_string_equal(s, "{\"generated_text\":\"Hel\"}");
    free(s);
    s = api_json_generate(&o, true);
    assert_string_equal(
        s, "{\"generated_text\":\"Hel\",\"details\":{\"finish_reason\":\"eos_token\","
           "\"generated_tokens\":2,\"seed\":18446744073709551615,"
           "\"prefill\":[{\"id\":7,\"text\":\"A\",\"logprob\":null}],"
           "\"tokens\":[{\"id\":5,\"text\":\"Hel\",\"logprob\":-0.5,\"special\":false},"
           "{\"id\":11,\"text\":\"<|endoftext|>\",\"logprob\":-0.25,\"special\":true}]}}");
    free(s);

    gen_event ev = {.kind = GEN_EVENT_TOKEN, .token = toks[0]};
    s = api_json_stream_event(&ev, true);
    assert_string_equal(s,
                        "{\"token\":{\"id\":5,\"text\":\"Hel\",\"logprob\":-0.5,\"special\":false},"
                        "\"generated_text\":null,\"details\":null}");
    free(s);
    ev.kind = GEN_EVENT_END;
    ev.generated_text = "Hel";
    ev.finish = FINISH_LENGTH;
    ev.generated_tokens = 1;
    s = api_json_stream_event(&ev, true);
    assert_string_equal(s,
                        "{\"token\":{\"id\":5,\"text\":\"Hel\",\"logprob\":-0.5,\"special\":false},"
                        "\"generated_text\":\"Hel\",\"details\":{\"finish_reason\":\"length\","
                        "\"generated_tokens\":1,\"seed\":null}}");
    free(s);
}

static void test_metrics_text(void **state) {
    metrics_init(100, 200);
    metrics_request_count();
    metrics_request_failure(METRIC_ERR_OVERLOADED);
    metrics_observe(METRIC_REQUEST_INPUT_LENGTH, 50);
    metrics_batch_inference(METRIC_DECODE, 1, 0.01);
    size_t len = 0;
    char *text = metrics_render(&len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    assert_non_null(strstr(text, "\ntgi_request_count 1\n"));
    assert_non_null(strstr(text, "tgi_request_failure{err=\"overloaded\"} 1\n"));
    // Linear input-length buckets up to max_input_length: 50 lands in le="50".
    assert_non_null(strstr(text, "tgi_request_input_length_bucket{le=\"49\"} 0\n"));
    assert_non_null(strstr(text, "tgi_request_input_length_bucket{le=\"50\"} 1\n"));
    assert_non_null(strstr(text, "tgi_batch_inference_duration_count{method=\"decode\"} 1\n"));
    assert_non_null(strstr(text, "tgi_batch_inference_success{method=\"decode\"} 1\n"));
    free(text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_request),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_metrics_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
