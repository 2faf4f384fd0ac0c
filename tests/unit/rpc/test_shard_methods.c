// proto/shard_methods.h against what protoc-c generated from proto/shard.proto: every rpc of
// service Shard has one row, with its path "/<package>.Shard/<Method>" and its message types.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "proto/shard.pb-c.h"
#include "proto/shard_methods.h"

static void test_table_matches_service(void **state) {
    (void)state;
    const ProtobufCServiceDescriptor *svc = &falconlite__shard__v1__shard__descriptor;
    assert_int_equal(svc->n_methods, SHARD_N_METHODS);
    for (int m = 0; m < SHARD_N_METHODS; m++) {
        const shard_method_spec *spec = shard_method_get(m);
        assert_non_null(spec->path);
        char prefix[128];
        snprintf(prefix, sizeof prefix, "/%s/", svc->name);
        assert_int_equal(strncmp(spec->path, prefix, strlen(prefix)), 0);
        const ProtobufCMethodDescriptor *md =
            protobuf_c_service_descriptor_get_method_by_name(svc, spec->path + strlen(prefix));
        assert_non_null(md);
        assert_ptr_equal(spec->request, md->input);
        assert_ptr_equal(spec->response, md->output);
        for (int o = 0; o < m; o++) // one row per method
            assert_string_not_equal(spec->path, shard_method_get(o)->path);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_matches_service),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
