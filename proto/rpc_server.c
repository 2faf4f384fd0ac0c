#include "proto/rpc_server.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "common/log.h"
#include "proto/rpc_codec.h"

typedef enum tag_kind { TAG_NEW_CALL, TAG_RECV, TAG_CLOSE, TAG_SEND, TAG_SHUTDOWN } tag_kind;

typedef struct rpc_tag {
    tag_kind kind;
    rpc_call *call; // NULL for TAG_SHUTDOWN
} rpc_tag;

typedef struct rpc_method {
    char *path;
    const ProtobufCMessageDescriptor *desc;
    rpc_handler_fn fn;
    void *user;
} rpc_method;

// One queued send: a stream message, the final status, or both (unary response + OK).
typedef struct send_item {
    grpc_byte_buffer *bb; // NULL: status only
    int final;
    grpc_status_code code;
    grpc_slice details;
    struct send_item *next;
} send_item;

struct rpc_call {
    rpc_server *srv;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array req_md;
    char *method;
    const rpc_method *m; // NULL: unknown method
    grpc_byte_buffer *recv_bb;
    ProtobufCMessage *req;
    int close_cancelled; // written by grpc for RECV_CLOSE_ON_SERVER
    int cancelled;       // atomic: peer went away
    rpc_tag t_new, t_recv, t_close, t_send;

    // Guards everything below: sends may be queued from any thread.
    pthread_mutex_t mu;
    int refs;     // outstanding grpc batches + the handler's reference until it finishes
    int finished; // finish/fail was called
    int sending;  // a send batch is in flight
    send_item *head, *tail;
    send_item *inflight;
};

struct rpc_server {
    grpc_server *server;
    grpc_completion_queue *cq;
    rpc_method *methods;
    int n_methods;
    pthread_t thread;
    int started;
    int stopping; // atomic: shutdown requested, stop requesting calls
    rpc_tag t_shutdown;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int shutdown_done;
    char *tls_cert, *tls_key; // PEM contents (NULL: plaintext)
    bool (*authorize)(void *user, const char *method, const char *authorization);
    void *auth_user;
};

static grpc_channel_args *server_args(void) {
    // Default receive limit is 4 MiB; prefill batches of long prompts exceed it.
    static grpc_arg args[2];
    static grpc_channel_args ca = {2, args};
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = -1;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    args[1].value.integer = -1;
    return &ca;
}

rpc_server *rpc_server_create(fl_error *err) {
    rpc_server *s = calloc(1, sizeof *s);
    if (!s) {
        fl_error_set(err, FL_ENOMEM, "rpc server: out of memory");
        return NULL;
    }
    grpc_init();
    s->server = grpc_server_create(server_args(), NULL);
    s->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->server, s->cq, NULL);
    s->t_shutdown.kind = TAG_SHUTDOWN;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    return s;
}

fl_code rpc_server_add_method(rpc_server *s, const char *path,
                              const ProtobufCMessageDescriptor *req_desc, rpc_handler_fn fn,
                              void *user, fl_error *err) {
    rpc_method *ms = realloc(s->methods, (size_t)(s->n_methods + 1) * sizeof *ms);
    if (!ms) return fl_error_set(err, FL_ENOMEM, "rpc server: out of memory adding %s", path);
    s->methods = ms;
    ms[s->n_methods] = (rpc_method){strdup(path), req_desc, fn, user};
    s->n_methods++;
    return FL_OK;
}

static char *file_read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0, n;
    char chunk[4096];
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            char *b = realloc(buf, cap);
            if (!b) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = b;
        }
        memcpy(buf + len, chunk, n);
        len += n;
    }
    fclose(f);
    if (buf) buf[len] = 0;
    return buf;
}

fl_code rpc_server_secure(rpc_server *s, const rpc_security *sec, fl_error *err) {
    s->authorize = sec->authorize;
    s->auth_user = sec->user;
    if (!sec->tls_cert_file || !sec->tls_cert_file[0]) return FL_OK;
    free(s->tls_cert);
    free(s->tls_key);
    s->tls_cert = file_read_all(sec->tls_cert_file);
    s->tls_key = sec->tls_key_file ? file_read_all(sec->tls_key_file) : NULL;
    if (!s->tls_cert || !s->tls_key)
        return fl_error_set(err, FL_EIO, "rpc server: cannot read the TLS %s %s",
                            s->tls_cert ? "key" : "certificate",
                            s->tls_cert ? sec->tls_key_file : sec->tls_cert_file);
    return FL_OK;
}

static grpc_server_credentials *server_credentials(const rpc_server *s) {
    if (!s->tls_cert) return grpc_insecure_server_credentials_create();
    grpc_ssl_pem_key_cert_pair pair = {.private_key = s->tls_key, .cert_chain = s->tls_cert};
    return grpc_ssl_server_credentials_create(NULL, &pair, 1, 0, NULL);
}

fl_code rpc_server_listen(rpc_server *s, const char *addr, fl_error *err) {
    grpc_server_credentials *creds = server_credentials(s);
    if (!creds) return fl_error_set(err, FL_EINVAL, "rpc server: bad TLS certificate or key");
    int port = grpc_server_add_http2_port(s->server, addr, creds);
    grpc_server_credentials_release(creds);
    if (port == 0) return fl_error_set(err, FL_EIO, "rpc server: cannot listen on %s", addr);
    return FL_OK;
}

static void call_destroy(rpc_call *c) {
    if (c->call) grpc_call_unref(c->call);
    grpc_call_details_destroy(&c->details);
    grpc_metadata_array_destroy(&c->req_md);
    if (c->recv_bb) grpc_byte_buffer_destroy(c->recv_bb);
    if (c->req) protobuf_c_message_free_unpacked(c->req, NULL);
    free(c->method);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

// Drops one reference; the last one frees the call. Never called with c->mu held.
static void call_unref(rpc_call *c) {
    pthread_mutex_lock(&c->mu);
    int left = --c->refs;
    pthread_mutex_unlock(&c->mu);
    if (left == 0) call_destroy(c);
}

static void send_item_free(send_item *it) {
    if (it->bb) grpc_byte_buffer_destroy(it->bb);
    if (it->final) grpc_slice_unref(it->details);
    free(it);
}

// Starts the next queued send when none is in flight (gRPC allows one SEND_MESSAGE at a time
// per call). Called with c->mu held.
static void call_kick_locked(rpc_call *c) {
    if (c->sending || !c->head) return;
    send_item *it = c->head;
    c->head = it->next;
    if (!c->head) c->tail = NULL;
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (it->bb) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = it->bb;
        n++;
    }
    if (it->final) {
        ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        ops[n].data.send_status_from_server.status = it->code;
        ops[n].data.send_status_from_server.status_details = &it->details;
        n++;
    }
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, &c->t_send, NULL);
    if (e != GRPC_CALL_OK) {
        log_warn("rpc server: %s: start send failed (%d)", c->method, (int)e);
        send_item_free(it);
        return;
    }
    c->inflight = it;
    c->sending = 1;
    c->refs++;
}

static void call_enqueue(rpc_call *c, send_item *it) {
    pthread_mutex_lock(&c->mu);
    if (c->tail)
        c->tail->next = it;
    else
        c->head = it;
    c->tail = it;
    call_kick_locked(c);
    pthread_mutex_unlock(&c->mu);
}

void rpc_call_send(rpc_call *c, const ProtobufCMessage *msg) {
    send_item *it = calloc(1, sizeof *it);
    if (!it) return; // out of memory: the message is lost, the final status still goes out
    it->bb = rpc_codec_pack(msg);
    call_enqueue(c, it);
}

static void call_end(rpc_call *c, const ProtobufCMessage *msg, grpc_status_code code,
                     const char *details) {
    pthread_mutex_lock(&c->mu);
    int again = c->finished;
    c->finished = 1;
    pthread_mutex_unlock(&c->mu);
    if (again) {
        log_error("rpc server: %s finished twice", c->method);
        return;
    }
    send_item *it = calloc(1, sizeof *it);
    if (it) {
        it->bb = msg ? rpc_codec_pack(msg) : NULL;
        it->final = 1;
        it->code = code;
        it->details = grpc_slice_from_copied_string(details ? details : "");
        call_enqueue(c, it);
    }
    call_unref(c); // the handler's reference
}

void rpc_call_finish(rpc_call *c, const ProtobufCMessage *msg) {
    call_end(c, msg, GRPC_STATUS_OK, NULL);
}

void rpc_call_fail(rpc_call *c, grpc_status_code code, const char *msg) {
    call_end(c, NULL, code, msg);
}

int rpc_call_cancelled(rpc_call *c) {
    return __atomic_load_n(&c->cancelled, __ATOMIC_ACQUIRE);
}

const char *rpc_call_method(const rpc_call *c) {
    return c->method ? c->method : "?";
}

// Keeps one grpc_server_request_call outstanding so the next call can arrive.
static void server_request_call(rpc_server *s) {
    rpc_call *c = calloc(1, sizeof *c);
    if (!c) {
        log_error("rpc server: out of memory; no longer accepting calls");
        return;
    }
    c->srv = s;
    pthread_mutex_init(&c->mu, NULL);
    grpc_call_details_init(&c->details);
    grpc_metadata_array_init(&c->req_md);
    c->t_new = (rpc_tag){TAG_NEW_CALL, c};
    c->t_recv = (rpc_tag){TAG_RECV, c};
    c->t_close = (rpc_tag){TAG_CLOSE, c};
    c->t_send = (rpc_tag){TAG_SEND, c};
    grpc_call_error e = grpc_server_request_call(s->server, &c->call, &c->details, &c->req_md,
                                                 s->cq, s->cq, &c->t_new);
    if (e != GRPC_CALL_OK) {
        log_error("rpc server: request_call failed (%d)", (int)e);
        call_destroy(c);
    }
}

static void on_new_call(rpc_server *s, rpc_call *c, int ok) {
    if (!ok) { // server shutting down: the pending request was cancelled
        call_destroy(c);
        return;
    }
    if (!__atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE)) server_request_call(s);
    c->method = grpc_slice_to_c_string(c->details.method);
    for (int i = 0; i < s->n_methods; i++)
        if (strcmp(s->methods[i].path, c->method) == 0) c->m = &s->methods[i];

    c->refs = 2; // the close batch and the receive batch below
    grpc_op close_op;
    memset(&close_op, 0, sizeof close_op);
    close_op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    close_op.data.recv_close_on_server.cancelled = &c->close_cancelled;
    if (grpc_call_start_batch(c->call, &close_op, 1, &c->t_close, NULL) != GRPC_CALL_OK) c->refs--;
    // Initial metadata goes out now: a status sent without it never completes in 1.51.
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_RECV_MESSAGE;
    ops[1].data.recv_message.recv_message = &c->recv_bb;
    if (grpc_call_start_batch(c->call, ops, 2, &c->t_recv, NULL) != GRPC_CALL_OK) c->refs--;
    if (c->refs == 0) call_destroy(c);
}

// The call's "authorization" metadata, copied into buf (NULL when absent or too long).
static const char *call_authorization(const rpc_call *c, char *buf, size_t cap) {
    for (size_t i = 0; i < c->req_md.count; i++) {
        const grpc_metadata *md = &c->req_md.metadata[i];
        if (!grpc_slice_str_cmp(md->key, "authorization")) {
            size_t n = GRPC_SLICE_LENGTH(md->value);
            if (n >= cap) return NULL;
            memcpy(buf, GRPC_SLICE_START_PTR(md->value), n);
            buf[n] = 0;
            return buf;
        }
    }
    return NULL;
}

static bool call_authorized(const rpc_call *c) {
    const rpc_server *s = c->srv;
    if (!s->authorize) return true;
    char buf[1024];
    return s->authorize(s->auth_user, c->method, call_authorization(c, buf, sizeof buf));
}

static void on_recv(rpc_call *c, int ok) {
    // The handler's reference; released by rpc_call_finish / rpc_call_fail.
    pthread_mutex_lock(&c->mu);
    c->refs++;
    pthread_mutex_unlock(&c->mu);
    if (!call_authorized(c)) {
        rpc_call_fail(c, GRPC_STATUS_UNAUTHENTICATED, "missing or wrong bearer token");
    } else if (!c->m) {
        rpc_call_fail(c, GRPC_STATUS_UNIMPLEMENTED, "unknown method");
    } else if (!ok || !c->recv_bb) {
        rpc_call_fail(c, GRPC_STATUS_INTERNAL, "no request message");
    } else {
        c->req = rpc_codec_unpack(c->recv_bb, c->m->desc);
        grpc_byte_buffer_destroy(c->recv_bb);
        c->recv_bb = NULL;
        if (!c->req) {
            rpc_call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed request message");
        } else {
            c->m->fn(c, c->req, c->m->user);
        }
    }
    call_unref(c); // the receive batch
}

static void on_send_done(rpc_call *c, int ok) {
    pthread_mutex_lock(&c->mu);
    send_item_free(c->inflight);
    c->inflight = NULL;
    c->sending = 0;
    if (!ok) { // the peer is gone: the rest of the stream cannot be delivered
        __atomic_store_n(&c->cancelled, 1, __ATOMIC_RELEASE);
        while (c->head) {
            send_item *next = c->head->next;
            send_item_free(c->head);
            c->head = next;
        }
        c->tail = NULL;
    }
    call_kick_locked(c);
    pthread_mutex_unlock(&c->mu);
    call_unref(c);
}

static void *server_thread(void *arg) {
    rpc_server *s = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
        if (ev.type != GRPC_OP_COMPLETE) continue;
        rpc_tag *t = ev.tag;
        switch (t->kind) {
        case TAG_NEW_CALL:
            on_new_call(s, t->call, ev.success);
            break;
        case TAG_RECV:
            on_recv(t->call, ev.success);
            break;
        case TAG_CLOSE:
            if (t->call->close_cancelled)
                __atomic_store_n(&t->call->cancelled, 1, __ATOMIC_RELEASE);
            call_unref(t->call);
            break;
        case TAG_SEND:
            on_send_done(t->call, ev.success);
            break;
        case TAG_SHUTDOWN:
            pthread_mutex_lock(&s->mu);
            s->shutdown_done = 1;
            pthread_cond_broadcast(&s->cv);
            pthread_mutex_unlock(&s->mu);
            grpc_completion_queue_shutdown(s->cq);
            break;
        }
    }
    return NULL;
}

fl_code rpc_server_start(rpc_server *s, fl_error *err) {
    grpc_server_start(s->server);
    server_request_call(s);
    if (pthread_create(&s->thread, NULL, server_thread, s) != 0)
        return fl_error_set(err, FL_ENOMEM, "rpc server: cannot start the server thread");
    s->started = 1;
    return FL_OK;
}

void rpc_server_shutdown(rpc_server *s, int grace_ms) {
    if (!s->started) return;
    __atomic_store_n(&s->stopping, 1, __ATOMIC_RELEASE);
    grpc_server_shutdown_and_notify(s->server, s->cq, &s->t_shutdown);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += grace_ms / 1000;
    until.tv_nsec += (long)(grace_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    while (!s->shutdown_done && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&s->cv, &s->mu, &until);
    int done = s->shutdown_done; // read under mu: the server thread sets it (TSan found the race)
    pthread_mutex_unlock(&s->mu);
    // Calls still open after the grace period are cancelled so shutdown completes.
    if (!done) grpc_server_cancel_all_calls(s->server);
    pthread_join(s->thread, NULL);
    s->started = 0;
}

// A server that never started has no thread draining its queue: shut it down here.
static void server_shutdown_unstarted(rpc_server *s) {
    grpc_server_shutdown_and_notify(s->server, s->cq, &s->t_shutdown);
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
        if (ev.type == GRPC_OP_COMPLETE && ev.tag == &s->t_shutdown)
            grpc_completion_queue_shutdown(s->cq);
    }
}

void rpc_server_free(rpc_server *s) {
    if (!s) return;
    if (s->started)
        rpc_server_shutdown(s, 0);
    else if (!s->shutdown_done)
        server_shutdown_unstarted(s);
    if (s->server) grpc_server_destroy(s->server);
    if (s->cq) grpc_completion_queue_destroy(s->cq);
    for (int i = 0; i < s->n_methods; i++)
        free(s->methods[i].path);
    free(s->methods);
    free(s->tls_cert);
    free(s->tls_key);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
    grpc_shutdown();
}
