// fl_rpc (proto/rpc_server.h, rpc_client.h) over real unix sockets, using the grpc.health.v1
// messages: unary replies and errors, unknown methods, fan-out to two servers, replies from
// another thread, server streaming, messages above gRPC's default 4 MiB limit, readiness waits.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "proto/health.pb-c.h"
#include "proto/rpc_client.h"
#include "proto/rpc_codec.h"
#include "proto/rpc_server.h"

#define CHECK "/grpc.health.v1.Health/Check"
#define WATCH "/grpc.health.v1.Health/Watch"

typedef Grpc__Health__V1__HealthCheckRequest HcReq;
typedef Grpc__Health__V1__HealthCheckResponse HcResp;

static void reply_status(rpc_call *call, int status) {
    HcResp r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    r.status = status;
    rpc_call_finish(call, &r.base);
}

static void *finish_later(void *arg) {
    usleep(20000);
    reply_status(arg, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
    return NULL;
}

// Check: "" -> SERVING; "later" -> SERVING from another thread; "big..." -> status = length
// (checks large messages arrive whole); anything else -> NOT_FOUND.
static void on_check(rpc_call *call, const ProtobufCMessage *msg, void *user) {
    const HcReq *req = (const HcReq *)msg;
    if (!strcmp(req->service, "")) {
        reply_status(call, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
    } else if (!strcmp(req->service, "later")) {
        pthread_t t;
        pthread_create(&t, NULL, finish_later, call);
        pthread_detach(t);
    } else if (!strncmp(req->service, "big", 3)) {
        reply_status(call, (int)strlen(req->service));
    } else {
        rpc_call_fail(call, GRPC_STATUS_NOT_FOUND, "unknown service");
    }
}

// Watch streams UNKNOWN, SERVING, NOT_SERVING, then ends OK.
static void on_watch(rpc_call *call, const ProtobufCMessage *msg, void *user) {
    for (int s = 0; s < 3; s++) {
        HcResp r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
        r.status = s;
        rpc_call_send(call, &r.base);
    }
    rpc_call_finish(call, NULL);
}

typedef struct fixture {
    char dir[64];
    char addr[2][128];
    rpc_server *srv[2];
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/fl-test-rpc-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    for (int i = 0; i < 2; i++) {
        fl_error err;
        snprintf(f->addr[i], sizeof f->addr[i], "unix:%s/s%d", f->dir, i);
        f->srv[i] = rpc_server_create(&err);
        if (!f->srv[i]) return -1;
        if (rpc_server_add_method(f->srv[i], CHECK,
                                  &grpc__health__v1__health_check_request__descriptor, on_check,
                                  NULL, &err) != FL_OK ||
            rpc_server_add_method(f->srv[i], WATCH,
                                  &grpc__health__v1__health_check_request__descriptor, on_watch,
                                  NULL, &err) != FL_OK ||
            rpc_server_listen(f->srv[i], f->addr[i], &err) != FL_OK ||
            rpc_server_start(f->srv[i], &err) != FL_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return -1;
        }
    }
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    for (int i = 0; i < 2; i++)
        rpc_server_free(f->srv[i]);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    if (system(cmd) != 0) return -1;
    free(f);
    return 0;
}

static fl_code check(rpc_channel *ch, const char *service, rpc_result *res, fl_error *err) {
    HcReq req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)service;
    return rpc_unary(ch, CHECK, &req.base, &grpc__health__v1__health_check_response__descriptor,
                     10000, res, err);
}

static void test_unary_ok_and_errors(void **state) {
    fixture *f = *state;
    fl_error err;
    rpc_channel *ch = rpc_channel_create(f->addr[0], &err);
    assert_non_null(ch);
    assert_int_equal(rpc_channel_wait_ready(ch, 5000, &err), FL_OK);
    rpc_result res;
    assert_int_equal(check(ch, "", &res, &err), FL_OK);
    assert_int_equal(((HcResp *)res.resp)->status,
                     GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
    rpc_result_clear(&res);

    assert_int_equal(check(ch, "nope", &res, &err), FL_EBACKEND);
    assert_int_equal(res.status, GRPC_STATUS_NOT_FOUND);
    assert_string_equal(res.msg, "unknown service");
    assert_non_null(strstr(err.msg, "NOT_FOUND: unknown service"));
    assert_null(res.resp);

    HcReq req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    assert_int_equal(rpc_unary(ch, "/grpc.health.v1.Health/Nope", &req.base,
                               &grpc__health__v1__health_check_response__descriptor, 5000, &res,
                               &err),
                     FL_EBACKEND);
    assert_int_equal(res.status, GRPC_STATUS_UNIMPLEMENTED);

    // Many sequential calls reuse the channel (and exercise call cleanup).
    for (int i = 0; i < 200; i++) {
        assert_int_equal(check(ch, i % 2 ? "" : "x", &res, &err), i % 2 ? FL_OK : FL_EBACKEND);
        rpc_result_clear(&res);
    }
    rpc_channel_free(ch);
}

static void test_reply_from_other_thread(void **state) {
    fixture *f = *state;
    fl_error err;
    rpc_channel *ch = rpc_channel_create(f->addr[1], &err);
    rpc_result res;
    assert_int_equal(check(ch, "later", &res, &err), FL_OK);
    assert_int_equal(((HcResp *)res.resp)->status,
                     GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
    rpc_result_clear(&res);
    rpc_channel_free(ch);
}

static void test_fan_out(void **state) {
    fixture *f = *state;
    fl_error err;
    rpc_channel *chs[3] = {rpc_channel_create(f->addr[0], &err),
                           rpc_channel_create(f->addr[1], &err), NULL};
    char missing[160];
    snprintf(missing, sizeof missing, "unix:%s/none", f->dir);
    chs[2] = rpc_channel_create(missing, &err);
    HcReq req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    rpc_result res[3];
    assert_int_equal(rpc_unary_all(chs, 2, CHECK, &req.base,
                                   &grpc__health__v1__health_check_response__descriptor, 5000, res,
                                   &err),
                     FL_OK);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(res[i].status, GRPC_STATUS_OK);
        rpc_result_clear(&res[i]);
    }
    // One dead server: the others still answer, the error names the failing target.
    assert_int_equal(rpc_unary_all(chs, 3, CHECK, &req.base,
                                   &grpc__health__v1__health_check_response__descriptor, 5000, res,
                                   &err),
                     FL_EBACKEND);
    assert_int_equal(res[0].status, GRPC_STATUS_OK);
    assert_int_equal(res[1].status, GRPC_STATUS_OK);
    assert_int_equal(res[2].status, GRPC_STATUS_UNAVAILABLE);
    assert_non_null(strstr(err.msg, missing));
    for (int i = 0; i < 3; i++) {
        rpc_result_clear(&res[i]);
        rpc_channel_free(chs[i]);
    }
}

static void test_large_message(void **state) {
    fixture *f = *state;
    fl_error err;
    rpc_channel *ch = rpc_channel_create(f->addr[0], &err);
    size_t n = (size_t)6 << 20; // above gRPC's default 4 MiB receive limit
    char *big = malloc(n + 1);
    memset(big, 'g', n);
    memcpy(big, "big", 3);
    big[n] = 0;
    rpc_result res;
    assert_int_equal(check(ch, big, &res, &err), FL_OK);
    assert_int_equal(((HcResp *)res.resp)->status, (int)n);
    rpc_result_clear(&res);
    free(big);
    rpc_channel_free(ch);
}

static void test_wait_ready_timeout(void **state) {
    fixture *f = *state;
    fl_error err;
    char missing[160];
    snprintf(missing, sizeof missing, "unix:%s/none", f->dir);
    rpc_channel *ch = rpc_channel_create(missing, &err);
    assert_int_equal(rpc_channel_wait_ready(ch, 300, &err), FL_EIO);
    assert_non_null(strstr(err.msg, "not ready"));
    rpc_channel_free(ch);
}

// Server streaming through the raw C core client (fl_rpc has no streaming client).
static void test_server_streaming(void **state) {
    fixture *f = *state;
    grpc_init();
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    grpc_channel *ch = grpc_channel_create(f->addr[0], creds, NULL);
    grpc_channel_credentials_release(creds);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis(10000, GPR_TIMESPAN));
    grpc_call *call =
        grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                 grpc_slice_from_static_string(WATCH), NULL, deadline, NULL);
    HcReq req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    grpc_byte_buffer *bb = rpc_codec_pack(&req.base);
    grpc_metadata_array init_md, trail_md;
    grpc_metadata_array_init(&init_md);
    grpc_metadata_array_init(&trail_md);
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &init_md;
    assert_int_equal(grpc_call_start_batch(call, ops, 4, (void *)1, NULL), GRPC_CALL_OK);
    assert_true(grpc_completion_queue_pluck(cq, (void *)1, deadline, NULL).success);
    int got = 0;
    for (;;) {
        grpc_byte_buffer *in = NULL;
        grpc_op r;
        memset(&r, 0, sizeof r);
        r.op = GRPC_OP_RECV_MESSAGE;
        r.data.recv_message.recv_message = &in;
        assert_int_equal(grpc_call_start_batch(call, &r, 1, (void *)2, NULL), GRPC_CALL_OK);
        grpc_completion_queue_pluck(cq, (void *)2, deadline, NULL);
        if (!in) break;
        HcResp *m =
            (HcResp *)rpc_codec_unpack(in, &grpc__health__v1__health_check_response__descriptor);
        assert_non_null(m);
        assert_int_equal(m->status, got);
        got++;
        protobuf_c_message_free_unpacked(&m->base, NULL);
        grpc_byte_buffer_destroy(in);
    }
    assert_int_equal(got, 3);
    grpc_status_code status;
    grpc_slice details;
    grpc_op st;
    memset(&st, 0, sizeof st);
    st.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    st.data.recv_status_on_client.trailing_metadata = &trail_md;
    st.data.recv_status_on_client.status = &status;
    st.data.recv_status_on_client.status_details = &details;
    assert_int_equal(grpc_call_start_batch(call, &st, 1, (void *)3, NULL), GRPC_CALL_OK);
    grpc_completion_queue_pluck(cq, (void *)3, deadline, NULL);
    assert_int_equal(status, GRPC_STATUS_OK);
    grpc_slice_unref(details);
    grpc_byte_buffer_destroy(bb);
    grpc_metadata_array_destroy(&init_md);
    grpc_metadata_array_destroy(&trail_md);
    grpc_call_unref(call);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(cq);
    grpc_channel_destroy(ch);
    grpc_shutdown();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unary_ok_and_errors),
        cmocka_unit_test(test_reply_from_other_thread),
        cmocka_unit_test(test_fan_out),
        cmocka_unit_test(test_large_message),
        cmocka_unit_test(test_wait_ready_timeout),
        cmocka_unit_test(test_server_streaming),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
