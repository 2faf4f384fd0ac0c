// falconlite inspect: what a model directory holds and what serving it costs: config summary,
// tensor table, quantization (act-order read from g_idx), weight bytes per tensor-parallel rank
// and KV-cache bytes per token.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/model_config.h"
#include "common/safetensors.h"
#include "tools/cli_args.h"
#include "tools/cli_common.h"
#include "tools/commands.h"

#define KV_REPORT_TOKENS 12000 // FalconLite's long-context target

static const int tp_sizes[] = {1, 2, 4, 8};
#define N_TP ((int)(sizeof tp_sizes / sizeof tp_sizes[0]))

static int name_has(const char *name, const char *part) {
    return strstr(name, part) != NULL;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

// Bytes of tensor t one rank of a TP-way deployment holds (TGI's split): vocab-split embedding
// and head; column-parallel matrices split on outputs (g_idx whole); row-parallel matrices
// split on inputs (qweight, g_idx and dense weights) with GPTQ scales/zeros whole; norms and
// row-parallel biases on every rank.
static double tensor_rank_bytes(const st_tensor *t, int tp) {
    const char *n = t->name;
    double b = (double)t->nbytes;
    if (name_has(n, "word_embeddings") || name_has(n, "lm_head") || name_has(n, "embed_tokens"))
        return b / tp;
    int column = name_has(n, "query_key_value.") || name_has(n, "dense_h_to_4h.") ||
                 name_has(n, "q_proj.") || name_has(n, "k_proj.") || name_has(n, "v_proj.") ||
                 name_has(n, "gate_proj.") || name_has(n, "up_proj.");
    int row = name_has(n, "attention.dense.") || name_has(n, "dense_4h_to_h.") ||
              name_has(n, "o_proj.") || name_has(n, "down_proj.");
    if (column) return ends_with(n, ".g_idx") ? b : b / tp;
    if (row) {
        if (ends_with(n, ".qweight") || ends_with(n, ".g_idx") || ends_with(n, ".weight"))
            return b / tp;
        return b;
    }
    return b;
}

// Act-order shows as a g_idx that is not k / group_size.
static int gidx_is_act_order(const st_tensor *t, int group_size) {
    if (t->type != DTYPE_I32 || t->n_dim != 1 || group_size <= 0) return 0;
    const int32_t *g = t->data;
    for (int64_t k = 0; k < t->shape[0]; k++)
        if (g[k] != k / group_size) return 1;
    return 0;
}

static void human_bytes(double b, char *out, size_t n) {
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4)
        b /= 1024, u++;
    snprintf(out, n, u ? "%.2f %s" : "%.0f %s", b, units[u]);
}

int cmd_inspect(int argc, char **argv) {
    const char *dir = NULL;
    int json = 0;
    opt_spec opts[] = {
        OPT("model", OPT_STRING, &dir, "model directory"),
        OPT("json", OPT_BOOL, &json, "print one JSON object"),
    };
    int rc = cli_args_parse("inspect",
                            "Summarises a model directory: config, tensors, quantization, and the "
                            "memory a deployment needs.",
                            argc, argv, opts, sizeof opts / sizeof opts[0]);
    if (rc) return rc < 0 ? 2 : 0;
    if (!dir) return cli_fail("inspect: --model is required");
    model_config cfg;
    fl_error err = {0};
    rope_overrides rope = ROPE_OVERRIDES_NONE;
    quant_overrides gptq = {0};
    if (cli_gptq_env("inspect", &gptq)) return 1;
    if (model_config_load(dir, &gptq, &cfg, &err)) return cli_fail("%s", err.msg);
    if (cli_rope_env("inspect", &rope)) return 1;
    if (rope_overrides_given(&rope) &&
        rope_config_apply_overrides(&cfg.rope, cfg.max_position_embeddings, &rope, &cfg.rope, &err))
        return cli_fail("%s", err.msg);
    safetensors *st;
    if (safetensors_open_dir(dir, &st, &err)) return cli_fail("%s", err.msg);

    int n_t = safetensors_count(st), act_order = 0;
    double total = 0, per_rank[N_TP] = {0};
    for (int i = 0; i < n_t; i++) {
        const st_tensor *t = safetensors_at(st, i);
        total += (double)t->nbytes;
        for (int r = 0; r < N_TP; r++)
            per_rank[r] += tensor_rank_bytes(t, tp_sizes[r]);
        if (ends_with(t->name, ".g_idx")) act_order |= gidx_is_act_order(t, cfg.quant.group_size);
    }
    // K and V, fp16, every layer (the serving KV dtype). A rank holds n_head_kv / tp whole KV
    // heads; multi-query (one KV head) copies it to every rank; other splits are impossible
    // (kv_rank -1: TP must divide the KV groups).
    double kv_token = (double)cfg.n_layer * 2 * cfg.n_head_kv * cfg.head_dim * 2;
    double kv_rank[N_TP];
    for (int r = 0; r < N_TP; r++)
        kv_rank[r] = cfg.n_head_kv % tp_sizes[r] == 0 ? kv_token / tp_sizes[r]
                     : cfg.n_head_kv == 1             ? kv_token
                                                      : -1;

    const rope_config *rp = &cfg.rope;
    if (json) {
        cJSON *root = cJSON_CreateObject(), *c = cJSON_AddObjectToObject(root, "config");
        cJSON_AddStringToObject(c, "model_type", cfg.model_type);
        cJSON_AddStringToObject(c, "arch", cfg.arch == ARCH_FALCON ? "falcon" : "llama");
        cJSON_AddNumberToObject(c, "d_model", cfg.d_model);
        cJSON_AddNumberToObject(c, "n_layer", cfg.n_layer);
        cJSON_AddNumberToObject(c, "n_head", cfg.n_head);
        cJSON_AddNumberToObject(c, "n_head_kv", cfg.n_head_kv);
        cJSON_AddNumberToObject(c, "head_dim", cfg.head_dim);
        cJSON_AddNumberToObject(c, "d_ff", cfg.d_ff);
        cJSON_AddNumberToObject(c, "n_vocab", cfg.n_vocab);
        cJSON_AddBoolToObject(c, "new_decoder_architecture", cfg.new_decoder_architecture);
        cJSON_AddBoolToObject(c, "parallel_attn", cfg.parallel_attn);
        cJSON *ro = cJSON_AddObjectToObject(c, "rope");
        cJSON_AddStringToObject(ro, "mode", rope_mode_name(rp->mode));
        cJSON_AddNumberToObject(ro, "theta", rp->theta);
        cJSON_AddNumberToObject(ro, "alpha", rp->alpha);
        cJSON_AddNumberToObject(ro, "threshold", rp->threshold);
        cJSON_AddNumberToObject(ro, "factor", rp->factor);
        cJSON *q = cJSON_AddObjectToObject(root, "quantization");
        cJSON_AddBoolToObject(q, "gptq", cfg.quant.gptq);
        if (cfg.quant.gptq) {
            cJSON_AddNumberToObject(q, "bits", cfg.quant.bits);
            cJSON_AddNumberToObject(q, "group_size", cfg.quant.group_size);
            cJSON_AddBoolToObject(q, "act_order", act_order);
        }
        cJSON *ts = cJSON_AddArrayToObject(root, "tensors");
        for (int i = 0; i < n_t; i++) {
            const st_tensor *t = safetensors_at(st, i);
            cJSON *o = cJSON_CreateObject(), *sh = cJSON_AddArrayToObject(o, "shape");
            cJSON_AddStringToObject(o, "name", t->name);
            cJSON_AddStringToObject(o, "dtype", dtype_name(t->type));
            for (int d = 0; d < t->n_dim; d++)
                cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[d]));
            cJSON_AddNumberToObject(o, "bytes", (double)t->nbytes);
            cJSON_AddItemToArray(ts, o);
        }
        cJSON *mem = cJSON_AddObjectToObject(root, "memory");
        cJSON_AddNumberToObject(mem, "weight_bytes", total);
        cJSON *wr = cJSON_AddObjectToObject(mem, "weight_bytes_per_rank");
        cJSON *kr = cJSON_AddObjectToObject(mem, "kv_bytes_per_token_per_rank");
        for (int r = 0; r < N_TP; r++) {
            if (kv_rank[r] < 0) continue; // this TP size cannot split the KV heads
            char k[8];
            snprintf(k, sizeof k, "%d", tp_sizes[r]);
            cJSON_AddNumberToObject(wr, k, per_rank[r]);
            cJSON_AddNumberToObject(kr, k, kv_rank[r]);
        }
        cJSON_AddNumberToObject(mem, "kv_bytes_per_token", kv_token);
        cJSON_AddNumberToObject(mem, "kv_tokens", KV_REPORT_TOKENS);
        cJSON_AddNumberToObject(mem, "kv_bytes_for_tokens", kv_token * KV_REPORT_TOKENS);
        cli_json_print(root);
    } else {
        char a[32], b[32];
        printf("model: %s\n", dir);
        printf("arch: %s (model_type %s), new_decoder_architecture %d, parallel_attn %d, bias %d\n",
               cfg.arch == ARCH_FALCON ? "falcon" : "llama", cfg.model_type,
               cfg.new_decoder_architecture, cfg.parallel_attn, cfg.bias);
        printf("dims: d_model %d, n_layer %d, n_head %d, n_head_kv %d, head_dim %d, d_ff %d, "
               "n_vocab %d\n",
               cfg.d_model, cfg.n_layer, cfg.n_head, cfg.n_head_kv, cfg.head_dim, cfg.d_ff,
               cfg.n_vocab);
        printf("rope: %s, theta %g", rope_mode_name(rp->mode), rp->theta);
        if (rp->mode == ROPE_FALCONLITE)
            printf(", alpha %g, threshold %d", rp->alpha, rp->threshold);
        if (rp->mode == ROPE_DYNAMIC || rp->mode == ROPE_LINEAR)
            printf(", factor %g, threshold %d", rp->factor, rp->threshold);
        printf("\n");
        if (cfg.quant.gptq)
            printf("quantization: GPTQ %d-bit, group size %d, act-order %s (from g_idx)\n",
                   cfg.quant.bits, cfg.quant.group_size, act_order ? "yes" : "no");
        else
            printf("quantization: none\n");
        printf("\n%-60s %-5s %-18s %14s\n", "tensor", "dtype", "shape", "bytes");
        for (int i = 0; i < n_t; i++) {
            const st_tensor *t = safetensors_at(st, i);
            char sh[96];
            st_shape_format(sh, sizeof sh, t->n_dim, t->shape);
            printf("%-60s %-5s %-18s %14zu\n", t->name, dtype_name(t->type), sh, t->nbytes);
        }
        human_bytes(total, a, sizeof a);
        printf("total: %d tensors, %.0f bytes (%s)\n\nmemory:\n", n_t, total, a);
        for (int r = 0; r < N_TP; r++) {
            if (kv_rank[r] < 0) {
                printf("  TP %d: not possible (%d KV heads do not split %d ways)\n", tp_sizes[r],
                       cfg.n_head_kv, tp_sizes[r]);
                continue;
            }
            human_bytes(per_rank[r], a, sizeof a);
            human_bytes(kv_rank[r] * KV_REPORT_TOKENS, b, sizeof b);
            printf("  TP %d: weights %s per rank, KV cache %.0f bytes/token per rank "
                   "(%s for %d tokens)\n",
                   tp_sizes[r], a, kv_rank[r], b, KV_REPORT_TOKENS);
        }
        human_bytes(kv_token * KV_REPORT_TOKENS, a, sizeof a);
        printf("  KV cache (fp16, all ranks): %.0f bytes per token, %s for %d tokens\n", kv_token,
               a, KV_REPORT_TOKENS);
    }
    safetensors_close(st);
    return 0;
}
