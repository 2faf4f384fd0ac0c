// llama.cpp stores a GPT-2 style vocabulary as parallel arrays (tokens, token types, merges)
// plus the name of its pre-tokenizer; HF's tokenizer.json needs the vocabulary as a map, the
// special tokens as added_tokens and the pre-tokenizer spelled out as a pipeline.
#include "tools/gguf_tokenizer.h"
#include "tools/tokenizer_json.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

// llama.cpp's token types (llama_token_type).
enum { TOKEN_NORMAL = 1, TOKEN_UNKNOWN = 2, TOKEN_CONTROL = 3, TOKEN_USER_DEFINED = 4 };

static cJSON *digits(int individual) {
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "type", "Digits");
    cJSON_AddBoolToObject(d, "individual_digits", individual);
    return d;
}

// The HF pre_tokenizer of a llama.cpp pre-tokenizer name, for the names whose HF pipeline is
// known exactly: llama.cpp's regex list for each is the one HF's pipeline runs.
static cJSON *pre_tokenizer_for(const char *pre) {
    if (!strcmp(pre, "gpt-2") || !strcmp(pre, "gpt2")) return tokenizer_json_byte_level(0);
    if (!strcmp(pre, "falcon")) return tokenizer_json_falcon_pre_tokenizer();
    cJSON *seq = cJSON_CreateObject(), *list = cJSON_CreateArray();
    cJSON_AddStringToObject(seq, "type", "Sequence");
    cJSON_AddItemToObject(seq, "pretokenizers", list);
    if (!strcmp(pre, "smollm") || !strcmp(pre, "starcoder")) {
        // SmolLM2 / StarCoder: single digits, then GPT-2's byte-level split.
        cJSON_AddItemToArray(list, digits(1));
        cJSON_AddItemToArray(list, tokenizer_json_byte_level(0));
        return seq;
    }
    cJSON_Delete(seq);
    return NULL;
}

// A NUL-terminated copy of array string i, rejecting embedded NULs (JSON keys cannot hold one).
static char *token_dup(const gguf_file *g, const gguf_kv *kv, uint64_t i, fl_error *err) {
    gguf_str s = kv->strs[i];
    char *t = NULL;
    if (memchr(s.ptr, 0, s.len))
        fl_error_set(err, FL_EFORMAT, "%s: metadata '%s': entry %" PRIu64 " contains a NUL byte",
                     gguf_name(g), kv->key, i);
    else if (!(t = malloc(s.len + 1)))
        fl_error_set(err, FL_ENOMEM, "%s: out of memory", gguf_name(g));
    else
        memcpy(t, s.ptr, s.len), t[s.len] = 0;
    return t;
}

static fl_code string_array(const gguf_file *g, const char *key, int optional, const gguf_kv **out,
                            fl_error *err) {
    const gguf_kv *kv = gguf_kv_find(g, key);
    *out = NULL;
    if (!kv && optional) return FL_OK;
    if (!kv)
        return fl_error_set(err, FL_ENOTFOUND, "%s: metadata '%s' is missing", gguf_name(g), key);
    if (kv->type != GGUF_VT_ARRAY || kv->elem_type != GGUF_VT_STRING)
        return fl_error_set(err, FL_EFORMAT, "%s: metadata '%s' must be an array of strings",
                            gguf_name(g), key);
    *out = kv;
    return FL_OK;
}

// The BPE model: vocab map and merges.
static fl_code model_build(const gguf_file *g, const gguf_kv *tokens, cJSON *model, fl_error *err) {
    const gguf_kv *merges;
    fl_code rc = string_array(g, "tokenizer.ggml.merges", 0, &merges, err);
    if (rc) return rc;
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    cJSON *mlist = cJSON_AddArrayToObject(model, "merges");
    for (uint64_t i = 0; i < tokens->n; i++) {
        char *t = token_dup(g, tokens, i, err);
        if (!t) return err ? err->code : FL_EFORMAT;
        cJSON_AddItemToObject(vocab, t, cJSON_CreateNumber((double)i));
        free(t);
    }
    for (uint64_t i = 0; i < merges->n; i++) {
        char *m = token_dup(g, merges, i, err);
        if (!m) return err ? err->code : FL_EFORMAT;
        cJSON_AddItemToArray(mlist, cJSON_CreateString(m));
        free(m);
    }
    return FL_OK;
}

// added_tokens: control tokens are special, user-defined ones are plain added tokens.
static fl_code added_tokens_build(const gguf_file *g, const gguf_kv *tokens, cJSON *list,
                                  fl_error *err) {
    const gguf_kv *types = gguf_kv_find(g, "tokenizer.ggml.token_type");
    if (!types) return FL_OK;
    if (types->type != GGUF_VT_ARRAY || !types->elems || types->n != tokens->n)
        return fl_error_set(err, FL_EFORMAT,
                            "%s: metadata 'tokenizer.ggml.token_type' must be an integer array "
                            "with one entry per token (%" PRIu64 ")",
                            gguf_name(g), tokens->n);
    for (uint64_t i = 0; i < tokens->n; i++) {
        int64_t type = gguf_array_int_at(types, i);
        if (type != TOKEN_CONTROL && type != TOKEN_USER_DEFINED) continue;
        char *t = token_dup(g, tokens, i, err);
        if (!t) return err ? err->code : FL_EFORMAT;
        cJSON_AddItemToArray(list, tokenizer_json_added_token((int)i, t, type == TOKEN_CONTROL));
        free(t);
    }
    return FL_OK;
}

// Builds *root (NULL on failure before it exists; the caller frees it either way).
static fl_code tokenizer_json_build(const gguf_file *g, const gguf_kv *tokens, cJSON **root,
                                    fl_error *err) {
    char *model_name = NULL, *pre = NULL;
    fl_code rc = gguf_get_string(g, "tokenizer.ggml.model", 0, &model_name, err);
    if (!rc && strcmp(model_name, "gpt2"))
        rc = fl_error_set(err, FL_EUNSUPPORTED,
                          "%s: metadata 'tokenizer.ggml.model' is '%s'; only byte-level BPE "
                          "('gpt2') tokenizers are supported",
                          gguf_name(g), model_name);
    if (!rc) rc = gguf_get_string(g, "tokenizer.ggml.pre", 1, &pre, err);
    cJSON *pt = rc ? NULL : pre_tokenizer_for(pre ? pre : "gpt-2");
    if (!rc && !pt)
        rc = fl_error_set(err, FL_EUNSUPPORTED,
                          "%s: metadata 'tokenizer.ggml.pre' is '%s'; supported: smollm, "
                          "starcoder, gpt-2, falcon",
                          gguf_name(g), pre);
    free(model_name);
    free(pre);
    if (rc) return rc;
    cJSON *added, *model;
    *root = tokenizer_json_create(pt, &added, &model);
    if ((rc = added_tokens_build(g, tokens, added, err))) return rc;
    return model_build(g, tokens, model, err);
}

// tokenizer_config.json: the special tokens by name, and the chat template when present.
static fl_code tokenizer_config_build(const gguf_file *g, const gguf_kv *tokens, int n_ctx,
                                      cJSON *root, fl_error *err) {
    static const struct {
        const char *key, *field;
    } ids[] = {
        {"tokenizer.ggml.bos_token_id", "bos_token"},
        {"tokenizer.ggml.eos_token_id", "eos_token"},
        {"tokenizer.ggml.unknown_token_id", "unk_token"},
        {"tokenizer.ggml.padding_token_id", "pad_token"},
    };
    int add_bos, add_eos;
    fl_code rc;
    if ((rc = gguf_get_bool_or(g, "tokenizer.ggml.add_bos_token", 0, &add_bos, err)) ||
        (rc = gguf_get_bool_or(g, "tokenizer.ggml.add_eos_token", 0, &add_eos, err)))
        return rc;
    cJSON_AddBoolToObject(root, "add_bos_token", add_bos);
    cJSON_AddBoolToObject(root, "add_eos_token", add_eos);
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        int64_t id;
        if ((rc = gguf_get_int_or(g, ids[i].key, -1, &id, err))) return rc;
        if (id < 0) continue;
        if ((uint64_t)id >= tokens->n)
            return fl_error_set(err, FL_EFORMAT,
                                "%s: metadata '%s' = %" PRId64 " is not a token id (vocab %" PRIu64
                                ")",
                                gguf_name(g), ids[i].key, id, tokens->n);
        char *t = token_dup(g, tokens, (uint64_t)id, err);
        if (!t) return err ? err->code : FL_EFORMAT;
        cJSON_AddStringToObject(root, ids[i].field, t);
        free(t);
    }
    char *tmpl;
    if ((rc = gguf_get_string(g, "tokenizer.chat_template", 1, &tmpl, err))) return rc;
    if (tmpl) cJSON_AddStringToObject(root, "chat_template", tmpl);
    free(tmpl);
    cJSON_AddBoolToObject(root, "clean_up_tokenization_spaces", 0);
    cJSON_AddNumberToObject(root, "model_max_length", n_ctx);
    cJSON_AddStringToObject(root, "tokenizer_class", "GPT2Tokenizer");
    return FL_OK;
}

fl_code gguf_tokenizer_build(const gguf_file *g, int n_ctx, cJSON **tokenizer_json,
                             cJSON **tokenizer_config, fl_error *err) {
    const gguf_kv *tokens;
    *tokenizer_json = *tokenizer_config = NULL;
    fl_code rc = string_array(g, "tokenizer.ggml.tokens", 0, &tokens, err);
    if (rc) return rc;
    cJSON *tj = NULL, *tc = cJSON_CreateObject();
    if (!tc) rc = fl_error_set(err, FL_ENOMEM, "%s: out of memory", gguf_name(g));
    if (!rc) rc = tokenizer_json_build(g, tokens, &tj, err);
    if (!rc) rc = tokenizer_config_build(g, tokens, n_ctx, tc, err);
    if (rc) {
        cJSON_Delete(tj);
        cJSON_Delete(tc);
        return rc;
    }
    *tokenizer_json = tj, *tokenizer_config = tc;
    return FL_OK;
}
