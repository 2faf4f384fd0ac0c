// Encoding: HF encode(text, add_special_tokens=False); the post_processor is not applied.
// Added tokens are split off first (HF's AddedVocabulary), the text between them goes through the
// pre-tokenizer and the BPE model.
//
// Input that is not valid UTF-8 (HF's Rust API cannot receive it): added tokens still match on
// bytes; each maximal valid run goes through the normal pipeline and each invalid byte becomes a
// word of its own, mapped through the ByteLevel table (so it encodes to its single-byte token and
// decodes back to the same byte).
#include <stdlib.h>
#include <string.h>

#include "common/tokenizer.h"
#include "common/tokenizer/impl.h"
#include "common/utf8.h"

typedef struct tok_out {
    int32_t *ids;
    int n, cap;
} tok_out;

static int tok_is_whitespace(uint32_t c) { // Rust char::is_whitespace (White_Space)
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

// Start of the character that ends at s[end] (lenient about invalid bytes).
static size_t tok_prev_char(const char *s, size_t begin, size_t end) {
    size_t i = end - 1;
    while (i > begin && end - i < 4 && ((uint8_t)s[i] & 0xC0) == 0x80)
        i--;
    utf8_unit kind;
    if (utf8_scan((const uint8_t *)s + i, end - i, &kind) != end - i || kind != UTF8_VALID)
        return end - 1;
    return i;
}

static int tok_char_at(const char *s, size_t i, size_t end, size_t *len) {
    utf8_unit kind;
    *len = utf8_scan((const uint8_t *)s + i, end - i, &kind);
    if (kind != UTF8_VALID) {
        *len = 1;
        return -1;
    }
    return (int)utf8_decode((const uint8_t *)s + i, *len);
}

static int tok_is_word_char(const char *s, size_t i, size_t end) { // the regex crate's \w
    size_t cl;
    int c = tok_char_at(s, i, end, &cl);
    return c >= 0 && tok_char_class_has(&tok_class_word, (uint32_t)c);
}

static fl_code tok_encode_plain(const tokenizer *tok, tok_encode_ctx *ctx, const char *s,
                                size_t len, tok_out *out, fl_error *err) {
    size_t i = 0;
    fl_code rc = FL_OK;
    while (i < len && !rc) {
        size_t run = utf8_valid_prefix((const uint8_t *)s + i, len - i);
        if (run == 0) {
            uint8_t b = (uint8_t)s[i];
            const char *w = tok->has_bytelevel ? tok->bytemap.utf8[b] : s + i;
            size_t wl = tok->has_bytelevel ? tok->bytemap.utf8_len[b] : 1;
            rc = tok_bpe_word(&tok->bpe, w, wl, &out->ids, &out->n, &out->cap, err);
            i++;
            continue;
        }
        ctx->arena.len = 0;
        rc = tok_buf_append(&ctx->arena, s + i, run);
        if (rc) return fl_error_set(err, rc, "tokenizer: out of memory");
        rc = tok_pretok_run(tok->pretok, ctx, (tok_span){0, run}, err);
        for (size_t k = 0; k < ctx->cur.n && !rc; k++)
            rc = tok_bpe_word(&tok->bpe, ctx->arena.data + ctx->cur.v[k].off, ctx->cur.v[k].len,
                              &out->ids, &out->n, &out->cap, err);
        i += run;
    }
    return rc;
}

// HF AddedVocabulary::find_matches over s[begin, end) for one pass (normalized = 0: tokens matched
// on the raw text first; 1: tokens matched on the normalized pieces), leftmost-longest like its
// Aho-Corasick automaton, then single_word / lstrip / rstrip. Text between matches goes to the
// next pass, or to the model after the last one.
static fl_code tok_encode_added(const tokenizer *tok, tok_encode_ctx *ctx, const char *s,
                                size_t begin, size_t end, int pass, tok_out *out, fl_error *err) {
    size_t start_offset = begin, pos = begin;
    fl_code rc = FL_OK;
    while (pos < end && !rc) {
        int best = -1;
        for (int32_t i = tok->first[pass][(uint8_t)s[pos]]; i >= 0; i = tok->next_same_first[i]) {
            const tok_added *t = &tok->added[i];
            if (t->len <= end - pos && memcmp(s + pos, t->content, t->len) == 0 &&
                (best < 0 || t->len > tok->added[best].len))
                best = i;
        }
        if (best < 0) {
            pos++;
            continue;
        }
        const tok_added *t = &tok->added[best];
        size_t mstart = pos, mstop = pos + t->len;
        pos = mstop; // the automaton resumes after the match whatever happens to it below
        if (t->single_word) {
            int start_space =
                mstart == begin || !tok_is_word_char(s, tok_prev_char(s, begin, mstart), mstart);
            int stop_space = mstop == end || !tok_is_word_char(s, mstop, end);
            if (!start_space || !stop_space) continue;
        }
        if (t->lstrip) {
            size_t ns = mstart;
            while (ns > begin) {
                size_t p = tok_prev_char(s, begin, ns), cl;
                int c = tok_char_at(s, p, ns, &cl);
                if (c < 0 || !tok_is_whitespace((uint32_t)c)) break;
                ns = p;
            }
            mstart = ns > start_offset ? ns : start_offset;
        }
        if (t->rstrip) {
            size_t cl;
            int c;
            while (mstop < end && (c = tok_char_at(s, mstop, end, &cl)) >= 0 &&
                   tok_is_whitespace((uint32_t)c))
                mstop += cl;
        }
        if (mstart > start_offset) {
            rc = pass == 0 ? tok_encode_added(tok, ctx, s, start_offset, mstart, 1, out, err)
                           : tok_encode_plain(tok, ctx, s + start_offset, mstart - start_offset,
                                              out, err);
        }
        if (!rc && tok_ids_push(&out->ids, &out->n, &out->cap, t->id))
            rc = fl_error_set(err, FL_ENOMEM, "tokenizer: out of memory");
        start_offset = mstop;
    }
    if (!rc && start_offset < end)
        rc = pass == 0 ? tok_encode_added(tok, ctx, s, start_offset, end, 1, out, err)
                       : tok_encode_plain(tok, ctx, s + start_offset, end - start_offset, out, err);
    return rc;
}

fl_code tokenizer_encode(const tokenizer *tok, const char *text, size_t len, int32_t **ids,
                         int *n_ids, fl_error *err) {
    *ids = NULL;
    *n_ids = 0;
    if (len > (size_t)INT32_MAX / 4)
        return fl_error_set(err, FL_EINVAL, "tokenizer: text of %zu bytes is too long", len);
    tok_encode_ctx ctx = {0};
    ctx.bytemap = &tok->bytemap;
    ctx.region = onig_region_new();
    tok_out out = {0};
    fl_code rc = ctx.region ? FL_OK : fl_error_set(err, FL_ENOMEM, "tokenizer: out of memory");
    if (!rc) rc = tok_encode_added(tok, &ctx, text, 0, len, 0, &out, err);
    if (!rc && !out.ids) { // empty result: still hand back a buffer the caller can free
        out.ids = malloc(sizeof(int32_t));
        if (!out.ids) rc = fl_error_set(err, FL_ENOMEM, "tokenizer: out of memory");
    }
    if (ctx.region) onig_region_free(ctx.region, 1);
    free(ctx.arena.data);
    free(ctx.cur.v);
    free(ctx.next.v);
    free(ctx.matches);
    if (rc) {
        free(out.ids);
        return rc;
    }
    *ids = out.ids;
    *n_ids = out.n;
    return FL_OK;
}
