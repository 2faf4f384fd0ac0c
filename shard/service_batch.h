// The shard's cache of batches by id: each batch is an ordered list of running seq_requests
// (their KV blocks reserved). Prefill adds a batch, Decode merges and steps batches, FilterBatch
// drops requests, ClearCache drops batches.
#pragma once
#include <stdint.h>

#include "shard/engine/generation.h"

typedef struct sbatch {
    uint64_t id;
    seq_request **reqs; // [n] in batch order
    int n, cap;
    int prefill_chunk; // prompt tokens per forward step, from the Prefill's Batch (0: no limit)
} sbatch;

typedef struct batch_cache {
    sbatch **batches; // [n]
    int n, cap;
} batch_cache;

sbatch *sbatch_create(uint64_t id, int cap);
// Frees the batch and every request in it (releasing their KV blocks).
void sbatch_free(sbatch *b, kv_cache *kv);
// Appends every request of src to dst (src is left empty).
fl_code sbatch_absorb(sbatch *dst, sbatch *src, fl_error *err);
// Keeps the requests whose ids are in keep [n_keep], in batch order; frees the others.
// FL_ENOTFOUND (nothing changed) when a kept id is not in the batch.
fl_code sbatch_filter(sbatch *b, kv_cache *kv, const uint64_t *keep, int n_keep, fl_error *err);
// KV tokens reserved by the batch (blocks * KV_BLOCK_SIZE).
uint32_t sbatch_reserved_tokens(const sbatch *b);

sbatch *batch_cache_get(batch_cache *c, uint64_t id);
fl_code batch_cache_put(batch_cache *c, sbatch *b, fl_error *err); // FL_EINVAL on a duplicate id
// Removes the batch from the cache without freeing it; NULL when absent.
sbatch *batch_cache_take(batch_cache *c, uint64_t id);
// Frees every cached batch.
void batch_cache_clear(batch_cache *c, kv_cache *kv);
