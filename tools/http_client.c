#define _GNU_SOURCE // memmem, strcasestr
#include "tools/http_client.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HTTP_MAX_HEADER (64u << 10)
#define HTTP_MAX_BODY   (256u << 20)

struct http_client {
    char url[512];
    char host[256];
    char port[8];
    int timeout_ms;
};

fl_code http_client_create(const char *url, int timeout_ms, http_client **out, fl_error *err) {
    *out = NULL;
    if (!strncmp(url, "https://", 8))
        return fl_error_set(err, FL_EUNSUPPORTED,
                            "%s: https is not supported (use http://host:port, or a TLS proxy)",
                            url);
    if (strncmp(url, "http://", 7))
        return fl_error_set(err, FL_EINVAL, "%s: the server URL must start with http://", url);
    const char *h = url + 7, *end = h + strcspn(h, "/?#");
    if (end[0] == '/' && end[1] && end[1] != '?' && end[1] != '#')
        return fl_error_set(err, FL_EINVAL, "%s: give the server's base URL (no path)", url);
    const char *colon = NULL;
    if (*h == '[') { // [v6]:port
        const char *rb = memchr(h, ']', (size_t)(end - h));
        if (!rb) return fl_error_set(err, FL_EINVAL, "%s: unterminated [IPv6] host", url);
        colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(h, ':', (size_t)(end - h));
    }
    const char *hend = colon ? colon : end;
    if (*h == '[') h++, hend = memchr(h, ']', (size_t)(end - h));
    size_t hlen = (size_t)(hend - h);
    http_client *c = calloc(1, sizeof *c);
    if (!c) return fl_error_set(err, FL_ENOMEM, "out of memory");
    size_t plen = colon ? (size_t)(end - colon - 1) : 2;
    if (!hlen || hlen >= sizeof c->host || plen == 0 || plen >= sizeof c->port) {
        free(c);
        return fl_error_set(err, FL_EINVAL, "%s: expected http://host:port", url);
    }
    memcpy(c->host, h, hlen);
    if (colon) {
        memcpy(c->port, colon + 1, plen);
        for (size_t i = 0; i < plen; i++)
            if (c->port[i] < '0' || c->port[i] > '9') {
                free(c);
                return fl_error_set(err, FL_EINVAL, "%s: the port must be a number", url);
            }
    } else {
        strcpy(c->port, "80");
    }
    snprintf(c->url, sizeof c->url, "%.*s", (int)(end - url), url);
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : 600000;
    *out = c;
    return FL_OK;
}

void http_client_free(http_client *c) { free(c); }

const char *http_client_url(const http_client *c) { return c->url; }

void http_response_clear(http_response *r) {
    free(r->body);
    memset(r, 0, sizeof *r);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

// Waits for fd to be ready for events until the deadline; 0 when ready, else an error.
static fl_code wait_fd(const http_client *c, int fd, short events, double deadline,
                       const char *what, fl_error *err) {
    for (;;) {
        int left = (int)(deadline - now_ms());
        if (left <= 0)
            return fl_error_set(err, FL_EIO, "%s: %s: timed out after %d ms", c->url, what,
                                c->timeout_ms);
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, left);
        if (n > 0) return FL_OK;
        if (n < 0 && errno != EINTR)
            return fl_error_set(err, FL_EIO, "%s: %s: %s", c->url, what, strerror(errno));
    }
}

static fl_code connect_to(const http_client *c, double deadline, int *out, fl_error *err) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int g = getaddrinfo(c->host, c->port, &hints, &res);
    if (g)
        return fl_error_set(err, FL_EIO, "%s: cannot resolve %s: %s", c->url, c->host,
                            gai_strerror(g));
    fl_code rc = FL_EIO;
    char why[256] = "no address";
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        int r = connect(fd, a->ai_addr, a->ai_addrlen);
        if (r < 0 && errno == EINPROGRESS) {
            fl_error e2 = {0};
            if (wait_fd(c, fd, POLLOUT, deadline, "connect", &e2)) {
                snprintf(why, sizeof why, "timed out after %d ms", c->timeout_ms);
                close(fd);
                continue;
            }
            int so = 0;
            socklen_t sl = sizeof so;
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl);
            r = so ? -1 : 0;
            errno = so;
        }
        if (r == 0) {
            *out = fd;
            rc = FL_OK;
            break;
        }
        snprintf(why, sizeof why, "%s", strerror(errno));
        close(fd);
    }
    freeaddrinfo(res);
    if (rc)
        return fl_error_set(err, FL_EIO, "%s: cannot connect to %s:%s: %s", c->url, c->host,
                            c->port, why);
    return FL_OK;
}

static fl_code send_all(const http_client *c, int fd, const char *p, size_t n, double deadline,
                        fl_error *err) {
    while (n) {
        fl_code rc = wait_fd(c, fd, POLLOUT, deadline, "send", err);
        if (rc) return rc;
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            return fl_error_set(err, FL_EIO, "%s: send: %s", c->url, strerror(errno));
        }
        p += w;
        n -= (size_t)w;
    }
    return FL_OK;
}

fl_code http_chunked_decode(char *src, size_t len, size_t *out_len, fl_error *err) {
    size_t in = 0, out = 0;
    for (;;) {
        char *eol = memmem(src + in, len - in, "\r\n", 2);
        if (!eol) return fl_error_set(err, FL_EFORMAT, "chunked body: truncated chunk size");
        char *end = NULL;
        errno = 0;
        unsigned long long sz = strtoull(src + in, &end, 16);
        if (end == src + in || errno || (*end != '\r' && *end != ';'))
            return fl_error_set(err, FL_EFORMAT, "chunked body: bad chunk size '%.*s'",
                                (int)(eol - (src + in) < 16 ? eol - (src + in) : 16), src + in);
        in = (size_t)(eol - src) + 2;
        if (sz == 0) break; // trailers (if any) are ignored
        if (sz > len - in || len - in - sz < 2 || memcmp(src + in + sz, "\r\n", 2))
            return fl_error_set(err, FL_EFORMAT, "chunked body: truncated chunk of %llu bytes",
                                sz);
        memmove(src + out, src + in, sz);
        out += sz;
        in += sz + 2;
    }
    src[out] = 0;
    *out_len = out;
    return FL_OK;
}

// The value of header `name` in the header block hdr (NUL-terminated), copied into v.
static int header_get(const char *hdr, const char *name, char *v, size_t cap) {
    size_t nl = strlen(name);
    for (const char *l = strstr(hdr, "\r\n"); l && l[2]; l = strstr(l + 2, "\r\n")) {
        const char *k = l + 2;
        if (!strncasecmp(k, name, nl) && k[nl] == ':') {
            k += nl + 1;
            while (*k == ' ' || *k == '\t')
                k++;
            size_t n = strcspn(k, "\r");
            snprintf(v, cap, "%.*s", (int)n, k);
            return 1;
        }
    }
    return 0;
}

// Reads until the server closes, the body is complete, or an error: buf holds everything read.
static fl_code read_response(const http_client *c, int fd, double deadline, http_response *resp,
                             fl_error *err) {
    size_t cap = 16384, len = 0, hdr_end = 0;
    long long want = -1; // body length from Content-Length
    int chunked = 0;
    char *buf = malloc(cap);
    if (!buf) return fl_error_set(err, FL_ENOMEM, "out of memory");
    fl_code rc = FL_OK;
    for (;;) {
        if (hdr_end && want >= 0 && len - hdr_end >= (size_t)want) break;
        if (hdr_end && chunked && len - hdr_end >= 5 &&
            (!memcmp(buf + len - 5, "0\r\n\r\n", 5)))
            break;
        if (len + 4096 + 1 > cap) {
            if (cap >= HTTP_MAX_BODY) {
                rc = fl_error_set(err, FL_EFORMAT, "%s: response larger than %u MiB", c->url,
                                  HTTP_MAX_BODY >> 20);
                break;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                rc = fl_error_set(err, FL_ENOMEM, "out of memory");
                break;
            }
            buf = nb;
            cap *= 2;
        }
        if ((rc = wait_fd(c, fd, POLLIN, deadline, "waiting for the response", err))) break;
        ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            rc = fl_error_set(err, FL_EIO, "%s: read: %s", c->url, strerror(errno));
            break;
        }
        if (r == 0) {
            if (!hdr_end)
                rc = fl_error_set(err, FL_EIO, "%s: the server closed the connection %s",
                                  c->url, len ? "inside the response headers" : "without a response");
            else if (want >= 0 && len - hdr_end < (size_t)want)
                rc = fl_error_set(err, FL_EIO, "%s: the response body ended after %zu of %lld bytes",
                                  c->url, len - hdr_end, want);
            break;
        }
        len += (size_t)r;
        buf[len] = 0;
        if (!hdr_end) {
            char *e = strstr(buf, "\r\n\r\n");
            if (!e) {
                if (len > HTTP_MAX_HEADER) {
                    rc = fl_error_set(err, FL_EFORMAT, "%s: response headers too large", c->url);
                    break;
                }
                continue;
            }
            hdr_end = (size_t)(e - buf) + 4;
            int major, minor, status;
            if (sscanf(buf, "HTTP/%d.%d %d", &major, &minor, &status) != 3) {
                rc = fl_error_set(err, FL_EFORMAT, "%s: malformed status line '%.*s'", c->url,
                                  (int)strcspn(buf, "\r\n") < 80 ? (int)strcspn(buf, "\r\n") : 80,
                                  buf);
                break;
            }
            resp->status = status;
            buf[hdr_end - 2] = 0; // headers end with "\r\n" then NUL for header_get
            char v[64];
            if (header_get(buf, "transfer-encoding", v, sizeof v) && strcasestr(v, "chunked"))
                chunked = 1;
            else if (header_get(buf, "content-length", v, sizeof v))
                want = strtoll(v, NULL, 10);
            buf[hdr_end - 2] = '\r';
            if (status == 204 || status == 304) want = 0;
        }
    }
    if (!rc) {
        size_t blen = len - hdr_end;
        memmove(buf, buf + hdr_end, blen);
        buf[blen] = 0;
        if (want >= 0 && blen > (size_t)want) blen = (size_t)want, buf[blen] = 0;
        if (chunked && (rc = http_chunked_decode(buf, blen, &blen, err)))
            fl_error_wrap(err, "%s", c->url);
        resp->body = buf;
        resp->body_len = blen;
    }
    if (rc) free(buf);
    return rc;
}

fl_code http_client_request(http_client *c, const char *method, const char *path,
                            const char *content_type, const char *body, size_t body_len,
                            http_response *resp, fl_error *err) {
    memset(resp, 0, sizeof *resp);
    double deadline = now_ms() + c->timeout_ms;
    int fd = -1;
    fl_code rc = connect_to(c, deadline, &fd, err);
    if (rc) return rc;
    char head[1024];
    int n = body ? snprintf(head, sizeof head,
                            "%s %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: falconlite-eval\r\n"
                            "Accept: application/json\r\nConnection: close\r\n"
                            "Content-Type: %s\r\nContent-Length: %zu\r\n\r\n",
                            method, path, c->host, c->port, content_type, body_len)
                 : snprintf(head, sizeof head,
                            "%s %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: falconlite-eval\r\n"
                            "Accept: application/json\r\nConnection: close\r\n\r\n",
                            method, path, c->host, c->port);
    rc = send_all(c, fd, head, (size_t)n, deadline, err);
    if (!rc && body) rc = send_all(c, fd, body, body_len, deadline, err);
    if (!rc) rc = read_response(c, fd, deadline, resp, err);
    close(fd);
    return rc;
}
