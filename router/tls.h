// TLS for the HTTP listener: one OpenSSL server context (the PEM files of --tls-cert/--tls-key)
// and per-connection state on memory BIOs, so the transport keeps its sockets: received bytes go
// in through tls_conn_read, response bytes through tls_conn_write, and what must go out on the
// socket (handshake, records, alerts, close_notify) comes back from tls_conn_take_output.
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "common/status.h"

typedef struct tls_ctx tls_ctx;
typedef struct tls_conn tls_conn;

// Reads and checks the certificate chain and key (PEM).
fl_code tls_ctx_create(const char *cert_file, const char *key_file, tls_ctx **out, fl_error *err);
void tls_ctx_free(tls_ctx *t);

// NULL: out of memory.
tls_conn *tls_conn_create(tls_ctx *t);
void tls_conn_free(tls_conn *c);

typedef enum tls_status {
    TLS_OK = 0,    // all input consumed (the handshake may still be going on)
    TLS_CLOSED,    // the client sent close_notify: no more input
    TLS_FAILED,    // handshake or record error: the connection must close (err says why)
} tls_status;

// Feeds n received bytes; the plaintext they complete goes to on_plain(user, data, len).
tls_status tls_conn_read(tls_conn *c, const char *in, size_t n,
                         void (*on_plain)(void *user, const char *data, size_t len), void *user,
                         fl_error *err);
// Encrypts n bytes of plaintext (false: the connection is not usable).
bool tls_conn_write(tls_conn *c, const char *data, size_t n);
// Queues close_notify.
void tls_conn_shutdown(tls_conn *c);
// Moves the bytes waiting to go out into *out (malloc'ed, the caller frees) and returns their
// count (0: nothing, *out NULL).
size_t tls_conn_take_output(tls_conn *c, char **out);
