// Paged KV cache: one pool of KV_BLOCK_SIZE-token blocks per layer on the backend, and a block
// allocator. A sequence owns a block table; blocks are reserved when a sequence is admitted
// (prompt + max new tokens, as TGI reserves at prefill) and returned when it is freed.
#pragma once
#include <stdint.h>

#include "common/status.h"
#include "kernels/backend.h"

typedef struct kv_cache {
    backend *be;
    int n_layer, n_head_kv, head_dim;
    int n_blocks;      // blocks per layer
    void **k;          // [n_layer] -> [n_blocks, n_head_kv, KV_BLOCK_SIZE, head_dim] (act_dtype)
    void **v;          // [n_layer] -> same shape
    int32_t *free_ids; // stack of free block ids
    int n_free;
} kv_cache;

// A sequence's place in the cache.
typedef struct kv_seq {
    int32_t *blocks; // [n_blocks] block ids in order
    int n_blocks;    // reserved blocks
    int n_tokens;    // tokens whose K/V are stored (the next token goes to position n_tokens)
} kv_seq;

fl_code kv_cache_create(backend *be, int n_layer, int n_head_kv, int head_dim, int n_blocks,
                        kv_cache **out, fl_error *err);
void kv_cache_free(kv_cache *kv);
// Bytes one cached token costs across all layers (K and V).
size_t kv_cache_bytes_per_token(const kv_cache *kv);

// Reserves blocks so that seq can hold n_tokens_total tokens. FL_ECAPACITY when the pool is short
// (nothing is taken then).
fl_code kv_seq_reserve(kv_cache *kv, kv_seq *seq, int n_tokens_total, fl_error *err);
// Returns all of seq's blocks to the pool and resets it.
void kv_seq_release(kv_cache *kv, kv_seq *seq);
int kv_cache_free_blocks(const kv_cache *kv);
