// falconlite eval's model-free scoring (tools/eval_score.c) and the HTTP client's chunked body
// decoding (tools/http_client.c) on fixed outputs.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tools/eval_score.h"
#include "tools/http_client.h"

static void test_find_number(void **state) {
    (void)state;
    assert_int_equal(eval_find_number("The pass key is 41234. Remember", 0), 41234);
    assert_int_equal(eval_find_number("line 12 holds <42527>", 1), 42527);
    assert_int_equal(eval_find_number("line 12 holds <42527>", 0), 12);
    assert_int_equal(eval_find_number("no digits", 0), -1);
    assert_int_equal(eval_find_number("", 1), -1);
}

static void test_normalise(void **state) {
    (void)state;
    char *n = eval_text_normalise("  The  History of-Rome!  ");
    assert_string_equal(n, "the history of rome");
    free(n);
    n = eval_text_normalise("\"Café\" culture");
    assert_string_equal(n, "caf\xc3\xa9 culture"); // UTF-8 bytes kept, ASCII lower-cased
    free(n);
    n = eval_text_normalise("...");
    assert_string_equal(n, "");
    free(n);
}

static void test_topic_match(void **state) {
    (void)state;
    assert_true(eval_topic_match("The first topic was: the benefits of a plant-based diet.",
                                 "The benefits of a plant-based diet"));
    assert_true(eval_topic_match("ROME", "Rome"));
    assert_false(eval_topic_match("Romeo and Juliet", "Rome"));   // whole words only
    assert_false(eval_topic_match("ancient rome", "ancient romes"));
    assert_false(eval_topic_match("the benefits of diet", "benefits of a plant-based diet"));
    assert_false(eval_topic_match("anything", "  "));             // empty label never matches
}

static void test_option_ranking(void **state) {
    (void)state;
    // [NaN context-first, ctx, ctx, opt...]: options start at index 3.
    const float lp[] = {NAN, -1.0f, -2.0f, -0.5f, -0.5f, -3.0f};
    eval_option_score s = eval_option_score_range(lp, 3, 6);
    assert_int_equal(s.n_tokens, 3);
    assert_true(fabs(s.sum - -4.0) < 1e-9);
    assert_true(fabs(s.mean - -4.0 / 3) < 1e-9);
    eval_option_score empty = eval_option_score_range(lp, 6, 6);
    assert_int_equal(empty.n_tokens, 0);
    assert_true(isinf(empty.mean) && empty.mean < 0);

    // Sum prefers the short option, mean the long one with likelier tokens.
    eval_option_score opts[4] = {
        {-6.0, -3.0, 2}, {-4.0, -4.0, 1}, {-8.0, -1.0, 8}, {-9.0, -1.5, 6}};
    assert_int_equal(eval_option_best(opts, 4, 0), 1);
    assert_int_equal(eval_option_best(opts, 4, 1), 2);
    eval_option_score tie[2] = {{-1.0, -1.0, 1}, {-1.0, -1.0, 1}};
    assert_int_equal(eval_option_best(tie, 2, 0), 0); // the first wins a tie
    assert_int_equal(eval_option_best(tie, 0, 0), -1);
}

static void test_buckets(void **state) {
    (void)state;
    eval_range r[8];
    int n = 0;
    fl_error err = {0};
    assert_int_equal(eval_ranges_parse("2800-3800,5500-5600,7500-8300,9300-11000", r, 8, &n, &err),
                     FL_OK);
    assert_int_equal(n, 4);
    assert_int_equal(eval_range_find(r, n, 2851), 0);
    assert_int_equal(eval_range_find(r, n, 3800), 0); // inclusive
    assert_int_equal(eval_range_find(r, n, 5568), 1);
    assert_int_equal(eval_range_find(r, n, 8000), 2);
    assert_int_equal(eval_range_find(r, n, 8313), -1); // between buckets
    assert_int_equal(eval_range_find(r, n, 11044), -1); // the 20-topic file is past 11000
    assert_int_equal(eval_range_find(r, n, 100), -1);
    assert_int_not_equal(eval_ranges_parse("5500-5600,2800-3800", r, 8, &n, &err), FL_OK);
    assert_non_null(strstr(err.msg, "ascend"));
    assert_int_not_equal(eval_ranges_parse("10-5", r, 8, &n, &err), FL_OK);
    assert_int_not_equal(eval_ranges_parse("abc", r, 8, &n, &err), FL_OK);
    assert_int_not_equal(eval_ranges_parse("", r, 8, &n, &err), FL_OK);
    assert_int_not_equal(eval_ranges_parse("1-2,3-4,5-6", r, 2, &n, &err), FL_OK);
}

static void test_quality_hard(void **state) {
    (void)state;
    const int q1[] = {3, 3, 1, 3, 2}; // gold 2: 1 of 5 right -> hard
    const int q4[] = {2, 3, 3, 2, 1}; // gold 1: 1 of 5 -> hard
    const int easy[] = {4, 4, 4, 2, 4};
    const int half[] = {1, 1, 2, 2};
    assert_true(eval_quality_is_hard(q1, 5, 2));
    assert_true(eval_quality_is_hard(q4, 5, 1));
    assert_false(eval_quality_is_hard(easy, 5, 4));
    assert_true(eval_quality_is_hard(half, 4, 1)); // at most half right
    assert_false(eval_quality_is_hard(NULL, 0, 1));
}

static void test_html_to_text(void **state) {
    (void)state;
    char *t = eval_html_to_text("<html><head><title>X</title></head>\n <body>\n <h1>\n  THE "
                                "GIRL\n </h1>\n <p>\n  By R. &amp; F.\n  YOUNG\n </p>\n"
                                "<p>Line &quot;two&quot;</p></body></html>");
    assert_string_equal(t, "THE GIRL\n\nBy R. & F. YOUNG\n\nLine \"two\"");
    free(t);
    t = eval_html_to_text("plain text\nstays as is");
    assert_string_equal(t, "plain text\nstays as is");
    free(t);
}

static void test_chunked(void **state) {
    (void)state;
    char body[] = "4\r\n{\"a\"\r\n3;ext=1\r\n:1}\r\n0\r\n\r\n";
    size_t n = 0;
    fl_error err = {0};
    assert_int_equal(http_chunked_decode(body, strlen(body), &n, &err), FL_OK);
    assert_int_equal(n, 7);
    assert_string_equal(body, "{\"a\":1}");
    char truncated[] = "a\r\nabc";
    assert_int_equal(http_chunked_decode(truncated, strlen(truncated), &n, &err), FL_EFORMAT);
    char bad[] = "zz\r\nabc\r\n0\r\n\r\n";
    assert_int_equal(http_chunked_decode(bad, strlen(bad), &n, &err), FL_EFORMAT);
}

static void test_url(void **state) {
    (void)state;
    http_client *c = NULL;
    fl_error err = {0};
    assert_int_equal(http_client_create("http://127.0.0.1:8080/", 1000, &c, &err), FL_OK);
    assert_string_equal(http_client_url(c), "http://127.0.0.1:8080");
    http_client_free(c);
    assert_int_equal(http_client_create("http://[::1]:80", 1000, &c, &err), FL_OK);
    http_client_free(c);
    assert_int_equal(http_client_create("https://x:1", 1000, &c, &err), FL_EUNSUPPORTED);
    assert_int_equal(http_client_create("x:1", 1000, &c, &err), FL_EINVAL);
    assert_int_equal(http_client_create("http://x:port", 1000, &c, &err), FL_EINVAL);
    assert_int_equal(http_client_create("http://x:1/generate", 1000, &c, &err), FL_EINVAL);
    // Nothing listens on port 1: a clear connect error, no hang.
    assert_int_equal(http_client_create("http://127.0.0.1:1", 2000, &c, &err), FL_OK);
    http_response r;
    assert_int_equal(http_client_request(c, "GET", "/health", NULL, NULL, 0, &r, &err), FL_EIO);
    assert_non_null(strstr(err.msg, "cannot connect"));
    http_client_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find_number),  cmocka_unit_test(test_normalise),
        cmocka_unit_test(test_topic_match),  cmocka_unit_test(test_option_ranking),
        cmocka_unit_test(test_buckets),      cmocka_unit_test(test_quality_hard),
        cmocka_unit_test(test_html_to_text), cmocka_unit_test(test_chunked),
        cmocka_unit_test(test_url),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
