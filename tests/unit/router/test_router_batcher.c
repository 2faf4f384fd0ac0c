// The continuous-batching loop against a fake echo shard: results, finish reasons, stop
// sequences, token budgets, newcomers joining a running batch, client disconnects and failed
// prefills, each request getting exactly one terminal event; chunked prefill (budgets, streams
// that keep going while a long prompt is ingested, clients leaving mid-prefill).
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
#include "router/batcher.h"

static int delivered; // TOKEN and END events received by all sinks

// What one request's sink received.
typedef struct result {
    char text[4096]; // concatenated token texts
    int n_tokens;    // TOKEN + END events
    int n_prefill;
    int n_terminal;
    bool ended, failed, released;
    gen_error_kind error_kind;
    char error[512];
    char generated_text[4096];
    finish_reason finish;
    uint32_t generated_tokens;
    bool has_seed;
    int disconnect_after; // > 0: the client goes away after this many tokens
    int first_at;         // `delivered` when the first token arrived (before counting it)
    const int *die_when;  // optional: the client goes away once *die_when >= die_at
    int die_at;
} result;

static bool res_send(void *user, gen_event *ev) {
    result *r = user;
    switch (ev->kind) {
    case GEN_EVENT_PREFILL:
        r->n_prefill = ev->n_prefill;
        break;
    case GEN_EVENT_TOKEN:
    case GEN_EVENT_END:
        if (r->n_tokens == 0) r->first_at = delivered;
        delivered++;
        r->n_tokens++;
        strncat(r->text, ev->token.text, sizeof r->text - strlen(r->text) - 1);
        if (ev->kind == GEN_EVENT_END) {
            r->ended = true;
            r->n_terminal++;
            snprintf(r->generated_text, sizeof r->generated_text, "%s", ev->generated_text);
            r->finish = ev->finish;
            r->generated_tokens = ev->generated_tokens;
            r->has_seed = ev->has_seed;
        }
        break;
    case GEN_EVENT_ERROR:
        r->failed = true;
        r->n_terminal++;
        r->error_kind = ev->error_kind;
        snprintf(r->error, sizeof r->error, "%s", ev->error);
        break;
    }
    gen_event_free(ev);
    return !(r->disconnect_after > 0 && r->n_tokens >= r->disconnect_after);
}

static bool res_alive(void *user) {
    result *r = user;
    if (r->die_when && *r->die_when >= r->die_at) return false;
    return !(r->disconnect_after > 0 && r->n_tokens >= r->disconnect_after);
}

static void res_release(void *user) {
    ((result *)user)->released = true;
}

static void submit_ex(queue *q, result *r, const char *prompt, uint32_t max_new, const char *stop,
                      bool prefill_details) {
    gen_request *req = fake_gen_request(prompt, max_new, stop);
    assert_non_null(req);
    req->params.decoder_input_details = prefill_details;
    gen_sink sink = {.send = res_send, .alive = res_alive, .release = res_release, .user = r};
    assert_true(queue_append(q, queue_entry_create(req, sink)));
}

static void submit(queue *q, result *r, const char *prompt, uint32_t max_new, const char *stop) {
    submit_ex(q, r, prompt, max_new, stop, false);
}

static batcher_config default_cfg(void) {
    return (batcher_config){.max_batch_prefill_tokens = 4096,
                            .max_batch_total_tokens = 16000,
                            .waiting_served_ratio = 1.2f,
                            .max_waiting_tokens = 20,
                            .max_batch_requests = 128};
}

typedef struct fixture {
    fake_shard shard;
    queue *q;
    batcher *b;
} fixture;

static void fixture_init(fixture *f, batcher_config cfg, uint32_t capacity) {
    fake_shard_init(&f->shard, capacity);
    f->q = queue_create();
    assert_int_equal(batcher_create(&cfg, f->q, &f->shard.api, fake_tok, &f->b, NULL), FL_OK);
}

static void fixture_free(fixture *f) {
    batcher_free(f->b);
    queue_free(f->q, "bye");
    assert_int_equal(f->shard.reserved, 0); // every KV block came back
}

static void test_single_request(void **state) {
    fixture f;
    fixture_init(&f, default_cfg(), 16000);
    result r = {0};
    submit(f.q, &r, "Hello world", 6, NULL);
    batcher_run_until_idle(f.b);
    assert_true(r.ended && r.released);
    assert_int_equal(r.n_terminal, 1);
    assert_int_equal(r.finish, FINISH_LENGTH);
    assert_int_equal(r.generated_tokens, 6);
    assert_int_equal(r.n_tokens, 6);
    // The echo model repeats the prompt, so the output starts with it.
    assert_memory_equal(r.text, "Hello world", 11);
    assert_string_equal(r.generated_text, r.text);
    assert_false(r.has_seed);
    assert_int_equal(f.shard.n_prefill, 1);
    assert_int_equal(f.shard.n_decode, 5);
    fixture_free(&f);
}

// Each Decode goes to the shards before the previous step's token is delivered, so delivery
// (detokenization, stop sequences, client writes) overlaps the shards' next step.
static void test_decode_overlaps_delivery(void **state) {
    fixture f;
    fixture_init(&f, default_cfg(), 16000);
    delivered = 0;
    f.shard.watch = &delivered;
    result r = {0};
    submit(f.q, &r, "Hello world", 6, NULL);
    batcher_run_until_idle(f.b);
    assert_int_equal(r.n_tokens, 6);
    assert_int_equal(f.shard.n_decode, 5);
    // The prefill's token goes out before the first Decode; after that, each Decode is sent
    // while its predecessor's token is still undelivered.
    int want[5] = {1, 1, 2, 3, 4};
    for (int i = 0; i < 5; i++)
        assert_int_equal(f.shard.watch_at_decode[i], want[i]);
    fixture_free(&f);
}

static void test_eos_and_stop_sequence(void **state) {
    fixture f;
    fixture_init(&f, default_cfg(), 16000);
    result eos = {0}, stop = {0}, other = {0};
    submit(f.q, &eos, "a b<|endoftext|>", 10, NULL);
    submit(f.q, &stop, "one two three", 30, " two");
    submit(f.q, &other, "keep going", 8, NULL);
    batcher_run_until_idle(f.b);
    assert_true(eos.ended && stop.ended && other.ended);
    assert_int_equal(eos.finish, FINISH_EOS_TOKEN);
    assert_string_equal(eos.generated_text, "a b"); // EOS is skipped in the final text
    assert_string_equal(eos.text, "a b<|endoftext|>");
    assert_int_equal(stop.finish, FINISH_STOP_SEQUENCE);
    assert_string_equal(stop.generated_text, "one two"); // the stop sequence stays in the text
    assert_int_equal(stop.generated_tokens, 2);
    // The shards computed one token more while "two" was delivered; the client never sees it.
    assert_int_equal(stop.n_tokens, 2);
    assert_string_equal(stop.text, "one two");
    assert_int_equal(other.generated_tokens, 8);
    // The router stopped "stop" itself, so it had to filter it out of the shards' batch.
    assert_int_equal(f.shard.n_filter, 1);
    fixture_free(&f);
}

// Request i of the 16 mixed requests of the tests below: four prompts, 3..25 new tokens, every
// fifth with the stop sequence "o", every third with prompt logprobs when details is set.
static void submit_mixed(queue *q, result *r, int i, bool details) {
    static const char *const prompts[4] = {"The quick brown fox", "jumps",
                                           "over the lazy dog 12345", "!"};
    submit_ex(q, r, prompts[i % 4], 3 + (uint32_t)(i * 7) % 23, i % 5 == 0 ? "o" : NULL,
              details && i % 3 == 0);
}

// a ended exactly once with b's outcome.
static void assert_same_result(const result *a, const result *b) {
    assert_true(a->ended);
    assert_int_equal(a->n_terminal, 1);
    assert_string_equal(a->generated_text, b->generated_text);
    assert_int_equal(a->finish, b->finish);
    assert_int_equal(a->generated_tokens, b->generated_tokens);
    assert_int_equal(a->n_prefill, b->n_prefill);
}

// 16 mixed requests submitted together give the same results as each one alone.
static void test_concurrent_equals_solo(void **state) {
    result solo[16], together[16];
    memset(solo, 0, sizeof solo);
    memset(together, 0, sizeof together);
    for (int i = 0; i < 16; i++) {
        fixture f;
        fixture_init(&f, default_cfg(), 16000);
        submit_mixed(f.q, &solo[i], i, false);
        batcher_run_until_idle(f.b);
        fixture_free(&f);
    }
    fixture f;
    batcher_config cfg = default_cfg();
    cfg.max_batch_total_tokens = 150;     // forces several prefills and newcomers joining later
    fixture_init(&f, cfg, 150 + 16 * 16); // slack for block rounding, as TGI's warmup adds
    for (int i = 0; i < 16; i++)
        submit_mixed(f.q, &together[i], i, false);
    batcher_run_until_idle(f.b);
    for (int i = 0; i < 16; i++)
        assert_same_result(&together[i], &solo[i]);
    assert_true(f.shard.n_prefill > 1);
    assert_true(f.shard.max_decode_batches == 2); // newcomers were decoded with the running batch
    assert_true(f.shard.max_reserved <= 150 + 16 * 16);
    fixture_free(&f);
}

// A newcomer joins a running batch of 2 only when floor(2 * waiting_served_ratio) requests wait,
// or once max_waiting_tokens decode steps have passed (TGI batching_task).
static void test_waiting_served_ratio(void **state) {
    int32_t *ids = NULL;
    int n = 0;
    assert_int_equal(tokenizer_encode(fake_tok, "Hello world", 11, &ids, &n, NULL), FL_OK);
    free(ids);
    float ratios[2] = {1.2f, 0.5f};
    int joined_after[2] = {4, 0}; // decode steps before the newcomer's prefill
    for (int k = 0; k < 2; k++) {
        fixture f;
        batcher_config cfg = default_cfg();
        cfg.max_batch_prefill_tokens = (uint32_t)(2 * n); // the first prefill takes two
        cfg.waiting_served_ratio = ratios[k];
        cfg.max_waiting_tokens = 5;
        fixture_init(&f, cfg, 16000);
        result r[3];
        memset(r, 0, sizeof r);
        for (int i = 0; i < 3; i++)
            submit(f.q, &r[i], "Hello world", 20, NULL);
        batcher_run_until_idle(f.b);
        for (int i = 0; i < 3; i++)
            assert_true(r[i].ended);
        assert_int_equal(f.shard.n_prefill, 2);
        assert_int_equal(f.shard.decodes_before_prefill[1], joined_after[k]);
        fixture_free(&f);
    }
}

static void test_disconnect_frees_blocks(void **state) {
    fixture f;
    fixture_init(&f, default_cfg(), 16000);
    result gone = {.disconnect_after = 2}, stays = {0};
    submit(f.q, &gone, "some long prompt here", 50, NULL);
    submit(f.q, &stays, "short", 10, NULL);
    batcher_run_until_idle(f.b);
    assert_false(gone.ended);
    assert_false(gone.failed);
    assert_true(gone.released);
    assert_int_equal(gone.n_tokens, 2);
    assert_true(stays.ended);
    assert_int_equal(stays.generated_tokens, 10);
    assert_int_equal(f.shard.n_filtered_out, 1);
    assert_int_equal(f.shard.filtered_out[0], 0); // the first request's id
    fixture_free(&f);
}

static void test_failed_prefill_spares_running_batch(void **state) {
    fixture f;
    fixture_init(&f, default_cfg(), 16000);
    int32_t *ids = NULL;
    int n = 0;
    assert_int_equal(tokenizer_encode(fake_tok, "!", 1, &ids, &n, NULL), FL_OK);
    f.shard.fail_prefill_token = ids[0];
    free(ids);
    result ok = {0}, bad = {0};
    submit(f.q, &ok, "fine", 5, NULL);
    batcher_run_until_idle(f.b);
    submit(f.q, &bad, "bad!", 5, NULL);
    batcher_run_until_idle(f.b);
    assert_true(ok.ended);
    assert_true(bad.failed);
    assert_int_equal(bad.error_kind, GEN_ERR_GENERATION);
    assert_string_equal(bad.error, "Request failed during generation: injected failure");
    assert_false(batcher_healthy(f.b));
    result again = {0};
    submit(f.q, &again, "fine", 5, NULL);
    batcher_run_until_idle(f.b);
    assert_true(again.ended);
    assert_true(batcher_healthy(f.b));
    fixture_free(&f);
}

static void test_prefill_logprobs(void **state) {
    fixture f;
    fixture_init(&f, default_cfg(), 16000);
    result plain = {0}, with = {0};
    submit(f.q, &plain, "Hello world", 2, NULL);
    submit_ex(f.q, &with, "Hello world", 2, NULL, true);
    batcher_run_until_idle(f.b);
    assert_int_equal(plain.n_prefill, 0);
    assert_int_equal(with.n_prefill, 4);
    assert_string_equal(with.generated_text, plain.generated_text);
    fixture_free(&f);
}

static batcher_config chunked_cfg(uint32_t chunk) {
    batcher_config cfg = default_cfg();
    cfg.prefill_chunk_tokens = chunk;
    return cfg;
}

// A prompt of n_words words ("w0 w1 ...") for long requests.
static char *long_prompt(int n_words) {
    char *p = calloc((size_t)n_words, 8);
    for (int i = 0; i < n_words; i++)
        sprintf(p + strlen(p), "%sw%d", i ? " " : "", i);
    return p;
}

// A long prompt arriving while a short stream runs: with chunking the short stream keeps
// receiving tokens while the long prompt is ingested; without, it gets none between the long
// request's Prefill and its first token. Outputs are the same either way.
static void test_chunked_prefill_keeps_streams_going(void **state) {
    char *prompt = long_prompt(60);
    int32_t *ids = NULL;
    int n_long = 0;
    assert_int_equal(tokenizer_encode(fake_tok, prompt, strlen(prompt), &ids, &n_long, NULL),
                     FL_OK);
    free(ids);
    assert_true(n_long > 64);
    result runs[2][2]; // [chunk off, on][short, long]
    memset(runs, 0, sizeof runs);
    int between[2];
    for (int k = 0; k < 2; k++) {
        fixture f;
        batcher_config cfg = chunked_cfg(k ? 16 : 0);
        cfg.max_batch_prefill_tokens = (uint32_t)n_long; // the long one cannot join the first
        fixture_init(&f, cfg, 16000);
        delivered = 0;
        f.shard.watch = &delivered;
        result *shrt = &runs[k][0], *lng = &runs[k][1];
        submit(f.q, shrt, "Hello world", 40, NULL);
        submit(f.q, lng, prompt, 5, NULL);
        batcher_run_until_idle(f.b);
        assert_true(shrt->ended && lng->ended);
        assert_int_equal(f.shard.n_prefill, 2);
        // Tokens delivered from the long request's Prefill to its first token: the short
        // stream's (the long one has none before its first).
        between[k] = lng->first_at - f.shard.watch_at_prefill[1];
        if (k) {
            assert_true(f.shard.max_step_prompt <= 16);
            assert_int_equal(f.shard.n_partial, (n_long + 15) / 16 - 1);
        } else {
            assert_int_equal(f.shard.n_partial, 0);
        }
        fixture_free(&f);
    }
    assert_int_equal(between[0], 0);
    assert_true(between[1] >= (n_long + 15) / 16 - 2);
    for (int i = 0; i < 2; i++) {
        assert_string_equal(runs[1][i].generated_text, runs[0][i].generated_text);
        assert_int_equal(runs[1][i].n_tokens, runs[0][i].n_tokens);
    }
    free(prompt);
}

// The mixed workload of test_concurrent_equals_solo, some with prompt logprobs, with a chunk
// budget of 3 prompt tokens per step: same results, the budget held in every step.
static void test_chunked_equals_unchunked(void **state) {
    result plain[16], chunked[16];
    memset(plain, 0, sizeof plain);
    memset(chunked, 0, sizeof chunked);
    for (int k = 0; k < 2; k++) {
        result *res = k ? chunked : plain;
        fixture f;
        batcher_config cfg = chunked_cfg(k ? 3 : 0);
        cfg.max_batch_total_tokens = 150;
        fixture_init(&f, cfg, 150 + 16 * 16);
        for (int i = 0; i < 16; i++)
            submit_mixed(f.q, &res[i], i, true);
        batcher_run_until_idle(f.b);
        if (k) {
            assert_true(f.shard.max_step_prompt <= 3);
            assert_true(f.shard.n_partial > 0);
        }
        fixture_free(&f);
    }
    for (int i = 0; i < 16; i++)
        assert_same_result(&chunked[i], &plain[i]);
}

// A client that leaves while its prompt is still being chunked in gets no event and its request
// is filtered out of the shards' batch (its KV blocks come back: fixture_free checks).
static void test_chunked_disconnect_while_prefilling(void **state) {
    fixture f;
    fixture_init(&f, chunked_cfg(4), 16000);
    char *prompt = long_prompt(30);
    result gone = {0}, stays = {0};
    gone.die_when = &f.shard.n_decode;
    gone.die_at = 2;
    submit(f.q, &stays, "short", 10, NULL);
    submit(f.q, &gone, prompt, 5, NULL);
    batcher_run_until_idle(f.b);
    assert_true(stays.ended);
    assert_int_equal(stays.generated_tokens, 10);
    assert_true(gone.released);
    assert_int_equal(gone.n_tokens, 0);
    assert_int_equal(gone.n_terminal, 0);
    assert_int_equal(f.shard.n_filtered_out, 1);
    assert_int_equal(f.shard.filtered_out[0], 1); // the second request's id
    fixture_free(&f);
    free(prompt);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_request),
        cmocka_unit_test(test_decode_overlaps_delivery),
        cmocka_unit_test(test_eos_and_stop_sequence),
        cmocka_unit_test(test_concurrent_equals_solo),
        cmocka_unit_test(test_waiting_served_ratio),
        cmocka_unit_test(test_disconnect_frees_blocks),
        cmocka_unit_test(test_failed_prefill_spares_running_batch),
        cmocka_unit_test(test_prefill_logprobs),
        cmocka_unit_test(test_chunked_prefill_keeps_streams_going),
        cmocka_unit_test(test_chunked_equals_unchunked),
        cmocka_unit_test(test_chunked_disconnect_while_prefilling),
    };
    return cmocka_run_group_tests(tests, fake_tok_setup, fake_tok_teardown);
}
