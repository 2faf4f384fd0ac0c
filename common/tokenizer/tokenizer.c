// tokenizer.json loading and vocabulary lookups. HF semantics throughout: ids of added tokens are
// assigned as HF's AddedVocabulary does, merges may be "a b" strings or ["a", "b"] pairs, and
// unsupported component types fail with FL_EUNSUPPORTED naming the type.
#include "common/tokenizer.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/json_util.h"
#include "common/log.h"
#include "common/tokenizer/impl.h"
#include "common/utf8.h"

static const char *tok_json_str(const cJSON *j, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

// Ids must be non-negative integers; the bound keeps a corrupt file from allocating gigabytes.
static int tok_json_id(const cJSON *v, int32_t *id) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (d < 0 || d > 16 * 1024 * 1024 || d != (double)(int32_t)d) return 0;
    *id = (int32_t)d;
    return 1;
}

const char *tokenizer_id_to_token(const tokenizer *tok, int32_t id) {
    if (!tok || id < 0 || id >= tok->vocab_size) return NULL;
    if (tok->added_of_id[id] >= 0) return tok->added[tok->added_of_id[id]].content;
    return tok->vocab_str[id];
}

int tokenizer_token_to_id(const tokenizer *tok, const char *token) {
    if (!tok || !token) return -1;
    size_t len = strlen(token);
    int32_t a = tok_strmap_get(&tok->added_map, token, len);
    if (a >= 0) return tok->added[a].id;
    return tok_strmap_get(&tok->bpe.vocab, token, len);
}

int tokenizer_vocab_size(const tokenizer *tok) {
    return tok ? tok->vocab_size : 0;
}

int tokenizer_is_special(const tokenizer *tok, int32_t id) {
    return tok && id >= 0 && id < tok->vocab_size && tok->special[id];
}

void tokenizer_free(tokenizer *tok) {
    if (!tok) return;
    for (int i = 0; i < tok->model_size; i++)
        free(tok->vocab_str[i]);
    for (int i = 0; i < tok->n_shadowed; i++)
        free(tok->shadowed[i]);
    free(tok->shadowed);
    for (int i = 0; tok->piece && i < tok->vocab_size; i++)
        free(tok->piece[i]);
    free(tok->vocab_str);
    free(tok->added_of_id);
    free(tok->special);
    free(tok->piece);
    free(tok->piece_len);
    for (int i = 0; i < tok->n_added; i++)
        free(tok->added[i].content);
    free(tok->added);
    tok_strmap_free(&tok->added_map);
    free(tok->next_same_first);
    tok_pretok_free(tok->pretok);
    tok_bpe_free(&tok->bpe);
    free(tok);
}

static fl_code tok_load_vocab(tokenizer *tok, const cJSON *model, const char *path, fl_error *err) {
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(vocab))
        return fl_error_set(err, FL_ENOTFOUND, "%s: model.vocab: missing or not an object", path);
    int n = cJSON_GetArraySize(vocab), max_id = -1;
    const cJSON *v;
    cJSON_ArrayForEach(v, vocab) {
        int32_t id;
        if (!tok_json_id(v, &id))
            return fl_error_set(err, FL_EFORMAT,
                                "%s: model.vocab[\"%.100s\"]: id is not a valid integer", path,
                                v->string);
        if (id > max_id) max_id = id;
    }
    tok->vocab_size = tok->model_size = max_id + 1;
    tok->vocab_str =
        calloc((size_t)(tok->vocab_size ? tok->vocab_size : 1), sizeof *tok->vocab_str);
    if (!tok->vocab_str || tok_strmap_init(&tok->bpe.vocab, (size_t)n))
        return fl_error_set(err, FL_ENOMEM, "%s: model.vocab: out of memory", path);
    cJSON_ArrayForEach(v, vocab) {
        int32_t id = 0;
        tok_json_id(v, &id);
        char *s = strdup(v->string);
        if (!s) return fl_error_set(err, FL_ENOMEM, "%s: model.vocab: out of memory", path);
        if (tok->vocab_str[id]) { // a duplicate id: the later string wins, as in HF's vocab_r,
            // but the earlier one stays a key of bpe.vocab, so it lives until tokenizer_free
            char **sh = realloc(tok->shadowed, (size_t)(tok->n_shadowed + 1) * sizeof *sh);
            if (!sh) {
                free(s);
                return fl_error_set(err, FL_ENOMEM, "%s: model.vocab: out of memory", path);
            }
            tok->shadowed = sh;
            tok->shadowed[tok->n_shadowed++] = tok->vocab_str[id];
        }
        tok->vocab_str[id] = s;
        tok_strmap_put(&tok->bpe.vocab, s, strlen(s), id);
    }
    return FL_OK;
}

// One merge, "a b" (HF's legacy string form) or ["a", "b"].
static fl_code tok_load_merge(tokenizer *tok, const cJSON *m, int rank, const char *path,
                              fl_error *err) {
    const char *a, *b;
    size_t la, lb;
    char *joined = NULL;
    if (cJSON_IsString(m)) {
        const char *s = m->valuestring, *sp = strchr(s, ' ');
        if (!sp || strchr(sp + 1, ' '))
            return fl_error_set(err, FL_EFORMAT, "%s: model.merges[%d]: \"%.100s\" is not \"a b\"",
                                path, rank, s);
        a = s;
        la = (size_t)(sp - s);
        b = sp + 1;
        lb = strlen(b);
    } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 &&
               cJSON_IsString(cJSON_GetArrayItem(m, 0)) &&
               cJSON_IsString(cJSON_GetArrayItem(m, 1))) {
        a = cJSON_GetArrayItem(m, 0)->valuestring;
        b = cJSON_GetArrayItem(m, 1)->valuestring;
        la = strlen(a);
        lb = strlen(b);
    } else {
        return fl_error_set(err, FL_EFORMAT,
                            "%s: model.merges[%d]: expected \"a b\" or [\"a\", \"b\"]", path, rank);
    }
    int32_t ia = tok_strmap_get(&tok->bpe.vocab, a, la);
    int32_t ib = tok_strmap_get(&tok->bpe.vocab, b, lb);
    if (ia < 0 || ib < 0)
        return fl_error_set(err, FL_EFORMAT,
                            "%s: model.merges[%d]: token \"%.*s\" is not in model.vocab", path,
                            rank, (int)(ia < 0 ? la : lb), ia < 0 ? a : b);
    joined = malloc(la + lb + 1);
    if (!joined) return fl_error_set(err, FL_ENOMEM, "%s: model.merges: out of memory", path);
    memcpy(joined, a, la);
    memcpy(joined + la, b, lb);
    joined[la + lb] = 0;
    int32_t id = tok_strmap_get(&tok->bpe.vocab, joined, la + lb);
    if (id < 0) {
        fl_error_set(err, FL_EFORMAT,
                     "%s: model.merges[%d]: merged token \"%.100s\" is not in model.vocab", path,
                     rank, joined);
        free(joined);
        return FL_EFORMAT;
    }
    free(joined);
    tok_bpe_merge_put(&tok->bpe, ia, ib, (uint32_t)rank, id);
    return FL_OK;
}

static fl_code tok_load_model(tokenizer *tok, const cJSON *root, const char *path, fl_error *err) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model))
        return fl_error_set(err, FL_ENOTFOUND, "%s: model: missing or not an object", path);
    const char *type = tok_json_str(model, "type");
    if (type && strcmp(type, "BPE") != 0)
        return fl_error_set(err, FL_EUNSUPPORTED,
                            "%s: model.type: model type \"%s\" is not supported", path, type);
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (cJSON_IsNumber(dropout) && dropout->valuedouble > 0)
        return fl_error_set(err, FL_EUNSUPPORTED, "%s: model.dropout: BPE dropout is not supported",
                            path);
    if (tok_json_flag(model, "byte_fallback", 0))
        return fl_error_set(err, FL_EUNSUPPORTED, "%s: model.byte_fallback: not supported", path);
    fl_code rc = tok_load_vocab(tok, model, path, err);
    if (rc) return rc;
    tok->bpe.fuse_unk = tok_json_flag(model, "fuse_unk", 0);
    tok->bpe.ignore_merges = tok_json_flag(model, "ignore_merges", 0);
    tok->bpe.unk_id = -1;
    const char *unk = tok_json_str(model, "unk_token");
    if (unk) {
        tok->bpe.unk_id = tok_strmap_get(&tok->bpe.vocab, unk, strlen(unk));
        if (tok->bpe.unk_id < 0)
            return fl_error_set(err, FL_EFORMAT,
                                "%s: model.unk_token: \"%.100s\" is not in model.vocab", path, unk);
    }
    const char *prefix = tok_json_str(model, "continuing_subword_prefix");
    const char *suffix = tok_json_str(model, "end_of_word_suffix");
    if ((prefix && !(tok->bpe.continuing_subword_prefix = strdup(prefix))) ||
        (suffix && !(tok->bpe.end_of_word_suffix = strdup(suffix))))
        return fl_error_set(err, FL_ENOMEM, "%s: model: out of memory", path);
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsArray(merges))
        return fl_error_set(err, FL_ENOTFOUND, "%s: model.merges: missing or not an array", path);
    if (tok_bpe_merges_init(&tok->bpe, (size_t)cJSON_GetArraySize(merges)))
        return fl_error_set(err, FL_ENOMEM, "%s: model.merges: out of memory", path);
    const cJSON *m;
    int rank = 0;
    cJSON_ArrayForEach(m, merges) {
        rc = tok_load_merge(tok, m, rank++, path, err);
        if (rc) return rc;
    }
    return FL_OK;
}

static fl_code tok_load_added(tokenizer *tok, const cJSON *root, const char *path, fl_error *err) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!arr || cJSON_IsNull(arr)) return FL_OK;
    if (!cJSON_IsArray(arr))
        return fl_error_set(err, FL_EFORMAT, "%s: added_tokens: not an array", path);
    int n = cJSON_GetArraySize(arr);
    tok->added = calloc((size_t)(n ? n : 1), sizeof *tok->added);
    if (!tok->added || tok_strmap_init(&tok->added_map, (size_t)n))
        return fl_error_set(err, FL_ENOMEM, "%s: added_tokens: out of memory", path);
    const cJSON *a;
    int k = 0, max_added = -1, model_len = (int)tok->bpe.vocab.n;
    cJSON_ArrayForEach(a, arr) {
        int32_t json_id;
        const char *content = tok_json_str(a, "content");
        if (!tok_json_id(cJSON_GetObjectItemCaseSensitive(a, "id"), &json_id))
            return fl_error_set(err, FL_EFORMAT,
                                "%s: added_tokens[%d].id: missing or not a valid integer", path, k);
        if (!content)
            return fl_error_set(err, FL_EFORMAT,
                                "%s: added_tokens[%d].content: missing or not a string", path, k);
        k++;
        size_t len = strlen(content);
        int special = tok_json_flag(a, "special", 0);
        int32_t dup = tok_strmap_get(&tok->added_map, content, len);
        if (dup >= 0 || !len) { // HF ignores repeats; "special" is a property of the content
            if (dup >= 0) tok->added[dup].special |= special;
            continue;
        }
        // HF assigns ids itself (AddedVocabulary::add_tokens) and only warns when the file's id
        // differs: a model vocab id if the content is there, else the next id after the model's
        // vocab and the added tokens so far.
        int32_t id = tok_strmap_get(&tok->bpe.vocab, content, len);
        if (id < 0) id = (max_added >= model_len || model_len == 0) ? max_added + 1 : model_len;
        if (id != json_id)
            log_warn("%s: added token \"%.100s\" has id %d in the file, HF assigns %d", path,
                     content, json_id, id);
        if (id > max_added) max_added = id;
        int i = tok->n_added;
        tok_added *t = &tok->added[i];
        // Defaults (HF requires the fields) are those of HF's AddedToken::from.
        *t = (tok_added){strdup(content),
                         len,
                         id,
                         special,
                         tok_json_flag(a, "single_word", 0),
                         tok_json_flag(a, "lstrip", 0),
                         tok_json_flag(a, "rstrip", 0),
                         tok_json_flag(a, "normalized", !special)};
        if (!t->content)
            return fl_error_set(err, FL_ENOMEM, "%s: added_tokens: out of memory", path);
        tok->n_added++;
        tok_strmap_put(&tok->added_map, t->content, t->len, i);
        if (id >= tok->vocab_size) tok->vocab_size = id + 1;
    }
    return FL_OK;
}

// Per-id tables: added-token index, special flag and the decoder's bytes.
static fl_code tok_build_id_tables(tokenizer *tok, const char *path, fl_error *err) {
    size_t n = (size_t)(tok->vocab_size ? tok->vocab_size : 1);
    char **vs = realloc(tok->vocab_str, n * sizeof *vs);
    if (!vs) return fl_error_set(err, FL_ENOMEM, "%s: out of memory", path);
    tok->vocab_str = vs;
    for (size_t i = (size_t)tok->model_size; i < n; i++)
        vs[i] = NULL; // added-only ids
    tok->added_of_id = malloc(n * sizeof *tok->added_of_id);
    tok->special = calloc(n, 1);
    tok->piece = calloc(n, sizeof *tok->piece);
    tok->piece_len = calloc(n, sizeof *tok->piece_len);
    tok->next_same_first = malloc((size_t)(tok->n_added ? tok->n_added : 1) * sizeof(int32_t));
    if (!tok->added_of_id || !tok->special || !tok->piece || !tok->piece_len ||
        !tok->next_same_first)
        return fl_error_set(err, FL_ENOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++)
        tok->added_of_id[i] = -1;
    for (int i = 0; i < tok->n_added; i++)
        tok->added_of_id[tok->added[i].id] = i;
    for (size_t id = 0; id < (size_t)tok->vocab_size; id++) {
        const char *s = tokenizer_id_to_token(tok, (int32_t)id);
        if (!s) continue;
        // HF skips by content: any id whose string is a special added token.
        int32_t a = tok_strmap_get(&tok->added_map, s, strlen(s));
        tok->special[id] = a >= 0 && tok->added[a].special;
        size_t len = strlen(s);
        char *p = malloc(len + 1);
        if (!p) return fl_error_set(err, FL_ENOMEM, "%s: out of memory", path);
        size_t out = 0;
        if (tok->decoder == TOK_DECODER_BYTELEVEL) {
            // Every character back to its byte; a token with any character outside the table
            // keeps its raw UTF-8 (HF ByteLevel::decode_chain).
            for (size_t i = 0; i < len;) {
                utf8_unit kind;
                size_t cl = utf8_scan((const uint8_t *)s + i, len - i, &kind);
                uint32_t cp = kind == UTF8_VALID ? utf8_decode((const uint8_t *)s + i, cl) : 0xFFFF;
                if (cp >= 324 || tok->bytemap.byte_of[cp] < 0) {
                    out = 0;
                    break;
                }
                p[out++] = (char)tok->bytemap.byte_of[cp];
                i += cl;
            }
            if (out == 0 && len) {
                memcpy(p, s, len);
                out = len;
            }
        } else {
            memcpy(p, s, len);
            out = len;
        }
        p[out] = 0;
        tok->piece[id] = p;
        tok->piece_len[id] = (uint32_t)out;
    }
    for (int pass = 0; pass < 2; pass++)
        for (int b = 0; b < 256; b++)
            tok->first[pass][b] = -1;
    for (int i = tok->n_added - 1; i >= 0; i--) { // chains in file order
        const tok_added *t = &tok->added[i];
        if (!t->len) continue;
        int32_t *head = &tok->first[t->normalized][(uint8_t)t->content[0]];
        tok->next_same_first[i] = *head;
        *head = i;
    }
    return FL_OK;
}

static fl_code tok_load_components(tokenizer *tok, const cJSON *root, const char *path,
                                   fl_error *err) {
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (norm && !cJSON_IsNull(norm)) {
        const char *t = tok_json_str(norm, "type");
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(norm, "normalizers");
        if (!(t && strcmp(t, "Sequence") == 0 && cJSON_GetArraySize(list) == 0))
            return fl_error_set(err, FL_EUNSUPPORTED,
                                "%s: normalizer: normalizer type \"%s\" is not supported", path,
                                t ? t : "?");
    }
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (pre && !cJSON_IsNull(pre)) {
        fl_code rc = tok_pretok_parse(pre, path, "pre_tokenizer", &tok->pretok, err);
        if (rc) return rc;
    }
    tok->has_bytelevel = tok_pretok_has_bytelevel(tok->pretok);
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    tok->decoder = TOK_DECODER_NONE;
    if (dec && !cJSON_IsNull(dec)) {
        const char *t = tok_json_str(dec, "type");
        if (!t || strcmp(t, "ByteLevel") != 0)
            return fl_error_set(err, FL_EUNSUPPORTED,
                                "%s: decoder: decoder type \"%s\" is not supported", path,
                                t ? t : "?");
        tok->decoder = TOK_DECODER_BYTELEVEL;
    }
    return FL_OK;
}

// Each token then stands for exactly the bytes of its piece, so no token covers more input than
// the longest piece: ByteLevel maps every input byte to a vocabulary character (no unknown or
// dropped text), no added token swallows whitespace (lstrip / rstrip), no Split removes text,
// and no subword prefix or suffix pads the vocabulary strings. Otherwise 0.
static size_t tok_compute_max_token_bytes(const tokenizer *tok) {
    if (!tok->has_bytelevel || tok_pretok_can_remove(tok->pretok) ||
        tok->bpe.continuing_subword_prefix || tok->bpe.end_of_word_suffix)
        return 0;
    for (int i = 0; i < tok->n_added; i++)
        if (tok->added[i].lstrip || tok->added[i].rstrip) return 0;
    for (int b = 0; b < 256; b++)
        if (tok_strmap_get(&tok->bpe.vocab, tok->bytemap.utf8[b], tok->bytemap.utf8_len[b]) < 0)
            return 0;
    size_t max = 0;
    for (int id = 0; id < tok->vocab_size; id++)
        if (tok->piece_len[id] > max) max = tok->piece_len[id];
    return max;
}

size_t tokenizer_token_bytes(const tokenizer *tok, int32_t id) {
    return id >= 0 && id < tok->vocab_size ? tok->piece_len[id] : 0;
}

size_t tokenizer_max_token_bytes(const tokenizer *tok) {
    return tok->max_token_bytes;
}

fl_code tokenizer_load(const char *path, tokenizer **out, fl_error *err) {
    *out = NULL;
    cJSON *root;
    fl_code rc = json_load_file(path, &root, err);
    if (rc) return rc;
    tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) {
        cJSON_Delete(root);
        return fl_error_set(err, FL_ENOMEM, "%s: out of memory", path);
    }
    tok_bytemap_init(&tok->bytemap);
    if (!cJSON_IsObject(root)) rc = fl_error_set(err, FL_EFORMAT, "%s: not a JSON object", path);
    if (!rc) rc = tok_load_model(tok, root, path, err);
    if (!rc) rc = tok_load_added(tok, root, path, err);
    if (!rc) rc = tok_load_components(tok, root, path, err);
    if (!rc) rc = tok_build_id_tables(tok, path, err);
    if (!rc) tok->max_token_bytes = tok_compute_max_token_bytes(tok);
    cJSON_Delete(root);
    if (rc) {
        tokenizer_free(tok);
        return rc;
    }
    *out = tok;
    return FL_OK;
}
