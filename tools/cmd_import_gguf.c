// falconlite import-gguf: a llama.cpp GGUF file (Llama architecture) -> an HF-layout model
// directory the engine and transformers both load: config.json (llama), generation_config.json,
// model.safetensors (fp16, or 4-bit AutoGPTQ v1 linears quantized round-to-nearest with --gptq),
// tokenizer.json + tokenizer_config.json (with the chat template) rebuilt from the metadata.
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/dtype.h"
#include "common/gguf.h"
#include "common/safetensors.h"
#include "tools/cli_args.h"
#include "tools/commands.h"
#include "tools/gguf_tokenizer.h"
#include "tools/gptq_rtn.h"

#define N_LAYER_TENSORS 9

typedef struct llama_hp {
    int n_layer, d_model, d_ff, n_head, n_head_kv, head_dim, n_ctx, n_vocab;
    double theta, eps, rope_factor; // rope_factor: linear scaling, 0 when none
    int tied;                       // no output.weight: the LM head is the embedding
    int64_t bos, eos, pad;          // -1 when absent
} llama_hp;

// One output tensor: HF name, GGUF source, expected [n_out, n_in] (n_in 0 for vectors).
typedef struct import_tensor {
    char hf[96];
    const gguf_tensor *src;
    int64_t n_out, n_in;
    int permute_heads; // undo llama.cpp's Q/K row permutation over this many heads; 0: none
    int gptq;          // written as AutoGPTQ v1 tensors
} import_tensor;

typedef struct import_plan {
    import_tensor *t;
    int n;
} import_plan;

static fl_code hp_int(const gguf_file *g, const char *key, int required, int64_t def, int *out,
                      fl_error *err) {
    int64_t v;
    fl_code rc = required ? gguf_get_int(g, key, &v, err) : gguf_get_int_or(g, key, def, &v, err);
    if (rc) return rc;
    if (v < 1 || v > (1 << 30))
        return fl_error_set(err, FL_EFORMAT, "%s: metadata '%s' = %" PRId64 " is out of range",
                            gguf_name(g), key, v);
    *out = (int)v;
    return FL_OK;
}

static fl_code hp_read(const gguf_file *g, llama_hp *hp, fl_error *err) {
    char *arch = NULL, *rope_type = NULL;
    fl_code rc = gguf_get_string(g, "general.architecture", 0, &arch, err);
    if (!rc && strcmp(arch, "llama"))
        rc = fl_error_set(err, FL_EUNSUPPORTED,
                          "%s: metadata 'general.architecture' is '%s'; only 'llama' is supported",
                          gguf_name(g), arch);
    free(arch);
    if (rc) return rc;
    const gguf_kv *tokens = gguf_kv_find(g, "tokenizer.ggml.tokens");
    const gguf_tensor *embd = gguf_tensor_find(g, "token_embd.weight");
    if (!embd)
        return fl_error_set(err, FL_ENOTFOUND, "%s: tensor 'token_embd.weight' is missing",
                            gguf_name(g));
    int rot;
    if ((rc = hp_int(g, "llama.block_count", 1, 0, &hp->n_layer, err)) ||
        (rc = hp_int(g, "llama.embedding_length", 1, 0, &hp->d_model, err)) ||
        (rc = hp_int(g, "llama.feed_forward_length", 1, 0, &hp->d_ff, err)) ||
        (rc = hp_int(g, "llama.attention.head_count", 1, 0, &hp->n_head, err)) ||
        (rc = hp_int(g, "llama.attention.head_count_kv", 0, hp->n_head, &hp->n_head_kv, err)) ||
        (rc = hp_int(g, "llama.context_length", 0, 2048, &hp->n_ctx, err)) ||
        (rc = hp_int(g, "llama.vocab_size", 0, tokens ? (int64_t)tokens->n : embd->ne[1],
                     &hp->n_vocab, err)) ||
        (rc = gguf_get_float_or(g, "llama.rope.freq_base", 10000.0, &hp->theta, err)) ||
        (rc =
             gguf_get_float_or(g, "llama.attention.layer_norm_rms_epsilon", 1e-5, &hp->eps, err)) ||
        (rc = gguf_get_int_or(g, "tokenizer.ggml.bos_token_id", -1, &hp->bos, err)) ||
        (rc = gguf_get_int_or(g, "tokenizer.ggml.eos_token_id", -1, &hp->eos, err)) ||
        (rc = gguf_get_int_or(g, "tokenizer.ggml.padding_token_id", -1, &hp->pad, err)))
        return rc;
    if (hp->d_model % hp->n_head || hp->n_head % hp->n_head_kv)
        return fl_error_set(err, FL_EFORMAT,
                            "%s: heads (%d) must divide embedding_length (%d), and KV heads (%d) "
                            "must divide heads",
                            gguf_name(g), hp->n_head, hp->d_model, hp->n_head_kv);
    if ((rc = hp_int(g, "llama.attention.key_length", 0, hp->d_model / hp->n_head, &hp->head_dim,
                     err)) ||
        (rc = hp_int(g, "llama.rope.dimension_count", 0, hp->head_dim, &rot, err)))
        return rc;
    if (hp->head_dim % 2 || rot != hp->head_dim)
        return fl_error_set(err, FL_EUNSUPPORTED,
                            "%s: metadata 'llama.rope.dimension_count' (%d) must equal the head "
                            "dimension (%d, even): partial rotary is not supported",
                            gguf_name(g), rot, hp->head_dim);
    if (!(hp->theta > 0) || !(hp->eps > 0))
        return fl_error_set(err, FL_EFORMAT,
                            "%s: metadata 'llama.rope.freq_base' and "
                            "'llama.attention.layer_norm_rms_epsilon' must be positive",
                            gguf_name(g));
    if ((rc = gguf_get_string(g, "llama.rope.scaling.type", 1, &rope_type, err))) return rc;
    hp->rope_factor = 0;
    if (rope_type && !strcmp(rope_type, "linear"))
        rc = gguf_get_float_or(g, "llama.rope.scaling.factor", 1.0, &hp->rope_factor, err);
    else if (rope_type && strcmp(rope_type, "none"))
        rc = fl_error_set(err, FL_EUNSUPPORTED,
                          "%s: metadata 'llama.rope.scaling.type' is '%s' (none and linear are "
                          "supported)",
                          gguf_name(g), rope_type);
    free(rope_type);
    if (rc) return rc;
    if (gguf_tensor_find(g, "rope_freqs.weight"))
        return fl_error_set(err, FL_EUNSUPPORTED,
                            "%s: tensor 'rope_freqs.weight' (Llama-3 rotary frequencies) is not "
                            "supported",
                            gguf_name(g));
    hp->tied = !gguf_tensor_find(g, "output.weight");
    return FL_OK;
}

static fl_code plan_add(const gguf_file *g, import_plan *p, const char *gguf_name_, const char *hf,
                        int64_t n_out, int64_t n_in, int permute, int gptq, fl_error *err) {
    const gguf_tensor *t = gguf_tensor_find(g, gguf_name_);
    if (!t)
        return fl_error_set(err, FL_ENOTFOUND, "%s: tensor '%s' is missing", gguf_name(g),
                            gguf_name_);
    int ok = n_in ? t->n_dim == 2 && t->ne[0] == n_in && t->ne[1] == n_out
                  : t->n_dim == 1 && t->ne[0] == n_out;
    if (!ok)
        return fl_error_set(err, FL_EFORMAT,
                            "%s: tensor '%s' has shape [%" PRId64 ", %" PRId64 "] (ggml order), "
                            "expected [%" PRId64 ", %" PRId64 "] from the metadata",
                            gguf_name(g), t->name, t->ne[0], t->ne[1], n_in ? n_in : n_out,
                            n_in ? n_out : 1);
    if (!t->data)
        return fl_error_set(err, FL_EUNSUPPORTED,
                            "%s: tensor '%s' has type %u, which has no dequantizer", gguf_name(g),
                            t->name, t->type);
    import_tensor *it = &p->t[p->n++];
    *it = (import_tensor){
        .src = t, .n_out = n_out, .n_in = n_in, .permute_heads = permute, .gptq = gptq};
    snprintf(it->hf, sizeof it->hf, "%s", hf);
    return FL_OK;
}

// Every GGUF tensor mapped to its HF name, in HF checkpoint order; a tensor this layout does
// not know is an error rather than silently dropped.
static fl_code plan_build(const gguf_file *g, const llama_hp *hp, int gptq, import_plan *p,
                          fl_error *err) {
    int64_t d = hp->d_model, q = (int64_t)hp->n_head * hp->head_dim,
            kv = (int64_t)hp->n_head_kv * hp->head_dim, ff = hp->d_ff;
    p->t = calloc((size_t)hp->n_layer * N_LAYER_TENSORS + 3, sizeof *p->t);
    if (!p->t) return fl_error_set(err, FL_ENOMEM, "out of memory");
    fl_code rc =
        plan_add(g, p, "token_embd.weight", "model.embed_tokens.weight", hp->n_vocab, d, 0, 0, err);
    for (int l = 0; l < hp->n_layer && !rc; l++) {
        static const struct {
            const char *gguf, *hf;
            int out, in, permute; // 0 d_model, 1 q, 2 kv, 3 d_ff; permute: 1 q heads, 2 kv heads
            int linear;
        } lt[N_LAYER_TENSORS] = {
            {"attn_norm", "input_layernorm", 0, -1, 0, 0},
            {"attn_q", "self_attn.q_proj", 1, 0, 1, 1},
            {"attn_k", "self_attn.k_proj", 2, 0, 2, 1},
            {"attn_v", "self_attn.v_proj", 2, 0, 0, 1},
            {"attn_output", "self_attn.o_proj", 0, 1, 0, 1},
            {"ffn_norm", "post_attention_layernorm", 0, -1, 0, 0},
            {"ffn_gate", "mlp.gate_proj", 3, 0, 0, 1},
            {"ffn_up", "mlp.up_proj", 3, 0, 0, 1},
            {"ffn_down", "mlp.down_proj", 0, 3, 0, 1},
        };
        const int64_t dims[4] = {d, q, kv, ff};
        for (int i = 0; i < N_LAYER_TENSORS && !rc; i++) {
            char gn[96], hn[96];
            snprintf(gn, sizeof gn, "blk.%d.%s.weight", l, lt[i].gguf);
            snprintf(hn, sizeof hn, "model.layers.%d.%s.weight", l, lt[i].hf);
            int permute = lt[i].permute == 1 ? hp->n_head : lt[i].permute == 2 ? hp->n_head_kv : 0;
            rc = plan_add(g, p, gn, hn, dims[lt[i].out], lt[i].in < 0 ? 0 : dims[lt[i].in], permute,
                          gptq && lt[i].linear, err);
        }
    }
    if (!rc) rc = plan_add(g, p, "output_norm.weight", "model.norm.weight", d, 0, 0, 0, err);
    if (!rc && !hp->tied)
        rc = plan_add(g, p, "output.weight", "lm_head.weight", hp->n_vocab, d, 0, 0, err);
    if (rc) return rc;
    for (int i = 0; i < gguf_tensor_count(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        int used = 0;
        for (int j = 0; j < p->n && !used; j++)
            used = p->t[j].src == t;
        if (!used)
            return fl_error_set(err, FL_EUNSUPPORTED,
                                "%s: tensor '%s' is not part of the Llama layout this importer "
                                "knows (biases and extra tensors are not supported)",
                                gguf_name(g), t->name);
    }
    return FL_OK;
}

// llama.cpp's converter permutes Q and K rows of each head from HF's half-split order
// (rotary pairs i, i + d/2) to interleaved pairs (2i, 2i + 1); this restores HF's order so the
// engine's NeoX rotary applies. w [n_heads * head_dim, n_in] in place.
static fl_code rows_unpermute(float *w, int n_heads, int64_t n_out, int64_t n_in, fl_error *err) {
    int64_t hd = n_out / n_heads, half = hd / 2;
    float *tmp = malloc((size_t)(hd * n_in) * sizeof *tmp);
    if (!tmp) return fl_error_set(err, FL_ENOMEM, "out of memory");
    for (int h = 0; h < n_heads; h++) {
        float *head = w + h * hd * n_in; // [head_dim, n_in]
        memcpy(tmp, head, (size_t)(hd * n_in) * sizeof *tmp);
        for (int64_t j = 0; j < half; j++)
            for (int s = 0; s < 2; s++)
                memcpy(head + (s * half + j) * n_in, tmp + (2 * j + s) * n_in,
                       (size_t)n_in * sizeof *tmp);
    }
    free(tmp);
    return FL_OK;
}

static fl_code plan_declare(const import_plan *p, int group_size, safetensors_writer *w,
                            fl_error *err) {
    fl_code rc = FL_OK;
    for (int i = 0; i < p->n && !rc; i++) {
        const import_tensor *t = &p->t[i];
        if (!t->gptq) {
            int64_t shape[2] = {t->n_out, t->n_in};
            rc = safetensors_writer_declare(w, t->hf, DTYPE_F16, t->n_in ? 2 : 1, shape, err);
            continue;
        }
        char base[96], name[112];
        snprintf(base, sizeof base, "%.*s", (int)(strlen(t->hf) - strlen(".weight")), t->hf);
        int64_t qw[2] = {t->n_in / 8, t->n_out}, qz[2] = {t->n_in / group_size, t->n_out / 8},
                sc[2] = {t->n_in / group_size, t->n_out}, gi[1] = {t->n_in};
        snprintf(name, sizeof name, "%s.qweight", base);
        if ((rc = safetensors_writer_declare(w, name, DTYPE_I32, 2, qw, err))) break;
        snprintf(name, sizeof name, "%s.qzeros", base);
        if ((rc = safetensors_writer_declare(w, name, DTYPE_I32, 2, qz, err))) break;
        snprintf(name, sizeof name, "%s.scales", base);
        if ((rc = safetensors_writer_declare(w, name, DTYPE_F16, 2, sc, err))) break;
        snprintf(name, sizeof name, "%s.g_idx", base);
        rc = safetensors_writer_declare(w, name, DTYPE_I32, 1, gi, err);
    }
    return rc;
}

// Dequantizes, un-permutes and writes one tensor (fp16, or the four GPTQ tensors).
static fl_code tensor_write(const gguf_file *g, const import_tensor *t, int group_size,
                            safetensors_writer *w, fl_error *err) {
    int64_t n = t->src->n_elem;
    float *x = malloc((size_t)n * sizeof *x);
    uint16_t *h = NULL;
    gptq_rtn_out q = {0};
    if (!x) return fl_error_set(err, FL_ENOMEM, "%s: out of memory", t->src->name);
    fl_code rc = gguf_tensor_dequantize(g, t->src, x, err);
    if (!rc && t->permute_heads) rc = rows_unpermute(x, t->permute_heads, t->n_out, t->n_in, err);
    if (!rc && t->gptq) {
        rc = gptq_rtn_quantize(x, t->n_out, t->n_in, group_size, &q, err);
        if (rc) fl_error_wrap(err, "%s: tensor '%s'", gguf_name(g), t->src->name);
        int64_t n_groups = t->n_in / group_size;
        if (!rc)
            rc = safetensors_writer_write(w, q.qweight, (size_t)(t->n_in / 8 * t->n_out) * 4, err);
        if (!rc)
            rc = safetensors_writer_write(w, q.qzeros, (size_t)(n_groups * t->n_out / 8) * 4, err);
        if (!rc) rc = safetensors_writer_write(w, q.scales, (size_t)(n_groups * t->n_out) * 2, err);
        if (!rc) rc = safetensors_writer_write(w, q.g_idx, (size_t)t->n_in * 4, err);
    } else if (!rc) {
        if (!(h = malloc((size_t)n * sizeof *h)))
            rc = fl_error_set(err, FL_ENOMEM, "%s: out of memory", t->src->name);
        for (int64_t i = 0; !rc && i < n; i++)
            h[i] = f32_to_fp16(x[i]);
        if (!rc) rc = safetensors_writer_write(w, h, (size_t)n * sizeof *h, err);
    }
    gptq_rtn_out_free(&q);
    free(h);
    free(x);
    return rc;
}

static fl_code json_write(const char *dir, const char *file, cJSON *root, fl_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    char *text = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) return fl_error_set(err, FL_ENOMEM, "%s: out of memory", path);
    FILE *f = fopen(path, "wb");
    int ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (f && fclose(f)) ok = 0;
    free(text);
    return ok ? FL_OK : fl_error_set(err, FL_EIO, "%s: cannot write: %s", path, strerror(errno));
}

// A float32 metadata value as the decimal it was written from (1e-05, not 9.99999974737875e-06).
static double f32_decimal(double v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.7g", v);
    return strtod(buf, NULL);
}

static void id_add(cJSON *o, const char *name, int64_t id) {
    if (id >= 0) cJSON_AddNumberToObject(o, name, (double)id);
}

static cJSON *config_json(const llama_hp *hp) {
    cJSON *c = cJSON_CreateObject();
    cJSON_AddItemToObject(c, "architectures",
                          cJSON_CreateStringArray((const char *[]){"LlamaForCausalLM"}, 1));
    cJSON_AddStringToObject(c, "model_type", "llama");
    cJSON_AddNumberToObject(c, "hidden_size", hp->d_model);
    cJSON_AddNumberToObject(c, "intermediate_size", hp->d_ff);
    cJSON_AddNumberToObject(c, "num_hidden_layers", hp->n_layer);
    cJSON_AddNumberToObject(c, "num_attention_heads", hp->n_head);
    cJSON_AddNumberToObject(c, "num_key_value_heads", hp->n_head_kv);
    cJSON_AddNumberToObject(c, "head_dim", hp->head_dim);
    cJSON_AddNumberToObject(c, "vocab_size", hp->n_vocab);
    cJSON_AddNumberToObject(c, "max_position_embeddings", hp->n_ctx);
    cJSON_AddNumberToObject(c, "rms_norm_eps", f32_decimal(hp->eps));
    cJSON_AddNumberToObject(c, "rope_theta", f32_decimal(hp->theta));
    if (hp->rope_factor > 0) {
        cJSON *rs = cJSON_AddObjectToObject(c, "rope_scaling");
        cJSON_AddStringToObject(rs, "rope_type", "linear");
        cJSON_AddNumberToObject(rs, "factor", hp->rope_factor);
    }
    cJSON_AddStringToObject(c, "hidden_act", "silu");
    cJSON_AddBoolToObject(c, "attention_bias", 0);
    cJSON_AddBoolToObject(c, "mlp_bias", 0);
    cJSON_AddBoolToObject(c, "tie_word_embeddings", hp->tied);
    id_add(c, "bos_token_id", hp->bos);
    id_add(c, "eos_token_id", hp->eos);
    id_add(c, "pad_token_id", hp->pad);
    cJSON_AddStringToObject(c, "torch_dtype", "float16");
    return c;
}

static cJSON *generation_config_json(const llama_hp *hp) {
    cJSON *c = cJSON_CreateObject();
    id_add(c, "bos_token_id", hp->bos);
    id_add(c, "eos_token_id", hp->eos);
    id_add(c, "pad_token_id", hp->pad);
    return c;
}

static cJSON *quantize_config_json(int group_size) {
    cJSON *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "bits", 4);
    cJSON_AddNumberToObject(c, "group_size", group_size);
    cJSON_AddBoolToObject(c, "desc_act", 0);
    cJSON_AddBoolToObject(c, "sym", 0);
    cJSON_AddBoolToObject(c, "true_sequential", 1);
    cJSON_AddStringToObject(c, "quant_method", "gptq");
    cJSON_AddStringToObject(c, "checkpoint_format", "gptq");
    cJSON_AddStringToObject(c, "model_file_base_name", "model");
    // Not GPTQ's error-compensating solver: per-group min/max round-to-nearest from the GGUF.
    cJSON_AddStringToObject(c, "quantizer", "falconlite import-gguf round-to-nearest");
    return c;
}

// mkdir -p.
static fl_code dir_create(const char *path, fl_error *err) {
    char p[4096];
    snprintf(p, sizeof p, "%s", path);
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s) continue;
        char c = *s;
        *s = 0;
        if (mkdir(p, 0755) && errno != EEXIST)
            return fl_error_set(err, FL_EIO, "%s: cannot create directory: %s", p, strerror(errno));
        if (!(*s = c)) return FL_OK;
    }
}

// The largest of 128, 64, 32 dividing every linear layer's input size.
static int group_size_auto(const llama_hp *hp) {
    for (int gs = 128; gs >= 32; gs /= 2)
        if (hp->d_model % gs == 0 && hp->d_ff % gs == 0 && (hp->n_head * hp->head_dim) % gs == 0)
            return gs;
    return 0;
}

static fl_code import_run(const char *file, const char *out, int gptq, int group_size,
                          fl_error *err) {
    gguf_file *g = NULL;
    llama_hp hp;
    import_plan plan = {0};
    safetensors_writer *w = NULL;
    cJSON *tj = NULL, *tc = NULL;
    char tmp[4096], final[4096];
    snprintf(tmp, sizeof tmp, "%s/model.safetensors.partial", out);
    snprintf(final, sizeof final, "%s/model.safetensors", out);
    fl_code rc = gguf_open(file, &g, err);
    if (!rc) rc = hp_read(g, &hp, err);
    if (!rc && gptq && !group_size && !(group_size = group_size_auto(&hp)))
        rc = fl_error_set(err, FL_EINVAL,
                          "import-gguf: no group size of 128, 64 or 32 divides the layer inputs; "
                          "pass --group-size");
    if (!rc) rc = plan_build(g, &hp, gptq, &plan, err);
    for (int i = 0; !rc && gptq && i < plan.n; i++)
        if (plan.t[i].gptq &&
            (plan.t[i].n_in % group_size || plan.t[i].n_in % 8 || plan.t[i].n_out % 8))
            rc = fl_error_set(err, FL_EINVAL,
                              "import-gguf: tensor '%s' ([%" PRId64 ", %" PRId64 "]) cannot be "
                              "quantized with group size %d (inputs must divide by it and by 8, "
                              "outputs by 8)",
                              plan.t[i].src->name, plan.t[i].n_out, plan.t[i].n_in, group_size);
    if (!rc) rc = dir_create(out, err);
    if (!rc) rc = gguf_tokenizer_build(g, hp.n_ctx, &tj, &tc, err);
    if (!rc) rc = json_write(out, "tokenizer.json", tj, err), tj = NULL;
    if (!rc) rc = json_write(out, "tokenizer_config.json", tc, err), tc = NULL;
    if (!rc) rc = json_write(out, "config.json", config_json(&hp), err);
    if (!rc) rc = json_write(out, "generation_config.json", generation_config_json(&hp), err);
    if (!rc && gptq)
        rc = json_write(out, "quantize_config.json", quantize_config_json(group_size), err);
    if (!rc && !gptq) { // a directory re-imported without --gptq must not keep a stale one
        char qc[4096];
        snprintf(qc, sizeof qc, "%s/quantize_config.json", out);
        if (remove(qc) && errno != ENOENT)
            rc = fl_error_set(err, FL_EIO, "%s: cannot remove: %s", qc, strerror(errno));
    }
    if (!rc) rc = safetensors_writer_create(tmp, &w, err);
    if (!rc) rc = plan_declare(&plan, group_size, w, err);
    for (int i = 0; !rc && i < plan.n; i++)
        rc = tensor_write(g, &plan.t[i], group_size, w, err);
    if (w) {
        fl_code frc = safetensors_writer_finish(w, rc ? NULL : err);
        if (!rc) rc = frc;
    }
    // Renamed last, so a complete model.safetensors means a complete import.
    if (!rc && rename(tmp, final))
        rc = fl_error_set(err, FL_EIO, "%s: cannot rename to %s: %s", tmp, final, strerror(errno));
    if (rc && w) remove(tmp);
    cJSON_Delete(tj);
    cJSON_Delete(tc);
    free(plan.t);
    if (!rc)
        printf("imported %s -> %s: llama, %d layers, d_model %d, %d heads (%d KV), vocab %d, "
               "context %d, %s\n",
               file, out, hp.n_layer, hp.d_model, hp.n_head, hp.n_head_kv, hp.n_vocab, hp.n_ctx,
               gptq ? "4-bit GPTQ (round-to-nearest)" : "fp16");
    if (!rc && gptq) printf("GPTQ group size %d\n", group_size);
    gguf_close(g);
    return rc;
}

int cmd_import_gguf(int argc, char **argv) {
    const char *out = NULL;
    int gptq = 0, group_size = 0;
    opt_spec opts[] = {
        OPT("out", OPT_STRING, &out, "output model directory (created; files overwritten)"),
        OPT("gptq", OPT_BOOL, &gptq, "4-bit AutoGPTQ v1 linear layers, round-to-nearest per group"),
        OPT("group-size", OPT_INT, &group_size,
            "GPTQ group size (default: 128, 64 or 32, the "
            "largest that divides the layer inputs)"),
    };
    // The GGUF path is the one positional argument; cli_args_parse sees only the options.
    const char *file = NULL;
    char **rest = malloc(sizeof *rest * (size_t)(argc + 1));
    int n_rest = 0;
    if (!rest) return cli_fail("import-gguf: out of memory");
    for (int i = 0; i < argc; i++) {
        int is_value =
            i > 0 && (!strcmp(argv[i - 1], "--out") || !strcmp(argv[i - 1], "--group-size"));
        if (!file && strncmp(argv[i], "--", 2) && !is_value)
            file = argv[i];
        else
            rest[n_rest++] = argv[i];
    }
    int rc = cli_args_parse("import-gguf FILE",
                            "Converts a llama.cpp GGUF file (Llama architecture) into an HF-layout "
                            "model directory.",
                            n_rest, rest, opts, sizeof opts / sizeof opts[0]);
    free(rest);
    if (rc) return rc < 0 ? 2 : 0;
    if (!file)
        return cli_fail("import-gguf: the GGUF file is required (import-gguf FILE --out DIR)");
    if (!out) return cli_fail("import-gguf: --out is required");
    if (group_size && !gptq) return cli_fail("import-gguf: --group-size needs --gptq");
    if (group_size < 0) return cli_fail("import-gguf: --group-size must be positive");
    fl_error err = {0};
    if (import_run(file, out, gptq, group_size, &err)) return cli_fail("%s", err.msg);
    return 0;
}
