// config.json (+ quantize_config.json, + the operator's GPTQ overrides) -> model_config; reads no
// environment. Field names and defaults follow transformers' FalconConfig / LlamaConfig; the
// legacy RefinedWeb / RefinedWebModel names (n_embed, n_head, n_head_kv, n_layer) are accepted
// in every Falcon config.
#include "common/model_config.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/json_util.h"

// bos/eos ids are an integer or (newer configs) a list whose first entry is the primary id.
static fl_code token_id_get(const cJSON *obj, const char *name, int def, int *out,
                            const char *where, fl_error *err) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (cJSON_IsArray(item)) {
        int64_t v;
        if (cJSON_GetArraySize(item) < 1 || json_number_as_int64(item->child, &v) || v < 0 ||
            v > INT_MAX) {
            return fl_error_set(err, FL_EFORMAT,
                                "%s: field '%s' must be a token id or a list of them", where, name);
        }
        *out = (int)v;
        return FL_OK;
    }
    return json_get_int(obj, name, def, out, where, err);
}

// Falcon, HF `falcon` names with the legacy RefinedWeb spellings as fallbacks.
static fl_code falcon_parse(const cJSON *c, const char *where, model_config *cfg, fl_error *err) {
    const char *f_hidden = json_pick_name(c, "hidden_size", "n_embed");
    const char *f_layer = json_pick_name(c, "num_hidden_layers", "n_layer");
    const char *f_head = json_pick_name(c, "num_attention_heads", "n_head");
    const char *f_kv = json_pick_name(c, "num_kv_heads", "n_head_kv");
    // RefinedWeb is the Falcon-40B code path: grouped KV and two layernorms, with no flag for it.
    int legacy_40b = !strcmp(cfg->model_type, "RefinedWeb");
    int multi_query, n_kv, n_ln, alibi;
    const char *activation;
    fl_code rc;
    if ((rc = json_require_int(c, f_hidden, &cfg->d_model, where, err)) ||
        (rc = json_require_int(c, f_layer, &cfg->n_layer, where, err)) ||
        (rc = json_require_int(c, f_head, &cfg->n_head, where, err)) ||
        (rc = json_require_int(c, "vocab_size", &cfg->n_vocab, where, err)) ||
        (rc = json_get_bool(c, "new_decoder_architecture", legacy_40b,
                            &cfg->new_decoder_architecture, where, err)) ||
        (rc = json_get_bool(c, "multi_query", 1, &multi_query, where, err)) ||
        (rc = json_get_int(c, f_kv, cfg->n_head, &n_kv, where, err)) ||
        (rc = json_get_bool(c, "parallel_attn", 1, &cfg->parallel_attn, where, err)) ||
        (rc = json_get_bool(c, "bias", 0, &cfg->bias, where, err)) ||
        (rc = json_get_float(c, "layer_norm_epsilon", 1e-5f, &cfg->norm_eps, where, err)) ||
        (rc = json_get_bool(c, "alibi", 0, &alibi, where, err)) ||
        (rc = json_get_int(c, "ffn_hidden_size",
                           cfg->d_model > 0 && cfg->d_model <= INT_MAX / 4 ? 4 * cfg->d_model : 0,
                           &cfg->d_ff, where, err)) ||
        (rc = json_get_string(c, "activation", "gelu", &activation, where, err)) ||
        (rc = json_get_int(c, "num_ln_in_parallel_attn", 2, &n_ln, where, err)) ||
        (rc = json_get_int(c, "max_position_embeddings", 2048, &cfg->max_position_embeddings, where,
                           err)) ||
        (rc = token_id_get(c, "bos_token_id", 11, &cfg->bos_token_id, where, err)) ||
        (rc = token_id_get(c, "eos_token_id", 11, &cfg->eos_token_id, where, err)) ||
        (rc = json_get_bool(c, "tie_word_embeddings", 1, &cfg->tie_word_embeddings, where, err)))
        return rc;
    if (alibi)
        return fl_error_set(err, FL_EUNSUPPORTED,
                            "%s: field 'alibi' is true; only rotary Falcon "
                            "models are supported",
                            where);
    if (strcmp(activation, "gelu"))
        return fl_error_set(err, FL_EUNSUPPORTED,
                            "%s: field 'activation' is '%s'; only 'gelu' is "
                            "supported",
                            where, activation);
    if (cfg->n_head <= 0 || cfg->d_model % cfg->n_head)
        return fl_error_set(err, FL_EINVAL, "%s: field '%s' (%d) must divide '%s' (%d)", where,
                            f_head, cfg->n_head, f_hidden, cfg->d_model);
    // HF FalconAttention: new arch -> num_kv_heads; else multi_query -> 1; else one per head.
    cfg->n_head_kv = cfg->new_decoder_architecture ? n_kv : multi_query ? 1 : cfg->n_head;
    cfg->head_dim = cfg->d_model / cfg->n_head;
    // HF's new-arch layer always sums attention and MLP, whatever parallel_attn says.
    if (cfg->new_decoder_architecture) cfg->parallel_attn = 1;
    cfg->n_norm_in_layer = cfg->new_decoder_architecture && n_ln == 2 ? 2 : 1;
    cfg->arch = ARCH_FALCON;
    cfg->norm = NORM_LAYERNORM;
    cfg->mlp = MLP_GELU;
    return FL_OK;
}

static fl_code llama_parse(const cJSON *c, const char *where, model_config *cfg, fl_error *err) {
    const char *act;
    int mlp_bias;
    fl_code rc;
    if ((rc = json_require_int(c, "hidden_size", &cfg->d_model, where, err)) ||
        (rc = json_require_int(c, "intermediate_size", &cfg->d_ff, where, err)) ||
        (rc = json_require_int(c, "num_hidden_layers", &cfg->n_layer, where, err)) ||
        (rc = json_require_int(c, "num_attention_heads", &cfg->n_head, where, err)) ||
        (rc = json_require_int(c, "vocab_size", &cfg->n_vocab, where, err)) ||
        (rc = json_get_int(c, "num_key_value_heads", cfg->n_head, &cfg->n_head_kv, where, err)) ||
        (rc = json_get_float(c, "rms_norm_eps", 1e-6f, &cfg->norm_eps, where, err)) ||
        (rc = json_get_int(c, "max_position_embeddings", 2048, &cfg->max_position_embeddings, where,
                           err)) ||
        (rc = json_get_bool(c, "tie_word_embeddings", 0, &cfg->tie_word_embeddings, where, err)) ||
        (rc = json_get_bool(c, "attention_bias", 0, &cfg->bias, where, err)) ||
        (rc = json_get_bool(c, "mlp_bias", 0, &mlp_bias, where, err)) ||
        (rc = json_get_string(c, "hidden_act", "silu", &act, where, err)) ||
        (rc = token_id_get(c, "bos_token_id", 1, &cfg->bos_token_id, where, err)) ||
        (rc = token_id_get(c, "eos_token_id", 2, &cfg->eos_token_id, where, err)))
        return rc;
    if (strcmp(act, "silu"))
        return fl_error_set(err, FL_EUNSUPPORTED,
                            "%s: field 'hidden_act' is '%s'; only 'silu' is "
                            "supported",
                            where, act);
    if (mlp_bias)
        return fl_error_set(err, FL_EUNSUPPORTED, "%s: field 'mlp_bias' true is not supported",
                            where);
    if (cfg->n_head <= 0)
        return fl_error_set(err, FL_EINVAL, "%s: field 'num_attention_heads' must be positive",
                            where);
    // An explicit head_dim may differ from hidden/heads (then no divisibility is required).
    if (!json_has(c, "head_dim") && cfg->d_model % cfg->n_head)
        return fl_error_set(err, FL_EINVAL,
                            "%s: field 'num_attention_heads' (%d) must divide "
                            "'hidden_size' (%d)",
                            where, cfg->n_head, cfg->d_model);
    if ((rc = json_get_int(c, "head_dim", cfg->d_model / cfg->n_head, &cfg->head_dim, where, err)))
        return rc;
    cfg->arch = ARCH_LLAMA;
    cfg->new_decoder_architecture = 0;
    cfg->n_norm_in_layer = 1;
    cfg->parallel_attn = 0;
    cfg->norm = NORM_RMSNORM;
    cfg->mlp = MLP_SWIGLU;
    return FL_OK;
}

// GPTQ settings: quantize_config.json (AutoGPTQ), else config.json's "quantization_config"
// (transformers' copy of it); the operator's overrides o (NULL: none) fill what neither gives.
// The one place GPTQ settings are checked; messages name what gave the bad value.
static fl_code quant_parse(const char *dir, const cJSON *config, const char *config_path,
                           const quant_overrides *o, model_config *cfg, fl_error *err) {
    static const quant_overrides none = {0};
    if (!o) o = &none;
    quant_config *q = &cfg->quant;
    char path[4096];
    snprintf(path, sizeof path, "%s/quantize_config.json", dir);
    cJSON *file = NULL;
    const cJSON *qc = NULL;
    const char *where = path;
    fl_code rc;
    if (access(path, F_OK) == 0) {
        if ((rc = json_load_file(path, &file, err))) return rc;
        if (!cJSON_IsObject(file)) {
            cJSON_Delete(file);
            return fl_error_set(err, FL_EFORMAT, "%s: not a JSON object", path);
        }
        qc = file;
    } else if (cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(config, "quantization_config"))) {
        qc = cJSON_GetObjectItemCaseSensitive(config, "quantization_config");
        where = config_path;
    }
    int bits = 0, group = 0;
    const char *method = "gptq";
    memset(q, 0, sizeof *q);
    q->sym = 1;
    if (qc && ((rc = json_get_string(qc, "quant_method", "gptq", &method, where, err)) ||
               (rc = json_get_int(qc, "bits", 0, &bits, where, err)) ||
               (rc = json_get_int(qc, "group_size", 0, &group, where, err)) ||
               (rc = json_get_bool(qc, "desc_act", 0, &q->desc_act, where, err)) ||
               (rc = json_get_bool(qc, "sym", 1, &q->sym, where, err)))) {
        cJSON_Delete(file);
        return rc;
    }
    if (qc && strcmp(method, "gptq")) {
        rc = fl_error_set(err, FL_EUNSUPPORTED, "%s: quant_method '%s' is not supported (gptq)",
                          where, method);
        cJSON_Delete(file);
        return rc;
    }
    cJSON_Delete(file);
    q->gptq = qc || quant_overrides_given(o);
    if (!q->gptq) return FL_OK;
    q->bits = bits ? bits : o->bits;
    q->group_size = group ? group : o->group_size;
    if (!q->bits || !q->group_size) {
        const char *given = qc        ? where
                            : o->bits ? quant_overrides_bits_source(o)
                                      : quant_overrides_group_source(o);
        return fl_error_set(err, FL_ENOTFOUND,
                            "%s: GPTQ %s not given (set it in quantize_config.json, --gptq-%s "
                            "or GPTQ_%s)",
                            given, !q->bits ? "bits" : "group_size",
                            !q->bits ? "bits" : "groupsize", !q->bits ? "BITS" : "GROUPSIZE");
    }
    if (q->bits != 2 && q->bits != 3 && q->bits != 4 && q->bits != 8)
        return fl_error_set(err, FL_EUNSUPPORTED, "%s: GPTQ bits %d (2, 3, 4 or 8)",
                            bits ? where : quant_overrides_bits_source(o), q->bits);
    if (q->group_size != -1 &&
        (q->group_size <= 0 || cfg->d_model % q->group_size || cfg->d_ff % q->group_size)) {
        return fl_error_set(err, FL_EINVAL,
                            "%s: GPTQ group_size %d must be -1 or divide d_model "
                            "(%d) and d_ff (%d)",
                            group ? where : quant_overrides_group_source(o), q->group_size,
                            cfg->d_model, cfg->d_ff);
    }
    return FL_OK;
}

// Sizes that parse but cannot describe a model.
static fl_code config_validate(const model_config *cfg, const char *where, fl_error *err) {
    const struct {
        const char *name;
        int value;
    } sizes[] = {{"hidden_size", cfg->d_model},
                 {"num_hidden_layers", cfg->n_layer},
                 {"num_attention_heads", cfg->n_head},
                 {"vocab_size", cfg->n_vocab},
                 {"ffn/intermediate size", cfg->d_ff},
                 {"max_position_embeddings", cfg->max_position_embeddings},
                 {"kv heads", cfg->n_head_kv},
                 {"head_dim", cfg->head_dim}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        if (sizes[i].value <= 0)
            return fl_error_set(err, FL_EINVAL, "%s: %s must be positive (is %d)", where,
                                sizes[i].name, sizes[i].value);
    }
    if (cfg->n_head % cfg->n_head_kv)
        return fl_error_set(err, FL_EINVAL, "%s: kv heads (%d) must divide attention heads (%d)",
                            where, cfg->n_head_kv, cfg->n_head);
    if (cfg->head_dim % 2 || cfg->head_dim < 4)
        return fl_error_set(err, FL_EINVAL, "%s: head_dim %d must be even and >= 4 for rotary",
                            where, cfg->head_dim);
    if (!(cfg->norm_eps >= 0))
        return fl_error_set(err, FL_EINVAL, "%s: norm epsilon must not be negative", where);
    return FL_OK;
}

fl_code model_config_load(const char *model_dir, const quant_overrides *gptq, model_config *cfg,
                          fl_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", model_dir);
    memset(cfg, 0, sizeof *cfg);
    cJSON *root;
    fl_code rc = json_load_file(path, &root, err);
    if (rc) return rc;
    const char *type = NULL;
    if (!cJSON_IsObject(root)) {
        rc = fl_error_set(err, FL_EFORMAT, "%s: not a JSON object", path);
    } else if (!(rc = json_get_string(root, "model_type", NULL, &type, path, err)) && !type) {
        rc = fl_error_set(err, FL_ENOTFOUND, "%s: missing required field 'model_type'", path);
    }
    if (!rc) {
        snprintf(cfg->model_type, sizeof cfg->model_type, "%s", type);
        if (!strcmp(type, "falcon") || !strcmp(type, "RefinedWeb") ||
            !strcmp(type, "RefinedWebModel"))
            rc = falcon_parse(root, path, cfg, err);
        else if (!strcmp(type, "llama"))
            rc = llama_parse(root, path, cfg, err);
        else
            rc = fl_error_set(err, FL_EUNSUPPORTED,
                              "%s: model_type '%s' is not supported "
                              "(falcon, RefinedWeb, RefinedWebModel, llama)",
                              path, type);
    }
    if (!rc) rc = config_validate(cfg, path, err);
    if (!rc)
        rc = rope_config_parse(root, path, cfg->max_position_embeddings, cfg->head_dim, &cfg->rope,
                               err);
    if (!rc) rc = quant_parse(model_dir, root, path, gptq, cfg, err);
    cJSON_Delete(root);
    return rc;
}
