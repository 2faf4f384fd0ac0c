// Paged KV cache and its prefix cache.
//
// Prefix cache: why a reused block is exact.
//   A block holds, for every layer, the K and V of KV_BLOCK_SIZE consecutive tokens. Under causal
//   attention the K/V of position p depend only on tokens [0, p], on the position and on the
//   rotary embedding applied to Q and K in every layer below. Blocks are therefore keyed by
//   (their token ids, the block before them, the rotary base): the hash chains
//   hash(parent hash, KV_BLOCK_SIZE token ids, rotary base bits), and a hit compares the token
//   ids, the base bits and the parent's identity (its publication serial, never reissued), so a
//   match at depth i proves, by induction over the chain, that the whole prefix is equal; the
//   hash alone is never trusted.
//   Rotary: a prefill rotates all of its prompt's Q and K with one base, base(L) for the
//   prompt's length L. With dynamic NTK (FalconLite) base(L) = theta * (L / alpha / T)^(d/(d-2))
//   for L > T and theta otherwise (dynamic scaling is alike), and a sequence's cached K are never
//   re-rotated. A block written by a prompt of length L1 is thus exact for a prompt of length L2
//   only when base(L1) == base(L2), which is why the base (the float's bits, as the kernels see
//   it) is part of the key and the lookup computes the new prompt's base the same way first.
//   Below the threshold, and with no scaling or linear scaling (which scales positions, not the
//   base), every prompt uses theta and reuse is free; above it, reuse happens only between prompts
//   of equal base. The suffix a reusing sequence computes is rotated with its own base(L2), as a
//   full prefill would.
//   Sharing is of full blocks strictly inside the reused prefix: a lookup takes at most
//   n_prompt - 1 tokens (the last prompt token is always computed, to give logits), and only
//   whole blocks, so a sequence writes only into blocks it holds alone; generation blocks are
//   never published.
//   Across tensor-parallel ranks every cache sees the same calls in the same order with the same
//   pool size, so every rank makes the same hits (the forward shapes must agree).
// Lifetime: a published block with no holder stays cached on an LRU list and is evicted (least
// recently released first, the deepest blocks of a sequence before its first ones) only when a
// reservation finds the free stack empty. Evicting a block orphans its cached descendants (their
// parent serial is gone for good): they are never hit again and age out of the LRU.
#include "shard/engine/kv_cache.h"

#include <stdlib.h>
#include <string.h>

#define HASH_ROOT 0x6a09e667f3bcc909ULL // parent hash of a sequence's first block

static size_t kv_layer_bytes(const kv_cache *kv) {
    return (size_t)kv->n_blocks * (size_t)kv->n_head_kv * KV_BLOCK_SIZE * (size_t)kv->head_dim *
           dtype_size(kv->be->act_dtype);
}

fl_code kv_cache_create(backend *be, int n_layer, int n_head_kv, int head_dim, int n_blocks,
                        kv_cache **out, fl_error *err) {
    if (n_layer <= 0 || n_head_kv <= 0 || head_dim <= 0 || n_blocks <= 0)
        return fl_error_set(err, FL_EINVAL,
                            "kv cache: invalid shape (layers %d, kv heads %d, head dim %d, "
                            "blocks %d)",
                            n_layer, n_head_kv, head_dim, n_blocks);
    kv_cache *kv = calloc(1, sizeof *kv);
    if (!kv) return fl_error_set(err, FL_ENOMEM, "kv cache: out of memory");
    int n_buckets = 1;
    while (n_buckets < n_blocks)
        n_buckets *= 2;
    *kv = (kv_cache){.be = be,
                     .n_layer = n_layer,
                     .n_head_kv = n_head_kv,
                     .head_dim = head_dim,
                     .n_blocks = n_blocks,
                     .n_buckets = n_buckets,
                     .lru_head = -1,
                     .lru_tail = -1,
                     .next_serial = 1,
                     .hash_mask = ~0ULL};
    kv->k = calloc((size_t)n_layer, sizeof *kv->k);
    kv->v = calloc((size_t)n_layer, sizeof *kv->v);
    kv->free_ids = malloc((size_t)n_blocks * sizeof *kv->free_ids);
    kv->blocks = calloc((size_t)n_blocks, sizeof *kv->blocks);
    kv->buckets = malloc((size_t)n_buckets * sizeof *kv->buckets);
    if (!kv->k || !kv->v || !kv->free_ids || !kv->blocks || !kv->buckets) {
        kv_cache_free(kv);
        return fl_error_set(err, FL_ENOMEM, "kv cache: out of memory");
    }
    size_t bytes = kv_layer_bytes(kv);
    for (int l = 0; l < n_layer; l++) {
        kv->k[l] = be->buf_alloc(be, bytes);
        kv->v[l] = be->buf_alloc(be, bytes);
        if (!kv->k[l] || !kv->v[l]) {
            kv_cache_free(kv);
            return fl_error_set(err, FL_ENOMEM,
                                "kv cache: cannot allocate %d blocks (%zu bytes per layer)",
                                n_blocks, 2 * bytes);
        }
    }
    for (int i = 0; i < n_buckets; i++)
        kv->buckets[i] = -1;
    for (int i = 0; i < n_blocks; i++)
        kv->blocks[i] = (kv_block){.hash_next = -1, .lru_prev = -1, .lru_next = -1};
    // Stack top is the end: pop hands out blocks 0, 1, 2, ... on a fresh cache.
    for (int i = 0; i < n_blocks; i++)
        kv->free_ids[i] = n_blocks - 1 - i;
    kv->n_free = n_blocks;
    *out = kv;
    return FL_OK;
}

void kv_cache_free(kv_cache *kv) {
    if (!kv) return;
    for (int l = 0; l < kv->n_layer; l++) {
        if (kv->k && kv->k[l]) kv->be->buf_free(kv->be, kv->k[l]);
        if (kv->v && kv->v[l]) kv->be->buf_free(kv->be, kv->v[l]);
    }
    free(kv->k);
    free(kv->v);
    free(kv->free_ids);
    free(kv->blocks);
    free(kv->buckets);
    free(kv);
}

size_t kv_cache_bytes_per_token(const kv_cache *kv) {
    return (size_t)kv->n_layer * 2 * (size_t)kv->n_head_kv * (size_t)kv->head_dim *
           dtype_size(kv->be->act_dtype);
}

// ---- LRU list of cached blocks (head: least recently released)

static void lru_push_tail(kv_cache *kv, int32_t b) {
    kv_block *e = &kv->blocks[b];
    e->lru_prev = kv->lru_tail, e->lru_next = -1;
    if (kv->lru_tail >= 0)
        kv->blocks[kv->lru_tail].lru_next = b;
    else
        kv->lru_head = b;
    kv->lru_tail = b;
    kv->n_cached++;
}

static void lru_unlink(kv_cache *kv, int32_t b) {
    kv_block *e = &kv->blocks[b];
    if (e->lru_prev >= 0)
        kv->blocks[e->lru_prev].lru_next = e->lru_next;
    else
        kv->lru_head = e->lru_next;
    if (e->lru_next >= 0)
        kv->blocks[e->lru_next].lru_prev = e->lru_prev;
    else
        kv->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = -1;
    kv->n_cached--;
}

// ---- hash index of published blocks

static uint64_t mix64(uint64_t x) { // splitmix64's finalizer
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t block_hash(const kv_cache *kv, uint64_t parent_hash, const int32_t *tokens,
                           uint32_t rope_bits) {
    uint64_t h = mix64(parent_hash ^ rope_bits);
    for (int i = 0; i < KV_BLOCK_SIZE; i++)
        h = mix64(h + (uint32_t)tokens[i]);
    return h & kv->hash_mask;
}

static int32_t *bucket_of(kv_cache *kv, uint64_t hash) {
    return &kv->buckets[hash & (uint64_t)(kv->n_buckets - 1)];
}

// The published block with this key; -1 when none.
static int32_t index_find(kv_cache *kv, uint64_t hash, uint64_t parent_serial,
                          const int32_t *tokens, uint32_t rope_bits) {
    for (int32_t b = *bucket_of(kv, hash); b >= 0; b = kv->blocks[b].hash_next) {
        const kv_block *e = &kv->blocks[b];
        if (e->hash == hash && e->parent_serial == parent_serial && e->rope_bits == rope_bits &&
            memcmp(e->tokens, tokens, sizeof e->tokens) == 0)
            return b;
    }
    return -1;
}

static void index_insert(kv_cache *kv, int32_t b, uint64_t hash, uint64_t parent_serial,
                         const int32_t *tokens, uint32_t rope_bits) {
    kv_block *e = &kv->blocks[b];
    e->hash = hash;
    e->serial = kv->next_serial++;
    e->parent_serial = parent_serial;
    e->rope_bits = rope_bits;
    memcpy(e->tokens, tokens, sizeof e->tokens);
    int32_t *head = bucket_of(kv, hash);
    e->hash_next = *head;
    *head = b;
}

static void index_remove(kv_cache *kv, int32_t b) {
    kv_block *e = &kv->blocks[b];
    int32_t *link = bucket_of(kv, e->hash);
    while (*link != b)
        link = &kv->blocks[*link].hash_next;
    *link = e->hash_next;
    e->hash_next = -1;
    e->serial = 0;
}

// Takes the least recently released cached block out of the index and the LRU (it becomes free).
static int32_t evict_one(kv_cache *kv) {
    int32_t b = kv->lru_head;
    lru_unlink(kv, b);
    index_remove(kv, b);
    return b;
}

void kv_cache_set_prefix_caching(kv_cache *kv, int on) {
    if (!on) {
        while (kv->lru_head >= 0)
            kv->free_ids[kv->n_free++] = evict_one(kv);
        for (int32_t b = 0; b < kv->n_blocks; b++)
            if (kv->blocks[b].serial) index_remove(kv, b); // held: stays with its sequences
    }
    kv->prefix_on = on != 0;
}

// ---- sequences

fl_code kv_seq_reserve(kv_cache *kv, kv_seq *seq, int n_tokens_total, fl_error *err) {
    if (n_tokens_total < 0)
        return fl_error_set(err, FL_EINVAL, "kv cache: cannot reserve %d tokens", n_tokens_total);
    int want = (n_tokens_total + KV_BLOCK_SIZE - 1) / KV_BLOCK_SIZE, need = want - seq->n_blocks;
    if (need <= 0) return FL_OK;
    if (need > kv_cache_free_blocks(kv))
        return fl_error_set(err, FL_ECAPACITY,
                            "kv cache: %d tokens need %d more blocks, only %d of %d free",
                            n_tokens_total, need, kv_cache_free_blocks(kv), kv->n_blocks);
    int32_t *blocks = realloc(seq->blocks, (size_t)want * sizeof *blocks);
    if (!blocks) return fl_error_set(err, FL_ENOMEM, "kv cache: out of memory");
    seq->blocks = blocks;
    for (int i = seq->n_blocks; i < want; i++) {
        int32_t b = kv->n_free > 0 ? kv->free_ids[--kv->n_free] : evict_one(kv);
        kv->blocks[b].ref = 1;
        blocks[i] = b;
    }
    seq->n_blocks = want;
    return FL_OK;
}

void kv_seq_release(kv_cache *kv, kv_seq *seq) {
    // Last block first: the free stack then hands the sequence's first block out first again,
    // and the LRU evicts a sequence's deepest blocks before the ones its prefix needs.
    for (int i = seq->n_blocks - 1; i >= 0; i--) {
        int32_t b = seq->blocks[i];
        if (--kv->blocks[b].ref > 0) continue;
        if (kv->blocks[b].serial)
            lru_push_tail(kv, b);
        else
            kv->free_ids[kv->n_free++] = b;
    }
    free(seq->blocks);
    memset(seq, 0, sizeof *seq);
}

int kv_cache_free_blocks(const kv_cache *kv) {
    return kv->n_free + kv->n_cached;
}

uint32_t kv_rope_bits(float rope_base) {
    uint32_t bits;
    memcpy(&bits, &rope_base, sizeof bits);
    return bits;
}

int kv_seq_prefix_acquire(kv_cache *kv, kv_seq *seq, const int32_t *tokens, int n_max,
                          float rope_base) {
    int n_full = n_max > 0 ? n_max / KV_BLOCK_SIZE : 0;
    if (!kv->prefix_on || seq->n_blocks > 0 || n_full == 0) return 0;
    int32_t *blocks = malloc((size_t)n_full * sizeof *blocks);
    if (!blocks) return 0; // no reuse is always correct
    uint32_t bits = kv_rope_bits(rope_base);
    uint64_t hash = HASH_ROOT, parent = 0;
    int n = 0;
    for (; n < n_full; n++) {
        const int32_t *t = tokens + (size_t)n * KV_BLOCK_SIZE;
        hash = block_hash(kv, hash, t, bits);
        int32_t b = index_find(kv, hash, parent, t, bits);
        if (b < 0) break;
        if (kv->blocks[b].ref++ == 0) lru_unlink(kv, b); // cached -> held
        parent = kv->blocks[b].serial;
        blocks[n] = b;
    }
    if (n == 0) {
        free(blocks);
        return 0;
    }
    seq->blocks = blocks;
    seq->n_blocks = n;
    seq->n_tokens = n * KV_BLOCK_SIZE;
    return seq->n_tokens;
}

void kv_seq_prefix_publish(kv_cache *kv, const kv_seq *seq, const int32_t *tokens, int n_tokens,
                           float rope_base) {
    if (!kv->prefix_on) return;
    if (n_tokens > seq->n_tokens) n_tokens = seq->n_tokens; // only what is written
    uint32_t bits = kv_rope_bits(rope_base);
    uint64_t hash = HASH_ROOT, parent = 0;
    for (int i = 0; i < n_tokens / KV_BLOCK_SIZE && i < seq->n_blocks; i++) {
        const int32_t *t = tokens + (size_t)i * KV_BLOCK_SIZE;
        int32_t b = seq->blocks[i];
        hash = block_hash(kv, hash, t, bits);
        if (!kv->blocks[b].serial) {
            // An equal block published meanwhile (a twin prompt of the same batch) keeps its
            // place; this one stays private and the chain goes on from the published one, whose
            // K/V are the same.
            int32_t twin = index_find(kv, hash, parent, t, bits);
            if (twin >= 0)
                b = twin;
            else
                index_insert(kv, b, hash, parent, t, bits);
        }
        parent = kv->blocks[b].serial;
    }
}
