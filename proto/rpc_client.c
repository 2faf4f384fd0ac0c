#include "proto/rpc_client.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "proto/rpc_codec.h"

struct rpc_channel {
    grpc_channel *ch;
    char *target;
};

rpc_channel *rpc_channel_create(const char *target, fl_error *err) {
    rpc_channel *c = calloc(1, sizeof *c);
    if (!c || !(c->target = strdup(target))) {
        free(c);
        fl_error_set(err, FL_ENOMEM, "rpc channel %s: out of memory", target);
        return NULL;
    }
    // Unlimited message sizes (long prompts), and fast reconnects: a restarted shard's socket
    // should be picked up within a fraction of a second, not after gRPC's default 1-120 s backoff.
    grpc_arg args[5];
    memset(args, 0, sizeof args);
    const char *int_keys[5] = {
        GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
        GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
        GRPC_ARG_MAX_RECONNECT_BACKOFF_MS};
    int int_vals[5] = {-1, -1, 100, 100, 1000};
    for (int i = 0; i < 5; i++) {
        args[i].type = GRPC_ARG_INTEGER;
        args[i].key = (char *)int_keys[i];
        args[i].value.integer = int_vals[i];
    }
    grpc_channel_args ca = {5, args};
    grpc_init();
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    c->ch = grpc_channel_create(target, creds, &ca);
    grpc_channel_credentials_release(creds);
    return c;
}

void rpc_channel_free(rpc_channel *ch) {
    if (!ch) return;
    grpc_channel_destroy(ch->ch);
    free(ch->target);
    free(ch);
    grpc_shutdown();
}

const char *rpc_channel_target(const rpc_channel *ch) {
    return ch->target;
}

static gpr_timespec deadline_after(int timeout_ms) {
    if (timeout_ms <= 0) return gpr_inf_future(GPR_CLOCK_REALTIME);
    return gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                        gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
}

fl_code rpc_channel_wait_ready(rpc_channel *ch, int timeout_ms, fl_error *err) {
    gpr_timespec deadline = deadline_after(timeout_ms);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    fl_code rc = FL_OK;
    for (;;) {
        grpc_connectivity_state st = grpc_channel_check_connectivity_state(ch->ch, 1);
        if (st == GRPC_CHANNEL_READY) break;
        grpc_channel_watch_connectivity_state(ch->ch, st, deadline, cq, ch);
        grpc_event ev =
            grpc_completion_queue_pluck(cq, ch, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (!ev.success) { // deadline passed without a state change
            rc = fl_error_set(err, FL_EIO, "rpc channel %s: not ready after %d ms", ch->target,
                              timeout_ms);
            break;
        }
    }
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(cq);
    return rc;
}

void rpc_result_clear(rpc_result *r) {
    if (r->resp) protobuf_c_message_free_unpacked(r->resp, NULL);
    r->resp = NULL;
    r->status = GRPC_STATUS_OK;
    r->msg[0] = 0;
}

// One unary call in flight on a pluck queue; the struct's address is its tag.
typedef struct pending_call {
    grpc_call *call;
    grpc_metadata_array init_md, trailing_md;
    grpc_byte_buffer *send_bb; // this call's reference to the shared request encoding
    grpc_byte_buffer *recv_bb;
    grpc_status_code status;
    grpc_slice details;
    const char *error_string;
    int started;
} pending_call;

static void pending_start(pending_call *p, rpc_channel *ch, grpc_completion_queue *cq,
                          const char *method, grpc_byte_buffer *req_bb, gpr_timespec deadline) {
    memset(p, 0, sizeof *p);
    p->send_bb = grpc_byte_buffer_copy(req_bb); // shares the slices, no byte copy
    grpc_metadata_array_init(&p->init_md);
    grpc_metadata_array_init(&p->trailing_md);
    grpc_slice m = grpc_slice_from_copied_string(method);
    p->call = grpc_channel_create_call(ch->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, m, NULL, deadline,
                                       NULL);
    grpc_slice_unref(m);
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = p->send_bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &p->init_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &p->recv_bb;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &p->trailing_md;
    ops[5].data.recv_status_on_client.status = &p->status;
    ops[5].data.recv_status_on_client.status_details = &p->details;
    ops[5].data.recv_status_on_client.error_string = &p->error_string;
    p->started = grpc_call_start_batch(p->call, ops, 6, p, NULL) == GRPC_CALL_OK;
}

// Waits for p, fills res, and releases everything p holds.
static fl_code pending_finish(pending_call *p, rpc_channel *ch, grpc_completion_queue *cq,
                              const char *method, const ProtobufCMessageDescriptor *resp_desc,
                              rpc_result *res, fl_error *err) {
    memset(res, 0, sizeof *res);
    if (p->started) {
        grpc_completion_queue_pluck(cq, p, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        res->status = p->status;
        if (p->status != GRPC_STATUS_OK) {
            char *d = grpc_slice_to_c_string(p->details);
            snprintf(res->msg, sizeof res->msg, "%s", d);
            gpr_free(d);
        } else if (!p->recv_bb || !(res->resp = rpc_codec_unpack(p->recv_bb, resp_desc))) {
            res->status = GRPC_STATUS_INTERNAL;
            snprintf(res->msg, sizeof res->msg, "malformed or missing %s response",
                     resp_desc->name);
        }
        grpc_slice_unref(p->details);
        gpr_free((void *)p->error_string);
    } else {
        res->status = GRPC_STATUS_INTERNAL;
        snprintf(res->msg, sizeof res->msg, "could not start the call");
    }
    if (p->recv_bb) grpc_byte_buffer_destroy(p->recv_bb);
    grpc_byte_buffer_destroy(p->send_bb);
    grpc_metadata_array_destroy(&p->init_md);
    grpc_metadata_array_destroy(&p->trailing_md);
    grpc_call_unref(p->call);
    if (res->status == GRPC_STATUS_OK) return FL_OK;
    return fl_error_set(err, FL_EBACKEND, "%s %s: %s: %s", ch->target, method,
                        rpc_status_name(res->status), res->msg);
}

static void cq_destroy(grpc_completion_queue *cq) {
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(cq);
}

struct rpc_fanout {
    rpc_channel **chs; // [n], borrowed
    int n;
    const char *method; // of the call in flight, borrowed
    grpc_completion_queue *cq;
    pending_call ps[]; // [n]
};

rpc_fanout *rpc_fanout_create(rpc_channel **chs, int n, fl_error *err) {
    rpc_fanout *f = calloc(1, sizeof *f + sizeof(pending_call) * (size_t)n);
    if (!f) {
        fl_error_set(err, FL_ENOMEM, "rpc fan-out: out of memory");
        return NULL;
    }
    f->chs = chs;
    f->n = n;
    f->cq = grpc_completion_queue_create_for_pluck(NULL);
    return f;
}

void rpc_fanout_free(rpc_fanout *f) {
    if (!f) return;
    cq_destroy(f->cq);
    free(f);
}

void rpc_fanout_start(rpc_fanout *f, const char *method, const ProtobufCMessage *req,
                      int timeout_ms) {
    f->method = method;
    gpr_timespec deadline = deadline_after(timeout_ms);
    grpc_byte_buffer *bb = rpc_codec_pack(req); // one encoding shared by every call
    for (int i = 0; i < f->n; i++)
        pending_start(&f->ps[i], f->chs[i], f->cq, method, bb, deadline);
    grpc_byte_buffer_destroy(bb); // each call holds its own copy
}

fl_code rpc_fanout_finish(rpc_fanout *f, const ProtobufCMessageDescriptor *resp_desc,
                          rpc_result *res, fl_error *err) {
    fl_code rc = FL_OK;
    for (int i = 0; i < f->n; i++) {
        fl_error e;
        fl_code ci = pending_finish(&f->ps[i], f->chs[i], f->cq, f->method, resp_desc, &res[i], &e);
        if (ci != FL_OK && rc == FL_OK) {
            rc = ci;
            if (err) *err = e;
        }
    }
    return rc;
}

fl_code rpc_unary_all(rpc_channel **chs, int n, const char *method, const ProtobufCMessage *req,
                      const ProtobufCMessageDescriptor *resp_desc, int timeout_ms, rpc_result *res,
                      fl_error *err) {
    if (n <= 0) return FL_OK;
    rpc_fanout *f = rpc_fanout_create(chs, n, err);
    if (!f) return err ? err->code : FL_ENOMEM;
    rpc_fanout_start(f, method, req, timeout_ms);
    fl_code rc = rpc_fanout_finish(f, resp_desc, res, err);
    rpc_fanout_free(f);
    return rc;
}

fl_code rpc_unary(rpc_channel *ch, const char *method, const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *resp_desc, int timeout_ms, rpc_result *res,
                  fl_error *err) {
    return rpc_unary_all(&ch, 1, method, req, resp_desc, timeout_ms, res, err);
}

// The tags of a stream's batches are the addresses of these fields.
struct rpc_stream {
    rpc_channel *ch;
    const ProtobufCMessageDescriptor *resp_desc;
    char *method;
    grpc_completion_queue *cq;
    grpc_call *call;
    grpc_metadata_array init_md, trailing_md;
    grpc_byte_buffer *recv_bb;
    grpc_status_code status;
    grpc_slice details;
    const char *error_string;
    char tag_start, tag_msg, tag_status;
    bool start_pending; // the send + initial-metadata batch has not been plucked yet
    bool ended;         // the status was received (or the call never started)
    char msg[512];      // details of a non-OK end
};

static void stream_pluck(rpc_stream *s, void *tag) {
    grpc_completion_queue_pluck(s->cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
}

// Receives the final status; the stream has ended afterwards.
static void stream_recv_status(rpc_stream *s) {
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op.data.recv_status_on_client.trailing_metadata = &s->trailing_md;
    op.data.recv_status_on_client.status = &s->status;
    op.data.recv_status_on_client.status_details = &s->details;
    op.data.recv_status_on_client.error_string = &s->error_string;
    if (grpc_call_start_batch(s->call, &op, 1, &s->tag_status, NULL) == GRPC_CALL_OK) {
        stream_pluck(s, &s->tag_status);
        if (s->status != GRPC_STATUS_OK) {
            char *d = grpc_slice_to_c_string(s->details);
            snprintf(s->msg, sizeof s->msg, "%s", d);
            gpr_free(d);
        }
    } else {
        s->status = GRPC_STATUS_INTERNAL;
        snprintf(s->msg, sizeof s->msg, "could not receive the status");
    }
    s->ended = true;
}

static fl_code stream_error(rpc_stream *s, fl_error *err) {
    return fl_error_set(err, FL_EBACKEND, "%s %s: %s: %s", s->ch->target, s->method,
                        rpc_status_name(s->status), s->msg);
}

rpc_stream *rpc_stream_start(rpc_channel *ch, const char *method, const ProtobufCMessage *req,
                             const ProtobufCMessageDescriptor *resp_desc, int timeout_ms,
                             fl_error *err) {
    rpc_stream *s = calloc(1, sizeof *s);
    if (!s || !(s->method = strdup(method))) {
        free(s);
        fl_error_set(err, FL_ENOMEM, "rpc %s: out of memory", method);
        return NULL;
    }
    s->ch = ch;
    s->resp_desc = resp_desc;
    s->cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_metadata_array_init(&s->init_md);
    grpc_metadata_array_init(&s->trailing_md);
    s->details = grpc_empty_slice();
    grpc_slice m = grpc_slice_from_copied_string(method);
    s->call = grpc_channel_create_call(ch->ch, NULL, GRPC_PROPAGATE_DEFAULTS, s->cq, m, NULL,
                                       deadline_after(timeout_ms), NULL);
    grpc_slice_unref(m);
    grpc_byte_buffer *bb = rpc_codec_pack(req);
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->init_md;
    s->start_pending = grpc_call_start_batch(s->call, ops, 4, &s->tag_start, NULL) == GRPC_CALL_OK;
    grpc_byte_buffer_destroy(bb); // the call holds its own reference
    if (!s->start_pending) {
        fl_error_set(err, FL_EBACKEND, "%s %s: could not start the call", ch->target, method);
        s->ended = true;
        rpc_stream_free(s);
        return NULL;
    }
    return s;
}

fl_code rpc_stream_read(rpc_stream *s, ProtobufCMessage **msg, fl_error *err) {
    *msg = NULL;
    if (s->ended) return s->status == GRPC_STATUS_OK ? FL_OK : stream_error(s, err);
    if (s->start_pending) {
        stream_pluck(s, &s->tag_start);
        s->start_pending = false;
    }
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &s->recv_bb;
    s->recv_bb = NULL;
    if (grpc_call_start_batch(s->call, &op, 1, &s->tag_msg, NULL) == GRPC_CALL_OK)
        stream_pluck(s, &s->tag_msg);
    if (!s->recv_bb) { // end of stream (or failure): the status says which
        stream_recv_status(s);
        return s->status == GRPC_STATUS_OK ? FL_OK : stream_error(s, err);
    }
    *msg = rpc_codec_unpack(s->recv_bb, s->resp_desc);
    grpc_byte_buffer_destroy(s->recv_bb);
    s->recv_bb = NULL;
    if (*msg) return FL_OK;
    grpc_call_cancel(s->call, NULL);
    stream_recv_status(s);
    s->status = GRPC_STATUS_INTERNAL;
    snprintf(s->msg, sizeof s->msg, "malformed %s message", s->resp_desc->name);
    return stream_error(s, err);
}

grpc_status_code rpc_stream_status(const rpc_stream *s) {
    return s->ended ? s->status : GRPC_STATUS_OK;
}

void rpc_stream_free(rpc_stream *s) {
    if (!s) return;
    if (s->call) {
        if (!s->ended) grpc_call_cancel(s->call, NULL);
        if (s->start_pending) stream_pluck(s, &s->tag_start);
        if (!s->ended) stream_recv_status(s);
        grpc_call_unref(s->call);
    }
    grpc_slice_unref(s->details);
    gpr_free((void *)s->error_string);
    grpc_metadata_array_destroy(&s->init_md);
    grpc_metadata_array_destroy(&s->trailing_md);
    if (s->cq) cq_destroy(s->cq);
    free(s->method);
    free(s);
}
