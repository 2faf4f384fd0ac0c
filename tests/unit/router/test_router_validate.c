// TGI 0.9.2 validation: the order of checks, the exact messages, defaults, and the queue's
// FIFO budget rules (queue.rs next_batch).
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/queue.h"
#include "router/validate.h"

static const validate_limits lim = {
    .max_best_of = 2, .max_stop_sequences = 4, .max_input_length = 1024, .max_total_tokens = 2048};

static void set_inputs(gen_request_in *in, const char *text) {
    in->inputs = strdup(text);
    in->inputs_len = strlen(text);
}

// Runs validate_params and returns the error message ("" on success).
static const char *check(gen_request_in *in) {
    static fl_error err;
    gen_params p;
    memset(&err, 0, sizeof err);
    if (validate_params(&lim, in, &p, &err) == FL_OK) {
        for (int i = 0; i < p.n_stop; i++)
            free(p.stop[i]);
        free(p.stop);
        return "";
    }
    return err.msg;
}

static void test_defaults(void **state) {
    gen_request_in in;
    gen_request_in_init(&in);
    set_inputs(&in, "hi");
    gen_params p;
    fl_error err;
    assert_int_equal(validate_params(&lim, &in, &p, &err), FL_OK);
    assert_true(p.temperature == 1.0f && p.top_p == 1.0f && p.typical_p == 1.0f);
    assert_int_equal(p.top_k, 0);
    assert_int_equal(p.max_new_tokens, 20);
    assert_int_equal(p.truncate, 1024);
    assert_int_equal(p.best_of, 1);
    assert_false(p.do_sample);
    assert_false(p.sampled);
    gen_request_in_clear(&in);
}

// `sampled` (the seed is used and reported) follows the shards' rule: do_sample or any warper
// given with a value other than its neutral default.
static void test_sampled(void **state) {
    struct {
        bool do_sample, has_temperature;
        double temperature;
        bool has_top_k, has_top_p, has_typical_p;
        bool sampled;
    } cases[] = {
        {false, false, 0, false, false, false, false},
        {true, false, 0, false, false, false, true},
        {false, true, 1.0, false, false, false, false}, // temperature 1 is off
        {false, true, 0.7, false, false, false, true},
        {false, false, 0, true, false, false, true},
        {false, false, 0, false, true, false, true},
        {false, false, 0, false, false, true, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gen_request_in in;
        gen_request_in_init(&in);
        set_inputs(&in, "hi");
        in.params.do_sample = cases[i].do_sample;
        in.params.has_temperature = cases[i].has_temperature;
        in.params.temperature = cases[i].temperature;
        in.params.has_top_k = cases[i].has_top_k, in.params.top_k = 5;
        in.params.has_top_p = cases[i].has_top_p, in.params.top_p = 0.9;
        in.params.has_typical_p = cases[i].has_typical_p, in.params.typical_p = 0.5;
        gen_params p;
        fl_error err;
        assert_int_equal(validate_params(&lim, &in, &p, &err), FL_OK);
        assert_int_equal(p.sampled, cases[i].sampled);
        gen_request_in_clear(&in);
    }
}

static void test_messages_and_order(void **state) {
    gen_request_in in;
    gen_request_in_init(&in);
    set_inputs(&in, "hi");
    in.params.has_best_of = true, in.params.best_of = 2;
    assert_string_equal(check(&in), "you must use sampling when `best_of` is > 1");
    // A best_of past 32 bits saturates, so --max-best-of refuses it (found by fuzzing: 2^32 + 2
    // used to pass as 2).
    {
        gen_params p;
        fl_error err = {0};
        in.params.do_sample = true, in.params.best_of = 4294967298LL;
        assert_int_equal(validate_params(&lim, &in, &p, &err), FL_OK);
        assert_int_equal(p.best_of, UINT32_MAX);
        assert_int_not_equal(validate_best_of(&lim, p.best_of, &err), FL_OK);
        free(p.stop);
        in.params.do_sample = false, in.params.best_of = 2;
    }
    // Sampling present: the next failing rule wins (temperature before top_p).
    in.params.do_sample = true;
    in.params.has_temperature = true, in.params.temperature = 0;
    in.params.has_top_p = true, in.params.top_p = 1.0;
    assert_string_equal(check(&in), "`temperature` must be strictly positive");
    in.params.temperature = 0.5;
    in.params.has_repetition_penalty = true, in.params.repetition_penalty = -1;
    assert_string_equal(check(&in), "`repetition_penalty` must be strictly positive");
    in.params.repetition_penalty = 1.1;
    assert_string_equal(check(&in), "`top_p` must be > 0.0 and < 1.0");
    in.params.top_p = 0.9;
    in.params.has_typical_p = true, in.params.typical_p = 0;
    assert_string_equal(check(&in), "`typical_p` must be > 0.0 and < 1.0");
    in.params.typical_p = 0.2;
    in.params.has_top_k = true, in.params.top_k = 0;
    assert_string_equal(check(&in), "`top_k` must be strictly positive");
    in.params.top_k = 5;
    in.params.has_max_new_tokens = true, in.params.max_new_tokens = 0;
    assert_string_equal(check(&in), "`max_new_tokens` must be strictly positive");
    in.params.max_new_tokens = 10;
    in.params.n_stop = 5;
    in.params.stop = calloc(5, sizeof(char *));
    for (int i = 0; i < 5; i++)
        in.params.stop[i] = strdup("x");
    assert_string_equal(check(&in), "`stop` supports up to 4 stop sequences. Given: 5");
    free(in.params.stop[4]);
    in.params.n_stop = 4;
    in.params.has_seed = true, in.params.seed = 1;
    assert_string_equal(check(&in), "`seed` must not be set when `best_of` > 1");
    in.params.has_seed = false;
    assert_string_equal(check(&in), ""); // success moves the stop strings out
    assert_null(in.params.stop);
    in.params.has_truncate = true, in.params.truncate = 0;
    in.inputs_len = 0;
    assert_string_equal(check(&in), "`inputs` cannot be empty");
    in.inputs_len = 2;
    in.params.watermark = true;
    assert_string_equal(check(&in), "`watermark` == true is not supported");
    in.params.watermark = false;
    assert_string_equal(check(&in),
                        "`truncate` must be strictly positive and less than 1024. Given: 0");
    in.params.truncate = 1025;
    assert_string_equal(check(&in),
                        "`truncate` must be strictly positive and less than 1024. Given: 1025");
    gen_request_in_clear(&in);
}

static void test_best_of_and_lengths(void **state) {
    fl_error err;
    assert_int_equal(validate_best_of(&lim, 2, &err), FL_OK);
    assert_int_not_equal(validate_best_of(&lim, 3, &err), FL_OK);
    assert_string_equal(err.msg, "`best_of` must be > 0 and <= 2. Given: 3");
    validate_limits one = lim;
    one.max_best_of = 1;
    assert_int_not_equal(validate_best_of(&one, 2, &err), FL_OK);
    assert_string_equal(err.msg, "`best_of` != 1 is not allowed for this endpoint");

    gen_params p = {.max_new_tokens = 1000};
    assert_int_equal(validate_lengths(&lim, 1000, &p, &err), FL_OK);
    // Both rules broken: MaxTotalTokens is reported first, as in TGI.
    p.max_new_tokens = 1500;
    assert_int_not_equal(validate_lengths(&lim, 1100, &p, &err), FL_OK);
    assert_string_equal(err.msg, "`inputs` tokens + `max_new_tokens` must be <= 2048. Given: 1100 "
                                 "`inputs` tokens and 1500 `max_new_tokens`");
    p.max_new_tokens = 10;
    assert_int_not_equal(validate_lengths(&lim, 1100, &p, &err), FL_OK);
    assert_string_equal(err.msg, "`inputs` must have less than 1024 tokens. Given: 1100");
}

static gen_request *fake_request(int n_input, uint32_t max_new) {
    gen_request *r = calloc(1, sizeof *r);
    r->inputs = strdup("x");
    r->inputs_len = 1;
    r->input_ids = calloc((size_t)n_input, sizeof(int32_t));
    r->n_input = n_input;
    r->params.max_new_tokens = max_new;
    return r;
}

static bool alive_flag(void *user) {
    return *(bool *)user;
}
static bool send_discard(void *user, gen_event *ev) {
    gen_event_free(ev);
    return true;
}

static void test_queue_budgets(void **state) {
    queue *q = queue_create();
    bool alive[5] = {true, true, false, true, true};
    int sizes[5][2] = {{10, 10}, {20, 10}, {5, 5}, {100, 10}, {1, 1}};
    for (int i = 0; i < 5; i++) {
        gen_sink sink = {.send = send_discard, .alive = alive_flag, .user = &alive[i]};
        assert_true(
            queue_append(q, queue_entry_create(fake_request(sizes[i][0], sizes[i][1]), sink)));
    }
    queue_entry *batch[8];
    uint32_t max_tokens = 0;
    int dropped = 0;
    // min_size larger than the queue: nothing.
    assert_int_equal(queue_next_batch(q, 6, 1000, 1000, batch, 8, &max_tokens, &dropped), 0);
    // Prefill budget 50: entries 0 and 1 fit (30), 2 is dropped (client gone), 3 (100) stops
    // the scan even though 4 would fit (strict FIFO).
    int n = queue_next_batch(q, 0, 50, 1000, batch, 8, &max_tokens, &dropped);
    assert_int_equal(n, 2);
    assert_int_equal(dropped, 1);
    assert_int_equal(max_tokens, 50);
    assert_int_equal(batch[0]->id, 0);
    assert_int_equal(batch[1]->id, 1);
    queue_entry_free(batch[0]);
    queue_entry_free(batch[1]);
    // min_size 2 with only one fitting: everything goes back, in order.
    assert_int_equal(queue_next_batch(q, 2, 1000, 111, batch, 8, &max_tokens, &dropped), 0);
    assert_int_equal(queue_len(q), 2);
    // Total budget counts input + max_new_tokens.
    n = queue_next_batch(q, 0, 1000, 112, batch, 8, &max_tokens, &dropped);
    assert_int_equal(n, 2);
    assert_int_equal(batch[0]->id, 3);
    assert_int_equal(batch[1]->id, 4);
    queue_entry_free(batch[0]);
    queue_entry_free(batch[1]);
    assert_int_equal(queue_len(q), 0);
    queue_close(q);
    assert_false(queue_wait(q));
    queue_entry *late = queue_entry_create(fake_request(1, 1), (gen_sink){.send = send_discard});
    assert_false(queue_append(q, late));
    queue_entry_free(late);
    queue_free(q, "shutting down");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_sampled),
        cmocka_unit_test(test_messages_and_order),
        cmocka_unit_test(test_best_of_and_lengths),
        cmocka_unit_test(test_queue_budgets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
