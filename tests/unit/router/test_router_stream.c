// One request's stream on its own: incremental token texts, stop sequences matched on the
// decoded text, the END event (final text, return_full_text, token count, seed) when the shard
// or the router ends the request, and the PREFILL event.
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
#include "router/stream.h"

static gen_request *make_request(const char *prompt, const char *stop) {
    gen_request *req = fake_gen_request(prompt, 64, stop);
    assert_non_null(req);
    req->params.seed = 7;
    return req;
}

static shard_generation gen_of(uint32_t id) {
    return (shard_generation){.token_id = id, .token_logprob = -0.5f};
}

// Feeds the request's own prompt ids back as its generation (an echo model) until END; returns
// the END event and the concatenated token texts in text.
static gen_event *echo(stream *s, const gen_request *req, int shard_finish_at, char *text,
                       size_t cap) {
    text[0] = 0;
    for (int i = 0; i < req->n_input; i++) {
        shard_generation g = gen_of((uint32_t)req->input_ids[i]);
        if (i + 1 == shard_finish_at) {
            g.finished = true;
            g.finish = FINISH_EOS_TOKEN;
            g.generated_tokens = (uint32_t)shard_finish_at;
            g.sampled = false;
        }
        gen_event *ev = stream_push(s, &g);
        assert_non_null(ev);
        strncat(text, ev->token.text, cap - strlen(text) - 1);
        if (ev->kind == GEN_EVENT_END) return ev;
        assert_int_equal(ev->kind, GEN_EVENT_TOKEN);
        assert_null(ev->generated_text);
        gen_event_free(ev);
    }
    return NULL;
}

static void test_stop_sequence(void **state) {
    gen_request *req = make_request("one two three", " two");
    req->params.sampled = true;
    stream *s = stream_create(req, fake_tok);
    assert_non_null(s);
    char text[256];
    gen_event *end = echo(s, req, -1, text, sizeof text);
    assert_non_null(end);
    assert_string_equal(text, "one two");
    assert_int_equal(end->finish, FINISH_STOP_SEQUENCE);
    assert_string_equal(end->generated_text, "one two"); // the stop sequence stays in the text
    assert_int_equal(end->generated_tokens, 2);
    assert_true(end->has_seed); // the router ended it: the request's own flag
    assert_int_equal(end->seed, 7);
    gen_event_free(end);
    stream_free(s);
    gen_request_free(req);
}

static void test_shard_finish_and_full_text(void **state) {
    gen_request *req = make_request("Hello world", NULL);
    req->params.return_full_text = true;
    req->params.sampled = true;
    stream *s = stream_create(req, fake_tok);
    char text[256];
    gen_event *end = echo(s, req, req->n_input, text, sizeof text);
    assert_non_null(end);
    assert_string_equal(text, "Hello world");
    assert_int_equal(end->finish, FINISH_EOS_TOKEN);
    assert_int_equal(end->generated_tokens, req->n_input); // the shard's count
    assert_false(end->has_seed);                           // the shard's flag
    assert_string_equal(end->generated_text, "Hello worldHello world");
    assert_float_equal(end->token.logprob, -0.5f, 0);
    gen_event_free(end);
    stream_free(s);
    gen_request_free(req);
}

static void test_prefill_event(void **state) {
    gen_request *req = make_request("Hello world", NULL);
    stream *s = stream_create(req, fake_tok);
    shard_generation g = gen_of(1);
    assert_null(stream_prefill_event(s, &g)); // no prompt tokens asked
    uint32_t ids[8];
    float logprobs[8];
    for (int i = 0; i < req->n_input; i++) {
        ids[i] = (uint32_t)req->input_ids[i];
        logprobs[i] = i ? -1.0f * (float)i : NAN;
    }
    g.prefill_ids = ids;
    g.prefill_logprobs = logprobs;
    g.n_prefill = req->n_input;
    gen_event *ev = stream_prefill_event(s, &g);
    assert_non_null(ev);
    assert_int_equal(ev->kind, GEN_EVENT_PREFILL);
    assert_int_equal(ev->n_prefill, req->n_input);
    char joined[256] = "";
    for (int i = 0; i < ev->n_prefill; i++) {
        assert_int_equal(ev->prefill[i].id, ids[i]);
        strncat(joined, ev->prefill[i].text, sizeof joined - strlen(joined) - 1);
    }
    assert_string_equal(joined, "Hello world");
    assert_true(isnan(ev->prefill[0].logprob));
    gen_event_free(ev);
    stream_free(s);
    gen_request_free(req);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stop_sequence),
        cmocka_unit_test(test_shard_finish_and_full_text),
        cmocka_unit_test(test_prefill_event),
    };
    return cmocka_run_group_tests(tests, fake_tok_setup, fake_tok_teardown);
}
