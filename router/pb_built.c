#include "router/pb_built.h"

#include <stdlib.h>
#include <string.h>

struct pb_built {
    void **ptrs;
    int n, cap;
    bool oom;
    ProtobufCMessage *msg;
};

void *pb_built_alloc(pb_built *b, size_t size) {
    if (b->n == b->cap) {
        int cap = b->cap ? b->cap * 2 : 16;
        void **p = realloc(b->ptrs, sizeof *p * (size_t)cap);
        if (!p) {
            b->oom = true;
            return NULL;
        }
        b->ptrs = p;
        b->cap = cap;
    }
    void *m = calloc(1, size ? size : 1);
    if (!m) {
        b->oom = true;
        return NULL;
    }
    b->ptrs[b->n++] = m;
    return m;
}

char *pb_built_strdup(pb_built *b, const char *s) {
    size_t n = strlen(s ? s : "");
    char *d = pb_built_alloc(b, n + 1);
    if (d && s) memcpy(d, s, n);
    return d;
}

pb_built *pb_built_new(void) {
    return calloc(1, sizeof(pb_built));
}

pb_built *pb_built_done(pb_built *b, void *msg) {
    if (!b) return NULL;
    b->msg = msg;
    if (b->oom || !msg) {
        pb_built_free(b);
        return NULL;
    }
    return b;
}

const ProtobufCMessage *pb_built_msg(const pb_built *b) {
    return b->msg;
}

void pb_built_free(pb_built *b) {
    if (!b) return;
    for (int i = 0; i < b->n; i++)
        free(b->ptrs[i]);
    free(b->ptrs);
    free(b);
}
