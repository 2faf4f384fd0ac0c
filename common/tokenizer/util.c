// Small helpers every part of the tokenizer uses (growable buffers, span and id lists, a JSON
// flag). They depend on nothing else in common/tokenizer/, so the parts form no cycle:
// tokenizer.c (loading) -> pretok.c, bpe.c; encode.c -> pretok.c, bpe.c; all -> util.c.
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/tokenizer/impl.h"

fl_code tok_buf_append(tok_buf *b, const void *data, size_t len) {
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p) return FL_ENOMEM;
        b->data = p;
        b->cap = cap;
    }
    if (len) memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = 0;
    return FL_OK;
}

fl_code tok_spans_push(tok_spans *s, size_t off, size_t len) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        tok_span *v = realloc(s->v, cap * sizeof *v);
        if (!v) return FL_ENOMEM;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = (tok_span){off, len};
    return FL_OK;
}

fl_code tok_ids_push(int32_t **ids, int *n_ids, int *cap_ids, int32_t id) {
    if (*n_ids == *cap_ids) {
        int cap = *cap_ids ? *cap_ids * 2 : 64;
        int32_t *v = realloc(*ids, (size_t)cap * sizeof *v);
        if (!v) return FL_ENOMEM;
        *ids = v;
        *cap_ids = cap;
    }
    (*ids)[(*n_ids)++] = id;
    return FL_OK;
}

int tok_json_flag(const cJSON *j, const char *name, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, name);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}
