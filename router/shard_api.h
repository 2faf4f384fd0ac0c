// The batcher's view of the shards (proto/shard.proto in plain C): shard_client implements it
// over gRPC with fan-out to every rank; unit tests implement it with a fake model.
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "common/status.h"
#include "router/request.h"

// One request of a prefill batch. input_ids and params point into the queue entry's request.
typedef struct shard_request {
    uint64_t id;
    const int32_t *input_ids; // [n_input]
    int n_input;
    const gen_params *params;
} shard_request;

typedef struct shard_batch {
    uint64_t id;
    shard_request *requests; // [n]
    int n;
    uint32_t max_tokens; // sum of input lengths + sum of max_new_tokens
    // Chunked prefill: prompt tokens per forward step of this batch and the cached batch it
    // becomes (0: whole prompts at Prefill). A request whose prompt is not all in yet gets no
    // generation from a step.
    uint32_t prefill_chunk_tokens;
} shard_batch;

// A batch cached in the shards.
typedef struct cached_batch {
    uint64_t id;
    uint64_t *request_ids; // [n], owned
    int n;
    uint32_t max_tokens; // KV tokens reserved (blocks * block size)
} cached_batch;

void cached_batch_clear(cached_batch *b);

// One request's output of one step.
typedef struct shard_generation {
    uint64_t request_id;
    uint32_t *prefill_ids;   // [n_prefill] prompt ids, when prefill logprobs were asked; owned
    float *prefill_logprobs; // [n_prefill] (the first is NaN), owned
    int n_prefill;
    uint32_t token_id;
    float token_logprob;
    bool token_is_special;
    bool finished; // the shard ended the request and dropped it from the cached batch
    finish_reason finish;
    uint32_t generated_tokens;
    bool sampled;
    uint64_t seed;
} shard_generation;

typedef struct shard_step {
    shard_generation *gens; // [n_gens], owned
    int n_gens;
    bool has_batch; // false: every request of the step finished
    cached_batch batch;
} shard_step;

void shard_step_clear(shard_step *s);

// What the shards report about themselves (rank 0's Info).
typedef struct shard_info {
    char dtype[32];       // the checkpoint's: "float16" / "bfloat16" / "float32"
    char device_type[16]; // "cpu" / "cuda"
    char model_type[32];
    uint32_t vocab_size, eos_token_id, rank, world_size, block_size, max_total_tokens;
    uint32_t free_tokens; // KV tokens free now (whole blocks; prefix-cache blocks no request holds)
} shard_info;

typedef struct shard_api {
    void *self;
    fl_code (*prefill)(void *self, const shard_batch *batch, shard_step *out, fl_error *err);
    // Decode in two halves so the router can deliver the previous step's tokens while the
    // shards compute this one: decode_start sends the step and returns; decode_finish waits for
    // its result. Each successful start is followed by exactly one finish, with no other call
    // between them. A failed start needs no finish.
    fl_code (*decode_start)(void *self, const cached_batch *batches, int n, fl_error *err);
    fl_code (*decode_finish)(void *self, shard_step *out, fl_error *err);
    // Keeps only keep[n_keep] (n_keep >= 1) of the cached batch; *out is the filtered batch.
    fl_code (*filter)(void *self, uint64_t batch_id, const uint64_t *keep, int n_keep,
                      cached_batch *out, fl_error *err);
    // Drops one cached batch.
    fl_code (*clear)(void *self, uint64_t batch_id, fl_error *err);
} shard_api;
