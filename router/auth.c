#include "router/auth.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct auth {
    char *key; // NULL: authentication off
    size_t key_len;
};

auth *auth_create(const char *key) {
    auth *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    if (key && *key) {
        a->key = strdup(key);
        if (!a->key) {
            free(a);
            return NULL;
        }
        a->key_len = strlen(key);
    }
    return a;
}

void auth_free(auth *a) {
    if (!a) return;
    if (a->key) memset(a->key, 0, a->key_len); // not left in freed memory
    free(a->key);
    free(a);
}

bool auth_enabled(const auth *a) {
    return a && a->key;
}

// Probes (Kubernetes, Docker, load balancers) reach these without the key.
static bool path_exempt(const char *path) {
    static const char *const open[] = {"/health", "/ping", "/grpc.health.v1.Health/Check",
                                       "/grpc.health.v1.Health/Watch"};
    for (size_t i = 0; path && i < sizeof open / sizeof open[0]; i++)
        if (!strcmp(path, open[i])) return true;
    return false;
}

// Compares every byte of the longer length whatever matches, so the time taken tells nothing
// about how much of a guess was right (only the key's length is not hidden).
static bool equal_const_time(const char *a, size_t a_len, const char *b, size_t b_len) {
    size_t n = a_len > b_len ? a_len : b_len;
    unsigned char diff = (unsigned char)(a_len != b_len);
    for (size_t i = 0; i < n; i++) {
        unsigned char x = i < a_len ? (unsigned char)a[i] : 0;
        unsigned char y = i < b_len ? (unsigned char)b[i] : 0;
        diff |= x ^ y;
    }
    return diff == 0;
}

bool auth_request_allowed(const auth *a, const char *path, const char *authorization) {
    if (!auth_enabled(a) || path_exempt(path)) return true;
    if (!authorization || strncasecmp(authorization, "bearer ", 7) != 0) return false;
    const char *tok = authorization + 7;
    while (*tok == ' ')
        tok++;
    size_t len = strlen(tok);
    while (len > 0 && (tok[len - 1] == ' ' || tok[len - 1] == '\t'))
        len--;
    return equal_const_time(tok, len, a->key, a->key_len);
}

bool auth_rpc_authorize(void *user, const char *method, const char *authorization) {
    return auth_request_allowed(user, method, authorization);
}
