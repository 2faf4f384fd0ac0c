// Paged KV cache: one pool of KV_BLOCK_SIZE-token blocks per layer on the backend, a block
// allocator and an automatic prefix cache. A sequence owns a block table; blocks are reserved when
// a sequence is admitted (prompt + max new tokens, as TGI reserves at prefill) and returned when
// it is freed.
//
// Prefix cache (off until kv_cache_set_prefix_caching): a sequence's full prompt blocks can be
// published to an index keyed by the block's token ids, the whole prefix before it and the rotary
// base its K were rotated with; a later sequence whose prompt starts with the same blocks takes
// them (shared, reference-counted) instead of recomputing them. Released published blocks stay
// cached in an LRU and are evicted only when no free block is left. kv_cache.c's top comment
// gives the rules that keep a reused block exact.
#pragma once
#include <stdint.h>

#include "common/status.h"
#include "kernels/backend.h"

// Per-block bookkeeping of the prefix cache. A block is in exactly one state:
//   free    ref == 0, serial == 0, on the free stack;
//   held    ref >= 1 (the number of kv_seqs whose table lists it), published or not;
//   cached  ref == 0, serial != 0, on the LRU list (evictable).
typedef struct kv_block {
    uint64_t hash;          // chain hash of (parent hash, tokens, rope_bits); valid when serial
    uint64_t serial;        // publication number, unique over the cache's life; 0: not published
    uint64_t parent_serial; // serial of the block before it in its sequence; 0: the first block
    uint32_t rope_bits;     // bits of the float rotary base its K were rotated with
    int32_t ref;            // sequences holding it
    int32_t hash_next;      // next published block of the same hash bucket; -1: none
    int32_t lru_prev, lru_next;    // LRU links while cached (-1 at the ends)
    int32_t tokens[KV_BLOCK_SIZE]; // the token ids whose K/V it holds (valid when serial)
} kv_block;

typedef struct kv_cache {
    backend *be;
    int n_layer, n_head_kv, head_dim;
    int n_blocks;      // blocks per layer
    void **k;          // [n_layer] -> [n_blocks, n_head_kv, KV_BLOCK_SIZE, head_dim] (act_dtype)
    void **v;          // [n_layer] -> same shape
    int32_t *free_ids; // stack of free block ids
    int n_free;
    // prefix cache
    int prefix_on;              // 0: nothing is published or looked up (and nothing stays cached)
    kv_block *blocks;           // [n_blocks]
    int32_t *buckets;           // [n_buckets] first published block of each hash bucket; -1: empty
    int n_buckets;              // a power of two >= n_blocks
    int32_t lru_head, lru_tail; // cached blocks, least recently released first; -1: empty
    int n_cached;               // blocks on the LRU list
    uint64_t next_serial;
    uint64_t hash_mask; // ANDed into every hash: all ones (tests set 0 so that all hashes collide)
} kv_cache;

// A sequence's place in the cache.
typedef struct kv_seq {
    int32_t *blocks; // [n_blocks] block ids in order
    int n_blocks;    // reserved blocks (it holds one reference on each)
    int n_tokens;    // tokens whose K/V are stored (the next token goes to position n_tokens)
} kv_seq;

fl_code kv_cache_create(backend *be, int n_layer, int n_head_kv, int head_dim, int n_blocks,
                        kv_cache **out, fl_error *err);
void kv_cache_free(kv_cache *kv);
// Bytes one cached token costs across all layers (K and V).
size_t kv_cache_bytes_per_token(const kv_cache *kv);
// Turns the prefix cache on or off (off by default). Turning it off unpublishes every block:
// cached ones become free, held ones stay with their sequences.
void kv_cache_set_prefix_caching(kv_cache *kv, int on);

// Reserves blocks so that seq can hold n_tokens_total tokens, taking free blocks first, then
// evicting cached ones (least recently released first). FL_ECAPACITY when the pool is short
// (nothing is taken then).
fl_code kv_seq_reserve(kv_cache *kv, kv_seq *seq, int n_tokens_total, fl_error *err);
// Drops seq's reference on each of its blocks and resets it. A block nobody holds becomes cached
// when published, else free.
void kv_seq_release(kv_cache *kv, kv_seq *seq);
// Blocks a reservation can take: free plus cached.
int kv_cache_free_blocks(const kv_cache *kv);

// Rotary base as the cache keys it: the float's bits.
uint32_t kv_rope_bits(float rope_base);
// Prefix lookup for an empty seq (no blocks): takes a reference on the longest run of published
// blocks matching tokens [0, n_max) block by block (whole blocks only, rotated with rope_base)
// and sets seq->n_tokens to the tokens they hold. Returns that count (a multiple of
// KV_BLOCK_SIZE; 0 when the prefix cache is off, nothing matches or memory is short).
int kv_seq_prefix_acquire(kv_cache *kv, kv_seq *seq, const int32_t *tokens, int n_max,
                          float rope_base);
// Publishes seq's full blocks among its first n_tokens tokens (tokens [n_tokens], all of them
// already written, with K rotated with rope_base). Blocks already published stay as they are; a
// block equal to one already published is left private. No-op when the prefix cache is off.
void kv_seq_prefix_publish(kv_cache *kv, const kv_seq *seq, const int32_t *tokens, int n_tokens,
                           float rope_base);
