// Plain-C forms of the shard RPC messages (proto/shard.proto), so that only pb_convert.c sees
// generated protobuf-c types.
#pragma once
#include <stdint.h>

#include "shard/engine/generation.h"

typedef struct svc_request { // shard.proto Request
    uint64_t id;
    int32_t *input_ids; // [n_input]
    int n_input;
    seq_params params; // params.stop_ids points at stop_ids
    int32_t *stop_ids; // [params.n_stop_ids]
    int watermark;     // rejected: not supported
} svc_request;

typedef struct svc_batch { // shard.proto Batch
    uint64_t id;
    svc_request *reqs; // [n]
    int n;
    int prefill_chunk; // prompt tokens per forward step (0: whole prompts)
} svc_batch;

void svc_batch_clear(svc_batch *b);

typedef struct svc_generation { // shard.proto Generation
    uint64_t request_id;
    int32_t token;
    float logprob;
    int is_special;
    // Prompt ids and logprobs (borrowed from the request) when it asked for them; else n_prefill 0.
    const int32_t *prefill_ids;
    const float *prefill_logprobs;
    int n_prefill;
    gen_finish finish; // GEN_RUNNING: no GenerationEnd
    int generated_tokens;
    int sampled;
    uint64_t seed;
} svc_generation;

typedef struct svc_cached_batch { // shard.proto CachedBatch
    uint64_t id;
    const uint64_t *request_ids; // [n]
    int n;
    uint32_t max_tokens; // reserved KV tokens (blocks * KV_BLOCK_SIZE)
} svc_cached_batch;

typedef struct svc_step { // shard.proto PrefillResponse / DecodeResponse
    svc_generation *gens; // [n_gens]
    int n_gens;
    int has_batch; // 0: every request finished
    svc_cached_batch batch;
    uint32_t prefix_lookup_tokens, prefix_hit_tokens; // Prefill only: summed over the batch
} svc_step;

typedef struct svc_info { // shard.proto InfoResponse
    const char *dtype, *device_type, *model_type, *rope_scaling;
    uint32_t vocab_size, eos_token_id, rank, world_size, block_size;
    uint32_t max_total_tokens, free_tokens, max_position_embeddings;
} svc_info;
