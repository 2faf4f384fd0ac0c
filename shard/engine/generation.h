// Request-level generation over the model: a seq_request owns a prompt, its sampler, its KV
// blocks and what it has generated; gen_batch_step advances any set of requests by one token
// with ONE ragged model_forward (new requests prefill their prompt, running ones decode), then
// samples each and applies TGI's stopping criteria (length, then EOS, then stop token ids).
// The CLI drives one request; the shard service drives TGI-style batches.
#pragma once
#include <stdint.h>

#include "common/status.h"
#include "shard/engine/kv_cache.h"
#include "shard/engine/model.h"
#include "shard/engine/sampler.h"

typedef enum gen_finish {
    GEN_RUNNING = 0,
    GEN_FINISH_LENGTH, // max_new_tokens reached
    GEN_FINISH_EOS,    // generated eos_id (unless ignore_eos)
    GEN_FINISH_STOP,   // generated one of stop_ids
} gen_finish;

typedef struct seq_params {
    sampling_params sampling;
    int max_new_tokens;      // >= 1
    int32_t eos_id;          // -1: none
    int ignore_eos;          // keep going past EOS (benchmarks)
    const int32_t *stop_ids; // [n_stop_ids] copied at creation
    int n_stop_ids;
    int prompt_logprobs; // also compute the logprob of every prompt token at prefill
} seq_params;

typedef struct seq_request {
    uint64_t id;       // caller's request id (logs)
    seq_params params; // stop_ids points to the request's own copy
    int n_prompt;
    int32_t *tokens; // [n_prompt + max_new_tokens] the prompt, then the generated ids
    int n_generated;
    float *logprobs;        // [max_new_tokens] logprob of each generated token (sampler.h)
    float *prompt_logprobs; // [n_prompt] when params.prompt_logprobs: NaN for the first token
    gen_finish finish;
    kv_seq kv; // blocks reserved at creation, released by seq_request_free
    // Prefix cache (kv_cache.h): prompt tokens looked up (n_prompt, or 0 when the cache is off or
    // the request wants prompt logprobs, which need every prompt token computed) and reused (the
    // prefill computes only the n_prompt - n_prefix_hit tokens after them).
    int n_prefix_lookup, n_prefix_hit;
    sampler *sampler;
} seq_request;

// Copies the prompt and reserves KV blocks for n_prompt + max_new_tokens - 1 tokens (the last
// generated token is never fed back, as TGI reserves); FL_ECAPACITY when the pool is short.
// With kv's prefix cache on, the longest cached block prefix of the prompt (at most
// n_prompt - 1 tokens, rotated with the base this prompt's prefill uses) is taken from the cache
// first. n_vocab comes from m's config.
fl_code seq_request_create(const model *m, kv_cache *kv, uint64_t id, const int32_t *prompt,
                           int n_prompt, const seq_params *p, seq_request **out, fl_error *err);
// Releases the request's KV blocks and frees it.
void seq_request_free(kv_cache *kv, seq_request *r);

// The last generated token (valid when n_generated > 0).
static inline int32_t seq_request_last_token(const seq_request *r) {
    return r->tokens[r->n_prompt + r->n_generated - 1];
}

// True while the request has not produced its first token: its prompt (or the part of it not yet
// in r->kv, which holds r->kv.n_tokens prompt tokens) is still to be prefilled.
static inline int seq_request_prefilling(const seq_request *r) {
    return r->n_generated == 0;
}

// Advances every request of reqs [n] by one token in one model_forward call: a request with no
// generated token yet prefills its prompt (after its cached prefix) and publishes its full prompt
// blocks to the prefix cache, the others decode their last token. All must
// be running (finish == GEN_RUNNING). Afterwards each has one more token and logprob and, when
// it stopped, its finish reason set. Same as gen_batch_step_chunked with no prefill budget.
fl_code gen_batch_step(model *m, kv_cache *kv, seq_request **reqs, int n, fl_error *err);

// One step of a mixed batch with chunked prefill, in one model_forward call: decoding requests
// advance by one token; prefilling requests, in batch order, take the next chunk of their prompt
// from a budget of prefill_budget prompt tokens for the whole step (0: no limit, whole prompts),
// so a long prompt is ingested over several steps while the others keep decoding. A request
// whose prompt completes in this step samples its first token; one that got a partial chunk (or
// none, the budget being spent) stays prefilling with no new token. Prompt logprobs are
// computed chunk by chunk and complete once the first token is out. Every token and logprob is
// the same as with whole-prompt prefill (each chunk rotates with the full prompt's base).
fl_code gen_batch_step_chunked(model *m, kv_cache *kv, seq_request **reqs, int n,
                               int prefill_budget, fl_error *err);
