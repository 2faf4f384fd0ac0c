// Paged KV cache: block reservation, growth, release and capacity errors without side effects;
// the prefix cache's hits, collisions, rotary-base keys, refcounts and LRU eviction.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "shard/engine/kv_cache.h"

static backend *be;

static int setup(void **state) {
    fl_error err = {0};
    be = backend_cpu_create(1, &err);
    return be ? 0 : -1;
}

static int teardown(void **state) {
    be->free(be);
    return 0;
}

static kv_cache *cache_new(int n_blocks) {
    kv_cache *kv = NULL;
    fl_error err = {0};
    assert_int_equal(kv_cache_create(be, 3, 2, 8, n_blocks, &kv, &err), FL_OK);
    return kv;
}

static void test_create_shape(void **state) {
    kv_cache *kv = cache_new(5);
    assert_int_equal(kv->n_blocks, 5);
    assert_int_equal(kv_cache_free_blocks(kv), 5);
    for (int l = 0; l < 3; l++)
        assert_true(kv->k[l] && kv->v[l] && kv->k[l] != kv->v[l]);
    // 3 layers x (K + V) x 2 kv heads x head_dim 8 x f32
    assert_int_equal(kv_cache_bytes_per_token(kv), 3 * 2 * 2 * 8 * 4);
    // The pools are usable memory of the full size: write the last element of each.
    size_t n = (size_t)5 * 2 * KV_BLOCK_SIZE * 8;
    for (int l = 0; l < 3; l++)
        ((float *)kv->k[l])[n - 1] = ((float *)kv->v[l])[n - 1] = 1.0f;
    kv_cache_free(kv);
}

static void test_create_invalid(void **state) {
    kv_cache *kv = NULL;
    fl_error err = {0};
    assert_int_equal(kv_cache_create(be, 2, 2, 8, 0, &kv, &err), FL_EINVAL);
    assert_null(kv);
    assert_int_equal(kv_cache_create(be, 0, 2, 8, 4, &kv, &err), FL_EINVAL);
    assert_int_equal(kv_cache_create(be, 2, 2, -1, 4, &kv, &err), FL_EINVAL);
}

static void test_reserve_grow_release(void **state) {
    kv_cache *kv = cache_new(8);
    fl_error err = {0};
    kv_seq a = {0}, b = {0};
    assert_int_equal(kv_seq_reserve(kv, &a, 0, &err), FL_OK);
    assert_int_equal(a.n_blocks, 0);
    assert_int_equal(kv_seq_reserve(kv, &a, 1, &err), FL_OK);
    assert_int_equal(a.n_blocks, 1);
    assert_int_equal(kv_seq_reserve(kv, &a, KV_BLOCK_SIZE, &err), FL_OK); // still one block
    assert_int_equal(a.n_blocks, 1);
    int32_t first = a.blocks[0];
    assert_int_equal(kv_seq_reserve(kv, &a, 3 * KV_BLOCK_SIZE + 1, &err), FL_OK);
    assert_int_equal(a.n_blocks, 4);
    assert_int_equal(a.blocks[0], first); // growth keeps the blocks already holding tokens
    assert_int_equal(kv_seq_reserve(kv, &b, 2 * KV_BLOCK_SIZE, &err), FL_OK);
    assert_int_equal(kv_cache_free_blocks(kv), 2);
    // Every handed-out block is distinct and in range.
    int used[8] = {0};
    for (int i = 0; i < a.n_blocks; i++)
        used[a.blocks[i]]++;
    for (int i = 0; i < b.n_blocks; i++)
        used[b.blocks[i]]++;
    for (int i = 0; i < 8; i++)
        assert_true(used[i] <= 1);
    // Shrinking requests keep the reservation.
    assert_int_equal(kv_seq_reserve(kv, &a, 5, &err), FL_OK);
    assert_int_equal(a.n_blocks, 4);

    a.n_tokens = 7;
    kv_seq_release(kv, &a);
    assert_null(a.blocks);
    assert_int_equal(a.n_blocks, 0);
    assert_int_equal(a.n_tokens, 0);
    assert_int_equal(kv_cache_free_blocks(kv), 6);
    kv_seq_release(kv, &b);
    assert_int_equal(kv_cache_free_blocks(kv), 8);
    kv_seq_release(kv, &b); // releasing an empty sequence is harmless
    assert_int_equal(kv_cache_free_blocks(kv), 8);
    kv_cache_free(kv);
}

static void test_capacity_no_side_effects(void **state) {
    kv_cache *kv = cache_new(4);
    fl_error err = {0};
    kv_seq a = {0}, b = {0};
    assert_int_equal(kv_seq_reserve(kv, &a, 3 * KV_BLOCK_SIZE, &err), FL_OK);
    int32_t before[3];
    memcpy(before, a.blocks, sizeof before);
    // a wants two more blocks, only one is free: nothing changes.
    assert_int_equal(kv_seq_reserve(kv, &a, 5 * KV_BLOCK_SIZE, &err), FL_ECAPACITY);
    assert_int_equal(err.code, FL_ECAPACITY);
    assert_non_null(strstr(err.msg, "kv cache"));
    assert_int_equal(a.n_blocks, 3);
    assert_memory_equal(a.blocks, before, sizeof before);
    assert_int_equal(kv_cache_free_blocks(kv), 1);
    assert_int_equal(kv_seq_reserve(kv, &b, 2 * KV_BLOCK_SIZE, &err), FL_ECAPACITY);
    assert_int_equal(b.n_blocks, 0);
    assert_null(b.blocks);
    // The last block still fits exactly.
    assert_int_equal(kv_seq_reserve(kv, &b, KV_BLOCK_SIZE, &err), FL_OK);
    assert_int_equal(kv_cache_free_blocks(kv), 0);
    kv_seq_release(kv, &a);
    assert_int_equal(kv_seq_reserve(kv, &b, 4 * KV_BLOCK_SIZE, &err), FL_OK);
    assert_int_equal(kv_cache_free_blocks(kv), 0);
    kv_seq_release(kv, &b);
    assert_int_equal(kv_cache_free_blocks(kv), 4);
    kv_cache_free(kv);
}

// ---- prefix cache

#define BASE 10000.0f

static kv_cache *prefix_cache_new(int n_blocks) {
    kv_cache *kv = cache_new(n_blocks);
    kv_cache_set_prefix_caching(kv, 1);
    return kv;
}

// tokens [n]: i * 7 + salt (distinct sequences per salt).
static void fill(int32_t *t, int n, int salt) {
    for (int i = 0; i < n; i++)
        t[i] = i * 7 + salt;
}

// Reserves n_tokens for a fresh seq, marks them written and publishes them under base.
static void publish_new(kv_cache *kv, kv_seq *seq, const int32_t *t, int n_tokens, float base) {
    fl_error err = {0};
    assert_int_equal(kv_seq_reserve(kv, seq, n_tokens, &err), FL_OK);
    seq->n_tokens = n_tokens;
    kv_seq_prefix_publish(kv, seq, t, n_tokens, base);
}

static void test_prefix_hits(void **state) {
    kv_cache *kv = prefix_cache_new(8);
    int32_t t[4 * KV_BLOCK_SIZE];
    fill(t, 4 * KV_BLOCK_SIZE, 1);
    kv_seq a = {0}, b = {0}, c = {0}, d = {0};
    publish_new(kv, &a, t, 3 * KV_BLOCK_SIZE + 5, BASE); // 3 full blocks published, 4th not
    int32_t a_blocks[4];
    memcpy(a_blocks, a.blocks, sizeof a_blocks);
    kv_seq_release(kv, &a);
    assert_int_equal(kv->n_cached, 3);
    assert_int_equal(kv_cache_free_blocks(kv), 8); // cached blocks count as available
    // Full hit, bounded by n_max: 47 tokens hold 2 whole blocks.
    assert_int_equal(kv_seq_prefix_acquire(kv, &b, t, 3 * KV_BLOCK_SIZE - 1, BASE),
                     2 * KV_BLOCK_SIZE);
    assert_int_equal(b.n_tokens, 2 * KV_BLOCK_SIZE);
    assert_int_equal(b.n_blocks, 2);
    assert_memory_equal(b.blocks, a_blocks, 2 * sizeof(int32_t));
    // Partial hit: the second block differs.
    int32_t u[4 * KV_BLOCK_SIZE];
    memcpy(u, t, sizeof u);
    u[KV_BLOCK_SIZE + 3] = 999;
    assert_int_equal(kv_seq_prefix_acquire(kv, &c, u, 4 * KV_BLOCK_SIZE, BASE), KV_BLOCK_SIZE);
    assert_int_equal(c.blocks[0], a_blocks[0]);
    // Miss: the first block differs; fewer than a block asked: no lookup.
    u[0] = 998;
    assert_int_equal(kv_seq_prefix_acquire(kv, &d, u, 4 * KV_BLOCK_SIZE, BASE), 0);
    assert_int_equal(kv_seq_prefix_acquire(kv, &d, t, KV_BLOCK_SIZE - 1, BASE), 0);
    assert_int_equal(d.n_blocks, 0);
    assert_null(d.blocks);
    // Refcounts: block 0 is held by b and c, block 1 by b, block 2 is cached.
    assert_int_equal(kv->blocks[a_blocks[0]].ref, 2);
    assert_int_equal(kv->blocks[a_blocks[1]].ref, 1);
    assert_int_equal(kv->blocks[a_blocks[2]].ref, 0);
    assert_int_equal(kv->n_cached, 1);
    // Growing a reusing sequence adds private blocks after the shared ones.
    fl_error err = {0};
    assert_int_equal(kv_seq_reserve(kv, &c, 3 * KV_BLOCK_SIZE, &err), FL_OK);
    assert_int_equal(c.n_blocks, 3);
    assert_int_equal(kv->blocks[c.blocks[1]].ref, 1);
    assert_int_equal(kv->blocks[c.blocks[1]].serial, 0);
    kv_seq_release(kv, &b);
    assert_int_equal(kv->blocks[a_blocks[0]].ref, 1);
    kv_seq_release(kv, &c); // its private blocks go back to the free stack
    assert_int_equal(kv->blocks[a_blocks[0]].ref, 0);
    assert_int_equal(kv->n_cached, 3);
    assert_int_equal(kv->n_free, 5);
    kv_cache_free(kv);
}

// With every hash equal, hits still need equal token ids and the same parent block.
static void test_prefix_hash_collisions(void **state) {
    kv_cache *kv = prefix_cache_new(8);
    kv->hash_mask = 0;
    int32_t x[2 * KV_BLOCK_SIZE], y[2 * KV_BLOCK_SIZE], w[2 * KV_BLOCK_SIZE];
    fill(x, 2 * KV_BLOCK_SIZE, 1);
    fill(y, 2 * KV_BLOCK_SIZE, 2);
    memcpy(y + KV_BLOCK_SIZE, x + KV_BLOCK_SIZE, KV_BLOCK_SIZE * sizeof(int32_t)); // same 2nd
    memcpy(w, x, sizeof w);
    w[5] = 12345;
    kv_seq a = {0}, b = {0}, q = {0};
    publish_new(kv, &a, x, 2 * KV_BLOCK_SIZE, BASE);
    publish_new(kv, &b, y, 2 * KV_BLOCK_SIZE, BASE);
    assert_int_equal(kv_seq_prefix_acquire(kv, &q, x, 2 * KV_BLOCK_SIZE, BASE), 2 * KV_BLOCK_SIZE);
    assert_memory_equal(q.blocks, a.blocks, 2 * sizeof(int32_t));
    kv_seq_release(kv, &q);
    assert_int_equal(kv_seq_prefix_acquire(kv, &q, y, 2 * KV_BLOCK_SIZE, BASE), 2 * KV_BLOCK_SIZE);
    assert_memory_equal(q.blocks, b.blocks, 2 * sizeof(int32_t)); // b's 2nd block, not a's
    kv_seq_release(kv, &q);
    assert_int_equal(kv_seq_prefix_acquire(kv, &q, w, 2 * KV_BLOCK_SIZE, BASE), 0);
    kv_seq_release(kv, &a);
    kv_seq_release(kv, &b);
    kv_cache_free(kv);
}

// Blocks rotated with another base are misses; the base is compared by its bits.
static void test_prefix_rope_base(void **state) {
    kv_cache *kv = prefix_cache_new(8);
    int32_t t[2 * KV_BLOCK_SIZE];
    fill(t, 2 * KV_BLOCK_SIZE, 3);
    kv_seq a = {0}, q = {0};
    publish_new(kv, &a, t, 2 * KV_BLOCK_SIZE, BASE);
    kv_seq_release(kv, &a);
    assert_int_equal(kv_seq_prefix_acquire(kv, &q, t, 2 * KV_BLOCK_SIZE, 40000.0f), 0);
    assert_int_equal(kv_seq_prefix_acquire(kv, &q, t, 2 * KV_BLOCK_SIZE, nextafterf(BASE, 0)), 0);
    assert_int_equal(kv_seq_prefix_acquire(kv, &q, t, 2 * KV_BLOCK_SIZE, BASE), 2 * KV_BLOCK_SIZE);
    kv_seq_release(kv, &q);
    // The same tokens under another base are another entry; both then hit.
    publish_new(kv, &a, t, 2 * KV_BLOCK_SIZE, 40000.0f);
    kv_seq_release(kv, &a);
    assert_int_equal(kv->n_cached, 4);
    assert_int_equal(kv_seq_prefix_acquire(kv, &q, t, 2 * KV_BLOCK_SIZE, 40000.0f),
                     2 * KV_BLOCK_SIZE);
    kv_seq_release(kv, &q);
    kv_cache_free(kv);
}

// One-block sequences p0..p3 fill a 4-block pool: reservations take the least recently
// released cached block first; a hit makes a block recent again.
static void test_prefix_lru_order(void **state) {
    kv_cache *kv = prefix_cache_new(4);
    fl_error err = {0};
    int32_t t[4][KV_BLOCK_SIZE];
    kv_seq s[4] = {{0}}, q = {0}, n = {0};
    for (int i = 0; i < 4; i++) {
        fill(t[i], KV_BLOCK_SIZE, 10 * (i + 1));
        publish_new(kv, &s[i], t[i], KV_BLOCK_SIZE, BASE);
    }
    for (int i = 0; i < 4; i++)
        kv_seq_release(kv, &s[i]);
    assert_int_equal(kv->n_free, 0);
    assert_int_equal(kv->n_cached, 4);
    // Touch p0: now p1 is the oldest.
    assert_int_equal(kv_seq_prefix_acquire(kv, &q, t[0], KV_BLOCK_SIZE, BASE), KV_BLOCK_SIZE);
    kv_seq_release(kv, &q);
    assert_int_equal(kv_seq_reserve(kv, &n, KV_BLOCK_SIZE, &err), FL_OK); // evicts p1
    int hits[4];
    for (int i = 0; i < 4; i++) {
        hits[i] = kv_seq_prefix_acquire(kv, &q, t[i], KV_BLOCK_SIZE, BASE);
        kv_seq_release(kv, &q);
    }
    assert_int_equal(hits[0], KV_BLOCK_SIZE);
    assert_int_equal(hits[1], 0);
    assert_int_equal(hits[2], KV_BLOCK_SIZE);
    assert_int_equal(hits[3], KV_BLOCK_SIZE);
    // The lookups above released p0, p2, p3 in that order: p0 goes next.
    assert_int_equal(kv_seq_reserve(kv, &n, 2 * KV_BLOCK_SIZE, &err), FL_OK);
    assert_int_equal(kv_seq_prefix_acquire(kv, &q, t[0], KV_BLOCK_SIZE, BASE), 0);
    assert_int_equal(kv_seq_prefix_acquire(kv, &q, t[2], KV_BLOCK_SIZE, BASE), KV_BLOCK_SIZE);
    kv_seq_release(kv, &q);
    kv_seq_release(kv, &n);
    kv_cache_free(kv);
}

// A released sequence's deepest blocks are evicted before its first ones.
static void test_prefix_evicts_deepest_first(void **state) {
    kv_cache *kv = prefix_cache_new(3);
    fl_error err = {0};
    int32_t t[3 * KV_BLOCK_SIZE];
    fill(t, 3 * KV_BLOCK_SIZE, 4);
    kv_seq a = {0}, n = {0}, q = {0};
    publish_new(kv, &a, t, 3 * KV_BLOCK_SIZE, BASE);
    kv_seq_release(kv, &a);
    assert_int_equal(kv_seq_reserve(kv, &n, KV_BLOCK_SIZE, &err), FL_OK);
    assert_int_equal(kv_seq_prefix_acquire(kv, &q, t, 3 * KV_BLOCK_SIZE, BASE), 2 * KV_BLOCK_SIZE);
    kv_seq_release(kv, &q);
    kv_seq_release(kv, &n);
    kv_cache_free(kv);
}

// Memory pressure: cached blocks give way to reservations; held ones never do, and a
// reservation that does not fit changes nothing.
static void test_prefix_memory_pressure(void **state) {
    kv_cache *kv = prefix_cache_new(4);
    fl_error err = {0};
    int32_t t[4 * KV_BLOCK_SIZE];
    fill(t, 4 * KV_BLOCK_SIZE, 5);
    kv_seq a = {0}, h = {0}, n = {0}, q = {0};
    publish_new(kv, &a, t, 4 * KV_BLOCK_SIZE, BASE);
    kv_seq_release(kv, &a);
    assert_int_equal(kv->n_cached, 4);
    assert_int_equal(kv_seq_prefix_acquire(kv, &h, t, KV_BLOCK_SIZE, BASE), KV_BLOCK_SIZE);
    assert_int_equal(kv_cache_free_blocks(kv), 3);
    assert_int_equal(kv_seq_reserve(kv, &n, 4 * KV_BLOCK_SIZE, &err), FL_ECAPACITY);
    assert_int_equal(kv->n_cached, 3);
    assert_int_equal(n.n_blocks, 0);
    assert_int_equal(kv_seq_reserve(kv, &n, 3 * KV_BLOCK_SIZE, &err), FL_OK);
    assert_int_equal(kv->n_cached, 0);
    for (int i = 0; i < n.n_blocks; i++)
        assert_int_not_equal(n.blocks[i], h.blocks[0]);
    kv_seq_release(kv, &n);
    // Only the held first block is still published.
    assert_int_equal(kv_seq_prefix_acquire(kv, &q, t, 4 * KV_BLOCK_SIZE, BASE), KV_BLOCK_SIZE);
    kv_seq_release(kv, &q);
    kv_seq_release(kv, &h);
    assert_int_equal(kv->n_cached, 1);
    assert_int_equal(kv->n_free, 3);
    kv_cache_free(kv);
}

// Two sequences with the same prompt publish once: the second one's blocks stay private and
// go back to the free stack.
static void test_prefix_twins(void **state) {
    kv_cache *kv = prefix_cache_new(8);
    int32_t t[2 * KV_BLOCK_SIZE + 3];
    fill(t, 2 * KV_BLOCK_SIZE + 3, 6);
    kv_seq a = {0}, b = {0}, q = {0};
    publish_new(kv, &a, t, 2 * KV_BLOCK_SIZE + 3, BASE);
    publish_new(kv, &b, t, 2 * KV_BLOCK_SIZE + 3, BASE);
    assert_int_equal(kv->blocks[b.blocks[0]].serial, 0);
    assert_int_equal(kv->blocks[b.blocks[1]].serial, 0);
    kv_seq_release(kv, &a);
    kv_seq_release(kv, &b);
    assert_int_equal(kv->n_cached, 2);
    assert_int_equal(kv->n_free, 6);
    assert_int_equal(kv_seq_prefix_acquire(kv, &q, t, 2 * KV_BLOCK_SIZE + 3, BASE),
                     2 * KV_BLOCK_SIZE);
    kv_seq_release(kv, &q);
    kv_cache_free(kv);
}

// Off (the default) nothing is published; turning it off frees what was cached.
static void test_prefix_off(void **state) {
    kv_cache *kv = cache_new(4);
    int32_t t[2 * KV_BLOCK_SIZE];
    fill(t, 2 * KV_BLOCK_SIZE, 7);
    kv_seq a = {0}, q = {0};
    publish_new(kv, &a, t, 2 * KV_BLOCK_SIZE, BASE);
    kv_seq_release(kv, &a);
    assert_int_equal(kv->n_free, 4);
    assert_int_equal(kv_seq_prefix_acquire(kv, &q, t, 2 * KV_BLOCK_SIZE, BASE), 0);
    kv_cache_set_prefix_caching(kv, 1);
    publish_new(kv, &a, t, 2 * KV_BLOCK_SIZE, BASE);
    kv_seq_release(kv, &a);
    assert_int_equal(kv_seq_prefix_acquire(kv, &q, t, 2 * KV_BLOCK_SIZE, BASE), 2 * KV_BLOCK_SIZE);
    kv_cache_set_prefix_caching(kv, 0); // q still holds both blocks
    kv_seq_release(kv, &q);
    assert_int_equal(kv->n_free, 4);
    assert_int_equal(kv->n_cached, 0);
    kv_cache_set_prefix_caching(kv, 1);
    assert_int_equal(kv_seq_prefix_acquire(kv, &q, t, 2 * KV_BLOCK_SIZE, BASE), 0);
    kv_cache_free(kv);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_shape),
        cmocka_unit_test(test_create_invalid),
        cmocka_unit_test(test_reserve_grow_release),
        cmocka_unit_test(test_capacity_no_side_effects),
        cmocka_unit_test(test_prefix_hits),
        cmocka_unit_test(test_prefix_hash_collisions),
        cmocka_unit_test(test_prefix_rope_base),
        cmocka_unit_test(test_prefix_lru_order),
        cmocka_unit_test(test_prefix_evicts_deepest_first),
        cmocka_unit_test(test_prefix_memory_pressure),
        cmocka_unit_test(test_prefix_twins),
        cmocka_unit_test(test_prefix_off),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
