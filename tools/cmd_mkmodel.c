// falconlite mkmodel: a checkpoint with RANDOM weights in the real on-disk formats (HF falcon
// config.json, model.safetensors, AutoGPTQ v1 tensors + quantize_config.json, tokenizer.json),
// shaped like a real model, for speed and memory work where the real weights are not at hand.
// Tensors are generated in chunks and streamed to disk, so a 22 GB checkpoint needs little RAM.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/dtype.h"
#include "common/safetensors.h"
#include "common/rng.h"
#include "tools/cli_args.h"
#include "tools/cli_common.h"
#include "tools/commands.h"
#include "tools/mkmodel_tokenizer.h"

#define CHUNK_BYTES (4u << 20)
#define INIT_STD    0.02 // HF's initializer_range for Falcon

typedef struct preset {
    const char *name;
    int d_model, n_layer, n_head, n_head_kv, d_ff, n_vocab;
    int new_arch; // Falcon-40B layout (grouped KV, ln_attn + ln_mlp); else 7B (multi-query, one LN)
    int oa_start; // id of the first OpenAssistant token in tokenizer.json, -1: none
} preset;

static const preset presets[] = {
    // vocabulary sized like the golden tokenizer (1600 BPE ids + 5 OpenAssistant tokens)
    {"tiny", 256, 4, 8, 2, 1024, 1605, 1, 1600},
    // as tiny with 8 KV heads (16 query heads of 16): splits over 2, 4 or 8 tensor-parallel ranks
    {"tiny-tp", 256, 2, 16, 8, 1024, 1605, 1, 1600},
    {"falcon-7b", 4544, 32, 71, 1, 18176, 65024, 0, -1},
    // FalconLite: 65024 + 5 OpenAssistant tokens, padded to a multiple of 16
    {"falcon-40b", 8192, 60, 128, 8, 32768, 65040, 1, 65024},
};

typedef enum fill_kind {
    FILL_NORMAL_F16, // normal(0, INIT_STD)
    FILL_CONST_F16,  // value
    FILL_RANDOM_I32, // uniform random bits (GPTQ nibbles)
    FILL_CONST_I32,  // value
    FILL_SCALES_F16, // GPTQ scales: value * uniform(0.75, 1.25)
    FILL_GIDX,       // g_idx of the group size in value (act-order: a random permutation)
} fill_kind;

typedef struct tensor_spec {
    char name[96];
    dtype type;
    int n_dim;
    int64_t shape[2];
    fill_kind fill;
    double value;
} tensor_spec;

typedef struct mk_plan {
    tensor_spec *t;
    int n, cap;
    int gptq, group_size, act_order;
} mk_plan;

static int plan_add(mk_plan *p, const char *name, dtype type, int n_dim, int64_t d0, int64_t d1,
                    fill_kind fill, double value) {
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 256;
        tensor_spec *t = realloc(p->t, sizeof *t * cap);
        if (!t) return -1;
        p->t = t, p->cap = cap;
    }
    tensor_spec *s = &p->t[p->n++];
    *s = (tensor_spec){
        .type = type, .n_dim = n_dim, .shape = {d0, d1}, .fill = fill, .value = value};
    snprintf(s->name, sizeof s->name, "%s", name);
    return 0;
}

// A linear layer x[.., n_in] -> [.., n_out]: HF nn.Linear weight [n_out, n_in], or AutoGPTQ v1
// qweight [n_in/8, n_out], qzeros [n_in/G, n_out/8] (zero - 1 = 7, so zero 8: centred nibbles),
// scales [n_in/G, n_out] around INIT_STD/4 (nibble std ~4.6 -> weight std ~INIT_STD), g_idx.
static int plan_linear(mk_plan *p, const char *prefix, int n_in, int n_out) {
    char name[96];
    if (!p->gptq) {
        snprintf(name, sizeof name, "%s.weight", prefix);
        return plan_add(p, name, DTYPE_F16, 2, n_out, n_in, FILL_NORMAL_F16, 0);
    }
    int g = p->group_size;
    int rc = 0;
    snprintf(name, sizeof name, "%s.qweight", prefix);
    rc |= plan_add(p, name, DTYPE_I32, 2, n_in / 8, n_out, FILL_RANDOM_I32, 0);
    snprintf(name, sizeof name, "%s.qzeros", prefix);
    rc |= plan_add(p, name, DTYPE_I32, 2, n_in / g, n_out / 8, FILL_CONST_I32, (double)0x77777777);
    snprintf(name, sizeof name, "%s.scales", prefix);
    rc |= plan_add(p, name, DTYPE_F16, 2, n_in / g, n_out, FILL_SCALES_F16, INIT_STD / 4);
    snprintf(name, sizeof name, "%s.g_idx", prefix);
    rc |= plan_add(p, name, DTYPE_I32, 1, n_in, 0, FILL_GIDX, g);
    return rc;
}

static int plan_layernorm(mk_plan *p, const char *prefix, int d) {
    char name[96];
    snprintf(name, sizeof name, "%s.weight", prefix);
    int rc = plan_add(p, name, DTYPE_F16, 1, d, 0, FILL_CONST_F16, 1.0);
    snprintf(name, sizeof name, "%s.bias", prefix);
    return rc | plan_add(p, name, DTYPE_F16, 1, d, 0, FILL_CONST_F16, 0.0);
}

// HF Falcon tensor names; the LM head is tied to the embedding (no lm_head.weight), as in
// FalconLite's single-matrix checkpoint.
static int plan_falcon(mk_plan *p, const preset *pr) {
    int d = pr->d_model, hd = d / pr->n_head, qkv = (pr->n_head + 2 * pr->n_head_kv) * hd;
    int rc = plan_add(p, "transformer.word_embeddings.weight", DTYPE_F16, 2, pr->n_vocab, d,
                      FILL_NORMAL_F16, 0);
    for (int l = 0; l < pr->n_layer && !rc; l++) {
        char pre[64], name[96];
        snprintf(pre, sizeof pre, "transformer.h.%d", l);
        if (pr->new_arch) {
            snprintf(name, sizeof name, "%s.ln_attn", pre);
            rc |= plan_layernorm(p, name, d);
            snprintf(name, sizeof name, "%s.ln_mlp", pre);
            rc |= plan_layernorm(p, name, d);
        } else {
            snprintf(name, sizeof name, "%s.input_layernorm", pre);
            rc |= plan_layernorm(p, name, d);
        }
        snprintf(name, sizeof name, "%s.self_attention.query_key_value", pre);
        rc |= plan_linear(p, name, d, qkv);
        snprintf(name, sizeof name, "%s.self_attention.dense", pre);
        rc |= plan_linear(p, name, d, d);
        snprintf(name, sizeof name, "%s.mlp.dense_h_to_4h", pre);
        rc |= plan_linear(p, name, d, pr->d_ff);
        snprintf(name, sizeof name, "%s.mlp.dense_4h_to_h", pre);
        rc |= plan_linear(p, name, pr->d_ff, d);
    }
    return rc | plan_layernorm(p, "transformer.ln_f", d);
}

static size_t spec_elems(const tensor_spec *s) {
    return (size_t)s->shape[0] * (s->n_dim > 1 ? (size_t)s->shape[1] : 1);
}

// Generates tensor s chunk by chunk into buf and streams it to w.
static fl_code write_tensor(safetensors_writer *w, const tensor_spec *s, uint64_t seed,
                            const mk_plan *p, void *buf, fl_error *err) {
    size_t n = spec_elems(s), esz = dtype_size(s->type), per_chunk = CHUNK_BYTES / esz;
    uint64_t rng = seed;
    int32_t *perm = NULL;
    if (s->fill == FILL_GIDX && p->act_order) { // act-order: group of input k = perm[k] / G
        perm = malloc(sizeof *perm * n);
        if (!perm) return fl_error_set(err, FL_ENOMEM, "%s: out of memory", s->name);
        for (size_t k = 0; k < n; k++)
            perm[k] = (int32_t)k;
        for (size_t k = n - 1; k > 0; k--) {
            size_t j = splitmix64_next(&rng) % (k + 1);
            int32_t t = perm[k];
            perm[k] = perm[j], perm[j] = t;
        }
    }
    for (size_t off = 0; off < n; off += per_chunk) {
        size_t m = n - off < per_chunk ? n - off : per_chunk;
        uint16_t *h = buf;
        int32_t *q = buf;
        switch (s->fill) {
        case FILL_NORMAL_F16:
            for (size_t i = 0; i < m; i += 2) { // Box-Muller, two normals per pair of uniforms
                double r = sqrt(-2.0 * log(splitmix64_uniform(&rng))) * INIT_STD;
                double a = 2.0 * M_PI * splitmix64_uniform(&rng);
                h[i] = f32_to_fp16((float)(r * cos(a)));
                if (i + 1 < m) h[i + 1] = f32_to_fp16((float)(r * sin(a)));
            }
            break;
        case FILL_CONST_F16:
            for (size_t i = 0; i < m; i++)
                h[i] = f32_to_fp16((float)s->value);
            break;
        case FILL_RANDOM_I32:
            for (size_t i = 0; i < m; i += 2) {
                uint64_t r = splitmix64_next(&rng);
                q[i] = (int32_t)(uint32_t)r;
                if (i + 1 < m) q[i + 1] = (int32_t)(uint32_t)(r >> 32);
            }
            break;
        case FILL_CONST_I32:
            for (size_t i = 0; i < m; i++)
                q[i] = (int32_t)(uint32_t)s->value;
            break;
        case FILL_SCALES_F16:
            for (size_t i = 0; i < m; i++)
                h[i] = f32_to_fp16((float)(s->value * (0.75 + 0.5 * splitmix64_uniform(&rng))));
            break;
        case FILL_GIDX:
            for (size_t i = 0; i < m; i++)
                q[i] = (perm ? perm[off + i] : (int32_t)(off + i)) / (int32_t)s->value;
            break;
        }
        fl_code rc = safetensors_writer_write(w, buf, m * esz, err);
        if (rc) {
            free(perm);
            return rc;
        }
    }
    free(perm);
    return FL_OK;
}

static fl_code write_json(const char *dir, const char *file, cJSON *root, fl_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    FILE *f = fopen(path, "wb");
    if (!f || !text) {
        if (f) fclose(f);
        free(text);
        return fl_error_set(err, FL_EIO, "%s: cannot create: %s", path, strerror(errno));
    }
    int bad = fputs(text, f) < 0 || fputc('\n', f) < 0;
    bad |= fclose(f) != 0;
    free(text);
    return bad ? fl_error_set(err, FL_EIO, "%s: write failed", path) : FL_OK;
}

static cJSON *falcon_config_json(const preset *pr) {
    cJSON *c = cJSON_CreateObject(), *arch = cJSON_AddArrayToObject(c, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("FalconForCausalLM"));
    cJSON_AddStringToObject(c, "model_type", "falcon");
    cJSON_AddNumberToObject(c, "hidden_size", pr->d_model);
    cJSON_AddNumberToObject(c, "num_hidden_layers", pr->n_layer);
    cJSON_AddNumberToObject(c, "num_attention_heads", pr->n_head);
    if (pr->new_arch) {
        cJSON_AddNumberToObject(c, "num_kv_heads", pr->n_head_kv);
        cJSON_AddNumberToObject(c, "num_ln_in_parallel_attn", 2);
    }
    cJSON_AddBoolToObject(c, "new_decoder_architecture", pr->new_arch);
    cJSON_AddBoolToObject(c, "multi_query", !pr->new_arch);
    cJSON_AddBoolToObject(c, "parallel_attn", 1);
    cJSON_AddBoolToObject(c, "bias", 0);
    cJSON_AddBoolToObject(c, "alibi", 0);
    cJSON_AddNumberToObject(c, "ffn_hidden_size", pr->d_ff);
    cJSON_AddStringToObject(c, "activation", "gelu");
    cJSON_AddNumberToObject(c, "vocab_size", pr->n_vocab);
    cJSON_AddNumberToObject(c, "layer_norm_epsilon", 1e-5);
    cJSON_AddNumberToObject(c, "initializer_range", INIT_STD);
    cJSON_AddNumberToObject(c, "bos_token_id", 11);
    cJSON_AddNumberToObject(c, "eos_token_id", 11);
    cJSON_AddNumberToObject(c, "max_position_embeddings", 2048);
    cJSON_AddNumberToObject(c, "rope_theta", 10000.0);
    cJSON_AddBoolToObject(c, "tie_word_embeddings", 1);
    cJSON_AddStringToObject(c, "torch_dtype", "float16");
    cJSON_AddStringToObject(c, "_falconlite_note", "random weights written by falconlite mkmodel");
    return c;
}

static cJSON *quantize_config_json(const mk_plan *p) {
    cJSON *q = cJSON_CreateObject();
    cJSON_AddNumberToObject(q, "bits", 4);
    cJSON_AddNumberToObject(q, "group_size", p->group_size);
    cJSON_AddNumberToObject(q, "damp_percent", 0.01);
    cJSON_AddBoolToObject(q, "desc_act", p->act_order);
    cJSON_AddBoolToObject(q, "sym", 1);
    cJSON_AddBoolToObject(q, "true_sequential", 1);
    cJSON_AddNullToObject(q, "model_name_or_path");
    cJSON_AddNullToObject(q, "model_file_base_name");
    return q;
}

// The group size: the user's, which must divide every linear layer's input size, or the
// largest of 128, 64, 32 that does (Falcon-7B's 4544 = 71 * 64 takes 64).
static int choose_group_size(const preset *pr, int user) {
    if (user) return pr->d_model % user == 0 && pr->d_ff % user == 0 && user % 8 == 0 ? user : -1;
    for (int g = 128; g >= 32; g /= 2)
        if (pr->d_model % g == 0 && pr->d_ff % g == 0) return g;
    return -1;
}

static int make_dir(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s", dir);
    for (char *c = path + 1; *c; c++) {
        if (*c != '/') continue;
        *c = 0;
        if (mkdir(path, 0755) && errno != EEXIST) return -1;
        *c = '/';
    }
    return mkdir(path, 0755) && errno != EEXIST ? -1 : 0;
}

int cmd_mkmodel(int argc, char **argv) {
    const char *preset_name = NULL, *out = NULL;
    int gptq = 0, act_order = 0, group_size = 0, n_layer = 0;
    uint64_t seed = 0;
    opt_spec opts[] = {
        OPT("preset", OPT_STRING, &preset_name,
            "tiny | tiny-tp | falcon-7b | falcon-40b (FalconLite's shapes)"),
        OPT("gptq", OPT_BOOL, &gptq, "4-bit GPTQ linear layers (AutoGPTQ v1 layout)"),
        OPT("group-size", OPT_INT, &group_size,
            "GPTQ group size (default 128, or 64 for falcon-7b)"),
        OPT("act-order", OPT_BOOL, &act_order, "GPTQ act-order: a permuted g_idx"),
        OPT("layers", OPT_INT, &n_layer,
            "number of layers (default: the preset's); per-layer shapes "
            "stay the preset's, for quick tensor-parallel checks"),
        OPT("seed", OPT_U64, &seed, "random seed (default 0)"),
        OPT("out", OPT_STRING, &out, "output directory (created)"),
    };
    int rc = cli_args_parse(
        "mkmodel",
        "Writes a Falcon checkpoint with RANDOM weights (normal(0, 0.02); GPTQ: random nibbles)\n"
        "in the real formats: config.json, model.safetensors, quantize_config.json with --gptq,\n"
        "and a synthetic byte-level BPE tokenizer.json covering the whole vocabulary. The text it\n"
        "generates is meaningless; use it for speed and memory measurements and tests.",
        argc, argv, opts, sizeof opts / sizeof opts[0]);
    if (rc) return rc < 0 ? 2 : 0;
    if (!preset_name)
        return cli_fail("mkmodel: --preset is required (tiny, tiny-tp, falcon-7b, falcon-40b)");
    if (!out) return cli_fail("mkmodel: --out is required");
    const preset *pr = NULL;
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(preset_name, presets[i].name)) pr = &presets[i];
    if (!pr)
        return cli_fail("mkmodel: unknown preset '%s' (tiny, tiny-tp, falcon-7b, falcon-40b)", preset_name);
    preset sized;
    if (n_layer < 0) return cli_fail("mkmodel: --layers must be positive");
    if (n_layer) {
        sized = *pr;
        sized.n_layer = n_layer;
        pr = &sized;
    }
    if ((act_order || group_size) && !gptq)
        return cli_fail("mkmodel: --act-order and --group-size need --gptq");
    mk_plan plan = {.gptq = gptq, .act_order = act_order};
    if (gptq) {
        plan.group_size = choose_group_size(pr, group_size);
        if (plan.group_size < 0)
            return cli_fail("mkmodel: --group-size %d must be a multiple of 8 dividing d_model %d "
                            "and d_ff %d of preset %s",
                            group_size, pr->d_model, pr->d_ff, pr->name);
    }
    if (make_dir(out)) return cli_fail("mkmodel: cannot create %s: %s", out, strerror(errno));
    if (plan_falcon(&plan, pr)) {
        free(plan.t);
        return cli_fail("mkmodel: out of memory");
    }

    fl_error err = {0};
    char path[4096];
    fl_code fc = write_json(out, "config.json", falcon_config_json(pr), &err);
    if (!fc && gptq)
        fc = write_json(out, "quantize_config.json", quantize_config_json(&plan), &err);
    snprintf(path, sizeof path, "%s/tokenizer.json", out);
    if (!fc) fc = mkmodel_tokenizer_write(path, pr->n_vocab, pr->oa_start, &err);
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    safetensors_writer *w = NULL;
    void *buf = malloc(CHUNK_BYTES);
    if (!fc && !buf) fc = fl_error_set(&err, FL_ENOMEM, "out of memory");
    if (!fc) fc = safetensors_writer_create(path, &w, &err);
    double total = 0;
    for (int i = 0; i < plan.n && !fc; i++) {
        const tensor_spec *s = &plan.t[i];
        fc = safetensors_writer_declare(w, s->name, s->type, s->n_dim, s->shape, &err);
        total += (double)spec_elems(s) * dtype_size(s->type);
    }
    for (int i = 0; i < plan.n && !fc; i++) {
        uint64_t ts = seed * 0x9e3779b97f4a7c15ull + (uint64_t)i;
        fc = write_tensor(w, &plan.t[i], splitmix64_next(&ts), &plan, buf, &err);
    }
    if (w) {
        fl_code fin = safetensors_writer_finish(w, fc ? NULL : &err);
        if (!fc) fc = fin;
    }
    free(buf);
    free(plan.t);
    if (fc) return cli_fail("mkmodel: %s", err.msg);
    fprintf(stderr, "falconlite: wrote %s (preset %s%s, %d tensors, %.2f GiB of RANDOM weights)\n",
            out, pr->name, gptq ? ", GPTQ 4-bit" : "", plan.n, total / (1 << 30));
    return 0;
}
