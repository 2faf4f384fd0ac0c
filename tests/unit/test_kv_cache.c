// Paged KV cache: block reservation, growth, release and capacity errors without side effects.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_shape),
        cmocka_unit_test(test_create_invalid),
        cmocka_unit_test(test_reserve_grow_release),
        cmocka_unit_test(test_capacity_no_side_effects),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
