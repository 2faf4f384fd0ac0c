// Model hyperparameters read from a model directory's config.json (+ quantize_config.json and
// the operator's GPTQ overrides), and the architecture described as data so that
// Falcon (both layouts) and Llama share one forward driver.
#pragma once
#include "common/quant_overrides.h"
#include "common/rope.h"
#include "common/status.h"

typedef enum arch_kind { ARCH_FALCON = 0, ARCH_LLAMA } arch_kind;
typedef enum norm_kind { NORM_LAYERNORM = 0, NORM_RMSNORM } norm_kind;
typedef enum mlp_kind {
    MLP_GELU = 0,
    MLP_SWIGLU
} mlp_kind; // GELU: exact erf; SWIGLU: silu(gate)*up

typedef struct quant_config {
    int gptq;       // 1 when the linear layers are GPTQ (qweight/qzeros/scales/g_idx)
    int bits;       // 4
    int group_size; // 128; -1 means one group spanning all inputs
    int desc_act;   // act-order; informational: g_idx is always honoured
    int sym;
} quant_config;

typedef struct model_config {
    arch_kind arch;
    char model_type[32]; // as written in config.json ("falcon", "RefinedWeb", "llama", ...)
    int d_model;
    int n_layer;
    int n_head;
    int n_head_kv; // HF rule (Falcon): new arch -> num_kv_heads; else multi_query -> 1; else n_head
    int head_dim;
    int d_ff;
    int n_vocab;
    int new_decoder_architecture; // Falcon-40B style: grouped fused QKV
    int n_norm_in_layer;          // 2: ln_attn + ln_mlp (40B); 1: one input norm (7B, Llama)
    int parallel_attn;            // attention and MLP read the same input and are summed
    int bias;                     // linear layers carry biases
    norm_kind norm;
    float norm_eps;
    mlp_kind mlp;
    int tie_word_embeddings; // from config; the loader also ties when lm_head.weight is absent
    int bos_token_id, eos_token_id;
    int max_position_embeddings; // trained context (2048 for Falcon when absent)
    rope_config rope;
    quant_config quant;
} model_config;

// Reads <dir>/config.json and, when present, <dir>/quantize_config.json; reads no environment.
// gptq (NULL: none) fills the GPTQ bits / group size the files lack and, given alone, marks the
// model GPTQ; the result is checked here. The rotary settings are config.json's; operator
// overrides (common/rope.h) are applied by the caller.
fl_code model_config_load(const char *model_dir, const quant_overrides *gptq, model_config *cfg,
                          fl_error *err);
