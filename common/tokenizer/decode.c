// Decoding: ids -> the decoder's bytes (ByteLevel: characters back to bytes; none: tokens joined
// with " ", as HF) -> valid UTF-8 with String::from_utf8_lossy's replacements. The stream holds
// back only a well-formed but unfinished character, so its chunks concatenate to the full decode.
#include <stdlib.h>
#include <string.h>

#include "common/tokenizer.h"
#include "common/tokenizer/impl.h"
#include "common/utf8.h"

// Appends the decoder's bytes for id (nothing for unknown ids or skipped specials, as HF).
static fl_code tok_decode_append(const tokenizer *tok, int32_t id, int skip_special, int *any,
                                 tok_buf *raw) {
    if (id < 0 || id >= tok->vocab_size || !tok->piece[id]) return FL_OK;
    if (skip_special && tok->special[id]) return FL_OK;
    fl_code rc = FL_OK;
    if (tok->decoder == TOK_DECODER_NONE && *any)
        rc = tok_buf_append(raw, " ", 1); // HF joins with " "
    *any = 1;
    if (!rc) rc = tok_buf_append(raw, tok->piece[id], tok->piece_len[id]);
    return rc;
}

// Converts raw[0, *used) to valid UTF-8 in *out (String::from_utf8_lossy). With hold, a
// well-formed but unfinished tail is left unconsumed; *used is set to the bytes consumed.
static fl_code tok_lossy(const tok_buf *raw, size_t *used, int hold, tok_buf *out) {
    size_t i = 0, n = *used;
    fl_code rc = tok_buf_append(out, "", 0);
    while (i < n && !rc) {
        utf8_unit kind;
        size_t l = utf8_scan((const uint8_t *)raw->data + i, n - i, &kind);
        if (kind == UTF8_INCOMPLETE && hold) break;
        rc = kind == UTF8_VALID ? tok_buf_append(out, raw->data + i, l)
                                : tok_buf_append(out, UTF8_REPLACEMENT, 3);
        i += l;
    }
    *used = i;
    return rc;
}

fl_code tokenizer_decode(const tokenizer *tok, const int32_t *ids, int n_ids, int skip_special,
                         char **text, size_t *len, fl_error *err) {
    tok_buf raw = {0}, out = {0};
    int any = 0;
    fl_code rc = FL_OK;
    for (int i = 0; i < n_ids && !rc; i++)
        rc = tok_decode_append(tok, ids[i], skip_special, &any, &raw);
    size_t used = raw.len;
    if (!rc) rc = tok_lossy(&raw, &used, 0, &out);
    free(raw.data);
    if (rc) {
        free(out.data);
        *text = NULL;
        return fl_error_set(err, rc, "tokenizer: out of memory decoding %d ids", n_ids);
    }
    *text = out.data;
    if (len) *len = out.len;
    return FL_OK;
}

struct detok_stream {
    const tokenizer *tok;
    int skip_special;
    int any;      // a token has been emitted (the null decoder separates tokens with " ")
    tok_buf held; // bytes of an unfinished character
};

detok_stream *detok_stream_create(const tokenizer *tok, int skip_special) {
    detok_stream *ds = calloc(1, sizeof *ds);
    if (!ds) return NULL;
    ds->tok = tok;
    ds->skip_special = skip_special;
    return ds;
}

void detok_stream_free(detok_stream *ds) {
    if (!ds) return;
    free(ds->held.data);
    free(ds);
}

static fl_code detok_stream_emit(detok_stream *ds, int hold, char **out, size_t *len,
                                 fl_error *err) {
    tok_buf text = {0};
    size_t used = ds->held.len;
    fl_code rc = tok_lossy(&ds->held, &used, hold, &text);
    if (rc) {
        free(text.data);
        *out = NULL;
        return fl_error_set(err, rc, "tokenizer: out of memory in streaming decode");
    }
    if (used) memmove(ds->held.data, ds->held.data + used, ds->held.len - used);
    ds->held.len -= used;
    *out = text.data;
    if (len) *len = text.len;
    return FL_OK;
}

fl_code detok_stream_push(detok_stream *ds, int32_t id, char **out, size_t *len, fl_error *err) {
    if (tok_decode_append(ds->tok, id, ds->skip_special, &ds->any, &ds->held)) {
        *out = NULL;
        return fl_error_set(err, FL_ENOMEM, "tokenizer: out of memory in streaming decode");
    }
    return detok_stream_emit(ds, 1, out, len, err);
}

fl_code detok_stream_flush(detok_stream *ds, char **out, size_t *len, fl_error *err) {
    return detok_stream_emit(ds, 0, out, len, err);
}
