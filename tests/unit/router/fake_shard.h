// A fake shard for router unit tests: an "echo model" whose k-th generated token is the prompt's
// token k (cycling), so every request's output is known and independent of batching. It keeps
// TGI's KV bookkeeping (blocks of 16 reserved at prefill, freed on finish / filter / clear) and
// fails a prefill that would exceed its capacity, so budget bugs in the batcher show up. With a
// batch's prefill_chunk_tokens set it ingests prompts in chunks as the real shard does: at most
// that many prompt tokens per step across the batch, in batch order, and no generation for a
// request until the step that takes its last chunk.
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "common/tokenizer.h"
#include "router/shard_api.h"

#define FAKE_EOS 11

typedef struct fake_req {
    uint64_t id;
    int32_t *ids;
    int n_input;
    uint32_t max_new;
    uint32_t generated;
    uint32_t reserved;
    uint32_t prefilled; // prompt tokens ingested
    bool details;       // decoder_input_details: prompt logprobs with the first token
    bool sampled;
    uint64_t seed;
} fake_req;

typedef struct fake_batch {
    uint64_t id;
    fake_req *reqs;
    int n;
    bool live;
    uint32_t chunk; // prompt tokens per step (0: whole prompts)
} fake_batch;

typedef struct fake_shard {
    shard_api api;
    fake_batch batches[64];
    int n_batches;
    uint32_t capacity;     // KV tokens
    uint32_t reserved;     // KV tokens in use
    uint32_t max_reserved; // high-water mark
    int n_prefill, n_decode, n_filter, n_clear;
    int max_prefill_size; // largest prefill batch seen
    int max_decode_batches;
    int decodes_before_prefill[16]; // n_decode when each prefill arrived
    int watch_at_prefill[16];       // *watch when each prefill arrived
    uint32_t max_step_prompt;       // most prompt tokens ingested in one step
    int n_partial;                  // request-steps that ingested a chunk but gave no token
    const int *watch;               // optional: a counter the test advances (tokens delivered)
    int watch_at_decode[64];        // *watch when each decode_start arrived
    bool decoding;                  // a decode_start awaits its decode_finish
    shard_step decoded;             // its result
    int32_t fail_prefill_token;     // a prompt containing this id fails its prefill (-1: never)
    uint64_t filtered_out[256];     // request ids removed by FilterBatch
    int n_filtered_out;
} fake_shard;

void fake_shard_init(fake_shard *f, uint32_t capacity);

// The tokenizer the router tests share ($FL_TEST_DATA/golden/data/tokenizer), loaded by the
// cmocka group setup fake_tok_setup (-1, with a message on stderr, when it cannot be) and freed
// by fake_tok_teardown.
extern tokenizer *fake_tok;
int fake_tok_setup(void **state);
int fake_tok_teardown(void **state);

// A validated-looking request for prompt, encoded with fake_tok: TGI's defaults (greedy, no
// penalty), max_new tokens, truncate 1024, best_of 1, and the stop sequence stop when not NULL.
// NULL when out of memory or the prompt does not encode.
gen_request *fake_gen_request(const char *prompt, uint32_t max_new, const char *stop);
