#include "router/tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <limits.h>
#include <stdlib.h>

enum { PLAIN_CHUNK = 16 << 10 };

struct tls_ctx {
    SSL_CTX *ssl;
};

struct tls_conn {
    SSL *ssl;
    BIO *in, *out; // owned by ssl: received ciphertext, ciphertext to send
};

// The first queued OpenSSL error as text ("" when none), the queue cleared.
static const char *ssl_error_text(char *buf, size_t cap) {
    unsigned long e = ERR_get_error();
    buf[0] = 0;
    if (e) ERR_error_string_n(e, buf, cap);
    ERR_clear_error();
    return buf;
}

fl_code tls_ctx_create(const char *cert_file, const char *key_file, tls_ctx **out, fl_error *err) {
    char msg[256];
    tls_ctx *t = calloc(1, sizeof *t);
    if (!t) return fl_error_set(err, FL_ENOMEM, "tls: out of memory");
    t->ssl = SSL_CTX_new(TLS_server_method());
    if (!t->ssl) {
        free(t);
        return fl_error_set(err, FL_ENOMEM, "tls: %s", ssl_error_text(msg, sizeof msg));
    }
    SSL_CTX_set_min_proto_version(t->ssl, TLS1_2_VERSION);
    SSL_CTX_set_options(t->ssl, SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_use_certificate_chain_file(t->ssl, cert_file) != 1 ||
        SSL_CTX_use_PrivateKey_file(t->ssl, key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(t->ssl) != 1) {
        fl_error_set(err, FL_EINVAL, "tls: bad certificate %s or key %s: %s", cert_file,
                     key_file, ssl_error_text(msg, sizeof msg));
        tls_ctx_free(t);
        return err ? err->code : FL_EINVAL;
    }
    *out = t;
    return FL_OK;
}

void tls_ctx_free(tls_ctx *t) {
    if (!t) return;
    SSL_CTX_free(t->ssl);
    free(t);
}

tls_conn *tls_conn_create(tls_ctx *t) {
    tls_conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->ssl = SSL_new(t->ssl);
    c->in = BIO_new(BIO_s_mem());
    c->out = BIO_new(BIO_s_mem());
    if (!c->ssl || !c->in || !c->out) {
        SSL_free(c->ssl);
        BIO_free(c->in);
        BIO_free(c->out);
        free(c);
        return NULL;
    }
    // An empty read BIO means "wait for more" (SSL_ERROR_WANT_READ), not EOF.
    BIO_set_mem_eof_return(c->in, -1);
    BIO_set_mem_eof_return(c->out, -1);
    SSL_set_bio(c->ssl, c->in, c->out);
    SSL_set_accept_state(c->ssl);
    return c;
}

void tls_conn_free(tls_conn *c) {
    if (!c) return;
    SSL_free(c->ssl); // frees both BIOs
    free(c);
}

tls_status tls_conn_read(tls_conn *c, const char *in, size_t n,
                         void (*on_plain)(void *user, const char *data, size_t len), void *user,
                         fl_error *err) {
    if (n > 0 && BIO_write(c->in, in, (int)n) != (int)n) {
        fl_error_set(err, FL_ENOMEM, "tls: out of memory");
        return TLS_FAILED;
    }
    char buf[PLAIN_CHUNK];
    for (;;) {
        int r = SSL_read(c->ssl, buf, sizeof buf);
        if (r > 0) {
            on_plain(user, buf, (size_t)r);
            continue;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return TLS_OK;
        if (e == SSL_ERROR_ZERO_RETURN) return TLS_CLOSED;
        char msg[256];
        const char *why = ssl_error_text(msg, sizeof msg);
        fl_error_set(err, FL_EIO, "tls: %s failed: %s",
                     SSL_is_init_finished(c->ssl) ? "read" : "handshake",
                     why[0] ? why : "connection error");
        return TLS_FAILED;
    }
}

bool tls_conn_write(tls_conn *c, const char *data, size_t n) {
    if (n == 0) return true;
    if (n > INT_MAX) return false;
    int r = SSL_write(c->ssl, data, (int)n);
    if (r == (int)n) return true;
    ERR_clear_error();
    return false;
}

void tls_conn_shutdown(tls_conn *c) {
    if (SSL_is_init_finished(c->ssl)) SSL_shutdown(c->ssl);
    ERR_clear_error();
}

size_t tls_conn_take_output(tls_conn *c, char **out) {
    *out = NULL;
    size_t n = BIO_ctrl_pending(c->out);
    if (n == 0) return 0;
    char *b = malloc(n);
    if (!b) return 0;
    int r = BIO_read(c->out, b, (int)n);
    if (r <= 0) {
        free(b);
        return 0;
    }
    *out = b;
    return (size_t)r;
}
