#include "fake_shard.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t blocks_tokens(uint32_t n) {
    return (n + 15) / 16 * 16;
}

static fake_batch *find_batch(fake_shard *f, uint64_t id) {
    for (int i = 0; i < f->n_batches; i++)
        if (f->batches[i].live && f->batches[i].id == id) return &f->batches[i];
    return NULL;
}

static void req_release(fake_shard *f, fake_req *r) {
    f->reserved -= r->reserved;
    free(r->ids);
    r->ids = NULL;
}

static void batch_drop(fake_shard *f, fake_batch *b) {
    for (int i = 0; i < b->n; i++)
        req_release(f, &b->reqs[i]);
    free(b->reqs);
    b->reqs = NULL;
    b->n = 0;
    b->live = false;
}

static void to_cached(const fake_batch *b, cached_batch *out) {
    out->id = b->id;
    out->n = b->n;
    out->request_ids = malloc(sizeof(uint64_t) * (size_t)(b->n ? b->n : 1));
    out->max_tokens = 0;
    for (int i = 0; i < b->n; i++) {
        out->request_ids[i] = b->reqs[i].id;
        out->max_tokens += b->reqs[i].reserved;
    }
}

// One token for every request of b whose prompt is in (prefilling requests first take their
// chunk of the step's budget); finished requests leave the batch.
static void step(fake_shard *f, fake_batch *b, shard_step *out) {
    out->gens = calloc((size_t)b->n + 1, sizeof *out->gens);
    int kept = 0;
    uint32_t budget = b->chunk ? b->chunk : UINT32_MAX, taken = 0;
    for (int i = 0; i < b->n; i++) {
        fake_req *r = &b->reqs[i];
        uint32_t left = (uint32_t)r->n_input - r->prefilled, c = left < budget ? left : budget;
        r->prefilled += c;
        budget -= c;
        taken += c;
        if (r->prefilled < (uint32_t)r->n_input) { // still prefilling: no generation
            if (c > 0) f->n_partial++;
            b->reqs[kept++] = *r;
            continue;
        }
        bool first = r->generated == 0;
        shard_generation *g = &out->gens[out->n_gens++];
        g->request_id = r->id;
        g->token_id = (uint32_t)r->ids[r->generated % (uint32_t)r->n_input];
        g->token_logprob = -0.5f;
        r->generated++;
        if (first && r->details) {
            g->n_prefill = r->n_input;
            g->prefill_ids = malloc(sizeof(uint32_t) * (size_t)r->n_input);
            g->prefill_logprobs = malloc(sizeof(float) * (size_t)r->n_input);
            for (int k = 0; k < r->n_input; k++) {
                g->prefill_ids[k] = (uint32_t)r->ids[k];
                g->prefill_logprobs[k] = k == 0 ? NAN : -1.0f;
            }
        }
        if (r->generated >= r->max_new || g->token_id == FAKE_EOS) {
            g->finished = true;
            g->finish = r->generated >= r->max_new ? FINISH_LENGTH : FINISH_EOS_TOKEN;
            g->token_is_special = g->token_id == FAKE_EOS;
            g->generated_tokens = r->generated;
            g->sampled = r->sampled;
            g->seed = r->seed;
            req_release(f, r);
        } else {
            b->reqs[kept++] = *r;
        }
    }
    if (taken > f->max_step_prompt) f->max_step_prompt = taken;
    b->n = kept;
    if (kept == 0) {
        batch_drop(f, b);
        out->has_batch = false;
    } else {
        out->has_batch = true;
        to_cached(b, &out->batch);
    }
}

static fl_code fake_prefill(void *self, const shard_batch *batch, shard_step *out, fl_error *err) {
    fake_shard *f = self;
    assert(!f->decoding); // nothing may run between decode_start and decode_finish
    if (f->n_prefill < 16) f->decodes_before_prefill[f->n_prefill] = f->n_decode;
    if (f->watch && f->n_prefill < 16) f->watch_at_prefill[f->n_prefill] = *f->watch;
    f->n_prefill++;
    if (batch->n > f->max_prefill_size) f->max_prefill_size = batch->n;
    uint32_t need = 0;
    for (int i = 0; i < batch->n; i++) {
        const shard_request *r = &batch->requests[i];
        need += blocks_tokens((uint32_t)r->n_input + r->params->max_new_tokens);
        for (int k = 0; k < r->n_input; k++)
            if (r->input_ids[k] == f->fail_prefill_token)
                return fl_error_set(err, FL_EBACKEND, "injected failure");
    }
    if (f->reserved + need > f->capacity)
        return fl_error_set(err, FL_ECAPACITY, "out of KV cache blocks: asked %u, %u free", need,
                            f->capacity - f->reserved);
    fake_batch *b = &f->batches[f->n_batches++];
    memset(b, 0, sizeof *b);
    b->id = batch->id;
    b->live = true;
    b->n = batch->n;
    b->chunk = batch->prefill_chunk_tokens;
    b->reqs = calloc((size_t)batch->n, sizeof *b->reqs);
    for (int i = 0; i < batch->n; i++) {
        const shard_request *r = &batch->requests[i];
        fake_req *q = &b->reqs[i];
        q->id = r->id;
        q->n_input = r->n_input;
        q->ids = malloc(sizeof(int32_t) * (size_t)r->n_input);
        memcpy(q->ids, r->input_ids, sizeof(int32_t) * (size_t)r->n_input);
        q->max_new = r->params->max_new_tokens;
        q->reserved = blocks_tokens((uint32_t)r->n_input + q->max_new);
        q->details = r->params->decoder_input_details;
        q->sampled = r->params->do_sample;
        q->seed = r->params->seed;
    }
    f->reserved += need;
    if (f->reserved > f->max_reserved) f->max_reserved = f->reserved;
    step(f, b, out);
    return FL_OK;
}

// The step runs at start (as if the shard were instant); finish hands its result over.
static fl_code fake_decode_start(void *self, const cached_batch *batches, int n, fl_error *err) {
    fake_shard *f = self;
    if (f->watch && f->n_decode < 64) f->watch_at_decode[f->n_decode] = *f->watch;
    f->n_decode++;
    if (n > f->max_decode_batches) f->max_decode_batches = n;
    fake_batch *first = find_batch(f, batches[0].id);
    if (!first)
        return fl_error_set(err, FL_ENOTFOUND, "batch %llu not found",
                            (unsigned long long)batches[0].id);
    for (int i = 1; i < n; i++) {
        fake_batch *o = find_batch(f, batches[i].id);
        if (!o) return fl_error_set(err, FL_ENOTFOUND, "batch not found");
        first->reqs = realloc(first->reqs, sizeof(fake_req) * (size_t)(first->n + o->n));
        memcpy(first->reqs + first->n, o->reqs, sizeof(fake_req) * (size_t)o->n);
        first->n += o->n;
        free(o->reqs);
        o->reqs = NULL;
        o->n = 0;
        o->live = false;
    }
    assert(!f->decoding);
    memset(&f->decoded, 0, sizeof f->decoded);
    step(f, first, &f->decoded);
    f->decoding = true;
    return FL_OK;
}

static fl_code fake_decode_finish(void *self, shard_step *out, fl_error *err) {
    fake_shard *f = self;
    assert(f->decoding);
    f->decoding = false;
    *out = f->decoded;
    memset(&f->decoded, 0, sizeof f->decoded);
    return FL_OK;
}

static fl_code fake_filter(void *self, uint64_t batch_id, const uint64_t *keep, int n_keep,
                           cached_batch *out, fl_error *err) {
    fake_shard *f = self;
    assert(!f->decoding); // nothing may run between decode_start and decode_finish
    f->n_filter++;
    fake_batch *b = find_batch(f, batch_id);
    if (!b) return fl_error_set(err, FL_ENOTFOUND, "batch not found");
    int kept = 0;
    for (int i = 0; i < b->n; i++) {
        bool k = false;
        for (int j = 0; j < n_keep; j++)
            k = k || keep[j] == b->reqs[i].id;
        if (k) {
            b->reqs[kept++] = b->reqs[i];
        } else {
            if (f->n_filtered_out < 256) f->filtered_out[f->n_filtered_out++] = b->reqs[i].id;
            req_release(f, &b->reqs[i]);
        }
    }
    b->n = kept;
    to_cached(b, out);
    return FL_OK;
}

static fl_code fake_clear(void *self, uint64_t batch_id, fl_error *err) {
    fake_shard *f = self;
    assert(!f->decoding); // nothing may run between decode_start and decode_finish
    f->n_clear++;
    fake_batch *b = find_batch(f, batch_id);
    if (b) batch_drop(f, b);
    return FL_OK;
}

void fake_shard_init(fake_shard *f, uint32_t capacity) {
    memset(f, 0, sizeof *f);
    f->capacity = capacity;
    f->fail_prefill_token = -1;
    f->api.self = f;
    f->api.prefill = fake_prefill;
    f->api.decode_start = fake_decode_start;
    f->api.decode_finish = fake_decode_finish;
    f->api.filter = fake_filter;
    f->api.clear = fake_clear;
}

tokenizer *fake_tok;

int fake_tok_setup(void **state) {
    char path[1024];
    const char *dir = getenv("FL_TEST_DATA");
    snprintf(path, sizeof path, "%s/golden/data/tokenizer/tokenizer.json", dir ? dir : "tests");
    fl_error err;
    if (tokenizer_load(path, &fake_tok, &err) != FL_OK) {
        fprintf(stderr, "cannot load %s: %s\n", path, err.msg);
        return -1;
    }
    return 0;
}

int fake_tok_teardown(void **state) {
    tokenizer_free(fake_tok);
    fake_tok = NULL;
    return 0;
}

gen_request *fake_gen_request(const char *prompt, uint32_t max_new, const char *stop) {
    gen_request *req = calloc(1, sizeof *req);
    if (!req) return NULL;
    req->inputs = strdup(prompt);
    req->inputs_len = strlen(prompt);
    req->params.stop = calloc(1, sizeof(char *));
    if (!req->inputs || !req->params.stop ||
        tokenizer_encode(fake_tok, prompt, strlen(prompt), &req->input_ids, &req->n_input, NULL) !=
            FL_OK) {
        gen_request_free(req);
        return NULL;
    }
    req->params.temperature = req->params.repetition_penalty = 1.0f;
    req->params.top_p = req->params.typical_p = 1.0f;
    req->params.max_new_tokens = max_new;
    req->params.truncate = 1024;
    req->params.best_of = 1;
    if (stop) {
        req->params.stop[0] = strdup(stop);
        req->params.n_stop = 1;
    }
    return req;
}
