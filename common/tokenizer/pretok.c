// HF pre-tokenizers: each one divides every current split into smaller splits, exactly as HF's
// NormalizedString::split does (find the pattern's matches, then apply the delimiter behaviour),
// and ByteLevel also maps every byte to its printable character. Regexes run with Oniguruma, the
// engine of HF's onig crate; HF's character predicates (is_punctuation, is_numeric) use tables
// probed from HF, since their Unicode versions differ from Oniguruma's.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/tokenizer/impl.h"
#include "common/utf8.h"

// HF ByteLevel's GPT-2 pattern.
static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static pthread_once_t onig_once = PTHREAD_ONCE_INIT;
static void tok_onig_init(void) {
    OnigEncoding encodings[] = {ONIG_ENCODING_UTF8};
    onig_initialize(encodings, 1);
}

fl_code tok_regex_compile(const char *pattern, size_t len, regex_t **out, const char *path,
                          const char *field, fl_error *err) {
    pthread_once(&onig_once, tok_onig_init);
    OnigErrorInfo einfo;
    const UChar *p = (const UChar *)pattern;
    int r = onig_new(out, p, p + len, ONIG_OPTION_NONE, ONIG_ENCODING_UTF8, ONIG_SYNTAX_DEFAULT,
                     &einfo);
    if (r != ONIG_NORMAL) {
        UChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
        onig_error_code_to_str(msg, r, &einfo);
        *out = NULL;
        return fl_error_set(err, FL_EFORMAT, "%s: %s: bad regex \"%.*s\": %s", path, field,
                            (int)(len > 200 ? 200 : len), pattern, (const char *)msg);
    }
    return FL_OK;
}

void tok_bytemap_init(tok_bytemap *bm) {
    // GPT-2's table: printable Latin-1 bytes map to themselves, the other 68 bytes to U+0100...
    int n = 0;
    for (int i = 0; i < 324; i++)
        bm->byte_of[i] = -1;
    for (int b = 0; b < 256; b++) {
        int printable =
            (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        uint32_t cp = printable ? (uint32_t)b : 256u + (uint32_t)n++;
        char tmp[4];
        bm->utf8_len[b] = (uint8_t)utf8_encode(cp, tmp);
        memcpy(bm->utf8[b], tmp, bm->utf8_len[b]);
        bm->byte_of[cp] = (int16_t)b;
    }
}

static fl_code tok_behavior_parse(const cJSON *j, const char *path, const char *field,
                                  tok_split_behavior *out, fl_error *err) {
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                  "Contiguous"};
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(j, "behavior");
    if (!cJSON_IsString(b))
        return fl_error_set(err, FL_EFORMAT, "%s: %s.behavior: missing or not a string", path,
                            field);
    for (int i = 0; i < 5; i++)
        if (strcmp(b->valuestring, names[i]) == 0) {
            *out = (tok_split_behavior)i;
            return FL_OK;
        }
    return fl_error_set(err, FL_EUNSUPPORTED, "%s: %s.behavior: unknown behavior \"%s\"", path,
                        field, b->valuestring);
}

// A Split "String" pattern is a literal: HF escapes it into a regex, so do we (hex escapes are
// literal in every Oniguruma syntax).
static fl_code tok_regex_literal(const char *s, size_t len, regex_t **out, const char *path,
                                 const char *field, fl_error *err) {
    char *pat = malloc(len * 4 + 1);
    if (!pat) return fl_error_set(err, FL_ENOMEM, "%s: %s: out of memory", path, field);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80 &&
            !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
            n += (size_t)sprintf(pat + n, "\\x%02X", c);
        else
            pat[n++] = (char)c;
    }
    fl_code rc = tok_regex_compile(pat, n, out, path, field, err);
    free(pat);
    return rc;
}

fl_code tok_pretok_parse(const cJSON *j, const char *path, const char *field, tok_pretok **out,
                         fl_error *err) {
    *out = NULL;
    if (!cJSON_IsObject(j))
        return fl_error_set(err, FL_EFORMAT, "%s: %s: not an object", path, field);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
    if (!cJSON_IsString(type))
        return fl_error_set(err, FL_EFORMAT, "%s: %s.type: missing or not a string", path, field);
    tok_pretok *p = calloc(1, sizeof *p);
    if (!p) return fl_error_set(err, FL_ENOMEM, "%s: %s: out of memory", path, field);
    const char *t = type->valuestring;
    fl_code rc = FL_OK;
    if (strcmp(t, "Sequence") == 0) {
        p->kind = TOK_PRETOK_SEQUENCE;
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "pretokenizers");
        if (!cJSON_IsArray(arr)) {
            rc = fl_error_set(err, FL_EFORMAT, "%s: %s.pretokenizers: missing or not an array",
                              path, field);
        } else {
            int n = cJSON_GetArraySize(arr);
            p->children = calloc((size_t)(n ? n : 1), sizeof *p->children);
            if (!p->children)
                rc = fl_error_set(err, FL_ENOMEM, "%s: %s: out of memory", path, field);
            const cJSON *c;
            int i = 0;
            cJSON_ArrayForEach(c, arr) {
                if (rc) break;
                char sub[128];
                snprintf(sub, sizeof sub, "%s.pretokenizers[%d]", field, i++);
                rc = tok_pretok_parse(c, path, sub, &p->children[p->n_children], err);
                if (!rc) p->n_children++;
            }
        }
    } else if (strcmp(t, "Punctuation") == 0) {
        p->kind = TOK_PRETOK_PUNCTUATION;
        p->behavior = TOK_SPLIT_ISOLATED;
        if (cJSON_GetObjectItemCaseSensitive(j, "behavior"))
            rc = tok_behavior_parse(j, path, field, &p->behavior, err);
        p->cls = &tok_class_punctuation;
    } else if (strcmp(t, "ByteLevel") == 0) {
        p->kind = TOK_PRETOK_BYTELEVEL;
        p->add_prefix_space = tok_json_flag(j, "add_prefix_space", 1);
        if (tok_json_flag(j, "use_regex", 1))
            rc = tok_regex_compile(GPT2_PATTERN, strlen(GPT2_PATTERN), &p->re, path, field, err);
    } else if (strcmp(t, "Digits") == 0) {
        p->kind = TOK_PRETOK_DIGITS;
        p->behavior =
            tok_json_flag(j, "individual_digits", 0) ? TOK_SPLIT_ISOLATED : TOK_SPLIT_CONTIGUOUS;
        p->cls = &tok_class_numeric;
    } else if (strcmp(t, "Split") == 0) {
        p->kind = TOK_PRETOK_SPLIT;
        p->invert = tok_json_flag(j, "invert", 0);
        rc = tok_behavior_parse(j, path, field, &p->behavior, err);
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
        const cJSON *str = cJSON_GetObjectItemCaseSensitive(pat, "String");
        const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
        char sub[160];
        snprintf(sub, sizeof sub, "%s.pattern", field);
        if (rc) {
        } else if (cJSON_IsString(re)) {
            rc =
                tok_regex_compile(re->valuestring, strlen(re->valuestring), &p->re, path, sub, err);
        } else if (cJSON_IsString(str)) {
            rc = tok_regex_literal(str->valuestring, strlen(str->valuestring), &p->re, path, sub,
                                   err);
        } else {
            rc = fl_error_set(err, FL_EFORMAT,
                              "%s: %s: expected {\"String\": ...} or {\"Regex\": ...}", path, sub);
        }
    } else {
        rc = fl_error_set(err, FL_EUNSUPPORTED,
                          "%s: %s: pre-tokenizer type \"%s\" is not supported", path, field, t);
    }
    if (rc) {
        tok_pretok_free(p);
        return rc;
    }
    *out = p;
    return FL_OK;
}

void tok_pretok_free(tok_pretok *p) {
    if (!p) return;
    for (int i = 0; i < p->n_children; i++)
        tok_pretok_free(p->children[i]);
    free(p->children);
    if (p->re) onig_free(p->re);
    free(p);
}

int tok_pretok_has_bytelevel(const tok_pretok *p) {
    if (!p) return 0;
    if (p->kind == TOK_PRETOK_BYTELEVEL) return 1;
    for (int i = 0; i < p->n_children; i++)
        if (tok_pretok_has_bytelevel(p->children[i])) return 1;
    return 0;
}

int tok_pretok_can_remove(const tok_pretok *p) {
    if (!p) return 0;
    if (p->kind == TOK_PRETOK_SPLIT && p->behavior == TOK_SPLIT_REMOVED) return 1;
    for (int i = 0; i < p->n_children; i++)
        if (tok_pretok_can_remove(p->children[i])) return 1;
    return 0;
}

static fl_code tok_match_push(tok_encode_ctx *ctx, size_t *n, size_t start, size_t end,
                              int is_match) {
    if (*n == ctx->cap_matches) {
        size_t cap = ctx->cap_matches ? ctx->cap_matches * 2 : 64;
        tok_match *m = realloc(ctx->matches, cap * sizeof *m);
        if (!m) return FL_ENOMEM;
        ctx->matches = m;
        ctx->cap_matches = cap;
    }
    ctx->matches[(*n)++] = (tok_match){start, end, is_match};
    return FL_OK;
}

// HF's Pattern::find_matches for a regex (onig crate find_iter: an empty match right after the
// previous match is skipped by advancing one character), as (start, end, is_match) covering the
// whole split.
static fl_code tok_find_matches(tok_encode_ctx *ctx, regex_t *re, size_t off, size_t len,
                                size_t *n_out) {
    size_t n = 0, prev = 0, last_end = 0;
    long last_match_end = -1;
    fl_code rc = FL_OK;
    while (last_end <= len) {
        const UChar *text = (const UChar *)ctx->arena.data + off;
        int r = onig_search(re, text, text + len, text + last_end, text + len, ctx->region,
                            ONIG_OPTION_NONE);
        if (r < 0) break; // ONIG_MISMATCH (or an engine error: no further matches)
        size_t s = (size_t)ctx->region->beg[0], e = (size_t)ctx->region->end[0];
        if (s == e && last_match_end == (long)e) {
            if (last_end >= len) break;
            utf8_unit kind;
            last_end += utf8_scan(text + last_end, len - last_end, &kind);
            continue;
        }
        last_end = e;
        last_match_end = (long)e;
        if (prev != s) rc = tok_match_push(ctx, &n, prev, s, 0);
        if (!rc) rc = tok_match_push(ctx, &n, s, e, 1);
        if (rc) return rc;
        prev = e;
    }
    if (prev != len) rc = tok_match_push(ctx, &n, prev, len, 0);
    *n_out = n;
    return rc;
}

int tok_char_class_has(const tok_char_class *cls, uint32_t cp) {
    int lo = 0, hi = cls->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < cls->ranges[mid][0])
            hi = mid - 1;
        else if (cp > cls->ranges[mid][1])
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

// Pattern::find_matches for a character predicate: every member character is one match.
static fl_code tok_find_matches_class(tok_encode_ctx *ctx, const tok_char_class *cls, size_t off,
                                      size_t len, size_t *n_out) {
    size_t n = 0, prev = 0, i = 0;
    fl_code rc = FL_OK;
    while (i < len && !rc) {
        const uint8_t *s = (const uint8_t *)ctx->arena.data + off;
        utf8_unit kind;
        size_t cl = utf8_scan(s + i, len - i, &kind);
        if (kind != UTF8_VALID) cl = 1;
        if (kind == UTF8_VALID && tok_char_class_has(cls, utf8_decode(s + i, cl))) {
            if (prev < i) rc = tok_match_push(ctx, &n, prev, i, 0);
            if (!rc) rc = tok_match_push(ctx, &n, i, i + cl, 1);
            prev = i + cl;
        }
        i += cl;
    }
    if (!rc && prev < len) rc = tok_match_push(ctx, &n, prev, len, 0);
    *n_out = n;
    return rc;
}

// NormalizedString::split: divides arena[off, off+len) by re (or cls) with behavior, appending the
// kept, non-empty pieces to ctx->next.
static fl_code tok_split_span(tok_encode_ctx *ctx, regex_t *re, const tok_char_class *cls,
                              tok_split_behavior behavior, int invert, size_t off, size_t len) {
    size_t n = 0;
    fl_code rc = cls ? tok_find_matches_class(ctx, cls, off, len, &n)
                     : tok_find_matches(ctx, re, off, len, &n);
    if (rc) return rc;
    tok_match *m = ctx->matches;
    if (invert)
        for (size_t i = 0; i < n; i++)
            m[i].is_match = !m[i].is_match;
    // Fold the matches in place into the pieces to keep (is_match now means "remove").
    size_t k = 0;
    int prev_match = 0;
    switch (behavior) {
    case TOK_SPLIT_REMOVED:
        k = n;
        break;
    case TOK_SPLIT_ISOLATED:
        for (size_t i = 0; i < n; i++)
            m[i].is_match = 0;
        k = n;
        break;
    case TOK_SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < n; i++) {
            int is = m[i].is_match;
            if (is == prev_match && k > 0)
                m[k - 1].end = m[i].end;
            else
                m[k++] = (tok_match){m[i].start, m[i].end, 0};
            prev_match = is;
        }
        break;
    case TOK_SPLIT_MERGED_WITH_PREVIOUS:
        for (size_t i = 0; i < n; i++) {
            int is = m[i].is_match;
            if (is && !prev_match && k > 0)
                m[k - 1].end = m[i].end;
            else
                m[k++] = (tok_match){m[i].start, m[i].end, 0};
            prev_match = is;
        }
        break;
    case TOK_SPLIT_MERGED_WITH_NEXT:
        // HF folds from the right; pieces are built right to left at the end of the array.
        for (size_t i = n; i-- > 0;) {
            int is = m[i].is_match;
            if (is && !prev_match && k > 0)
                m[n - k].start = m[i].start;
            else {
                k++;
                m[n - k] = (tok_match){m[i].start, m[i].end, 0};
            }
            prev_match = is;
        }
        memmove(m, m + (n - k), k * sizeof *m);
        break;
    }
    for (size_t i = 0; i < k && !rc; i++)
        if (!m[i].is_match && m[i].end > m[i].start)
            rc = tok_spans_push(&ctx->next, off + m[i].start, m[i].end - m[i].start);
    return rc;
}

// ByteLevel on one split: optional prefix space, GPT-2 regex pieces, then bytes -> characters.
static fl_code tok_bytelevel_span(const tok_pretok *p, tok_encode_ctx *ctx, tok_span sp) {
    fl_code rc = FL_OK;
    if (p->add_prefix_space && ctx->arena.data[sp.off] != ' ') {
        size_t off = ctx->arena.len;
        rc = tok_buf_append(&ctx->arena, " ", 1);
        for (size_t i = 0; i < sp.len && !rc; i++) // byte by byte: appending may move the arena
            rc = tok_buf_append(&ctx->arena, ctx->arena.data + sp.off + i, 1);
        sp = (tok_span){off, sp.len + 1};
    }
    if (rc) return rc;
    size_t first = ctx->next.n;
    rc = p->re ? tok_split_span(ctx, p->re, NULL, TOK_SPLIT_ISOLATED, 0, sp.off, sp.len)
               : tok_spans_push(&ctx->next, sp.off, sp.len);
    for (size_t i = first; i < ctx->next.n && !rc; i++) {
        tok_span *piece = &ctx->next.v[i];
        size_t off = ctx->arena.len;
        for (size_t b = 0; b < piece->len && !rc; b++) {
            uint8_t byte = (uint8_t)ctx->arena.data[piece->off + b];
            rc =
                tok_buf_append(&ctx->arena, ctx->bytemap->utf8[byte], ctx->bytemap->utf8_len[byte]);
        }
        *piece = (tok_span){off, ctx->arena.len - off};
    }
    return rc;
}

static fl_code tok_pretok_apply(const tok_pretok *p, tok_encode_ctx *ctx) {
    if (p->kind == TOK_PRETOK_SEQUENCE) {
        for (int i = 0; i < p->n_children; i++) {
            fl_code rc = tok_pretok_apply(p->children[i], ctx);
            if (rc) return rc;
        }
        return FL_OK;
    }
    ctx->next.n = 0;
    fl_code rc = FL_OK;
    for (size_t i = 0; i < ctx->cur.n && !rc; i++) {
        tok_span sp = ctx->cur.v[i];
        if (p->kind == TOK_PRETOK_BYTELEVEL)
            rc = tok_bytelevel_span(p, ctx, sp);
        else
            rc = tok_split_span(ctx, p->re, p->cls, p->behavior, p->invert, sp.off, sp.len);
    }
    tok_spans tmp = ctx->cur;
    ctx->cur = ctx->next;
    ctx->next = tmp;
    return rc;
}

fl_code tok_pretok_run(const tok_pretok *p, tok_encode_ctx *ctx, tok_span span, fl_error *err) {
    ctx->cur.n = 0;
    fl_code rc = tok_spans_push(&ctx->cur, span.off, span.len);
    if (!rc && p) rc = tok_pretok_apply(p, ctx);
    if (rc) return fl_error_set(err, rc, "tokenizer: out of memory while pre-tokenizing");
    return FL_OK;
}
