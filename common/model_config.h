// Model hyperparameters read from a model directory's config.json (+ quantize_config.json and
// the GPTQ_BITS / GPTQ_GROUPSIZE environment), and the architecture described as data so that
// Falcon (both layouts) and Llama share one forward driver.
#pragma once
#include "common/status.h"

typedef enum arch_kind { ARCH_FALCON = 0, ARCH_LLAMA } arch_kind;
typedef enum norm_kind { NORM_LAYERNORM = 0, NORM_RMSNORM } norm_kind;
typedef enum mlp_kind {
    MLP_GELU = 0,
    MLP_SWIGLU
} mlp_kind; // GELU: exact erf; SWIGLU: silu(gate)*up

// How the rotary base changes with the sequence's current length L (DESIGN.md §3).
typedef enum rope_mode {
    ROPE_NONE = 0,   // base = theta for every L
    ROPE_FALCONLITE, // L > T: base = theta * (L / alpha / T)^(d/(d-2)); else theta
    ROPE_DYNAMIC,    // HF dynamic NTK: L > T: theta * (factor*L/T - (factor-1))^(d/(d-2))
    ROPE_LINEAR,     // positions divided by factor, base = theta
} rope_mode;

typedef struct rope_config {
    rope_mode mode;
    float theta;   // base from config (rope_theta), 10000 for Falcon
    float alpha;   // falconlite: DNTK_ALPHA_SCALER (0.25 in the FalconLite deployment)
    int threshold; // falconlite: PRETRAINED_MAX_TOKENS; dynamic: original max positions
    float factor;  // dynamic and linear scaling factor
    int rot_dim;   // rotated dims per head (NeoX half rotation over [0, rot_dim)); = head_dim
} rope_config;

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

// Reads <dir>/config.json and, when present, <dir>/quantize_config.json. GPTQ_BITS and
// GPTQ_GROUPSIZE in the environment fill bits / group size when the file lacks them.
// DNTK_ALPHA_SCALER / PRETRAINED_MAX_TOKENS in the environment select falconlite rotary scaling.
fl_code model_config_load(const char *model_dir, model_config *cfg, fl_error *err);

// Parses a rotary mode name ("none", "falconlite", "dynamic", "linear").
fl_code rope_mode_parse(const char *name, rope_mode *out, fl_error *err);
const char *rope_mode_name(rope_mode mode);

// The rotary base to use for a sequence whose current length is L (prompt length at prefill,
// +1 each decode step), per the rope mode. Linear scaling returns theta (positions are scaled).
double rope_base_for_length(const rope_config *rope, int length);
// Position multiplier: 1/factor for linear scaling, else 1.
float rope_position_scale(const rope_config *rope);

// Rotary settings given on a command line (--rope-scaling, --rope-alpha, --rope-threshold,
// --rope-factor); a field not given is NULL, NAN or 0.
typedef struct rope_overrides {
    const char *mode;
    float alpha;
    int threshold;
    float factor;
} rope_overrides;

#define ROPE_OVERRIDES_NONE ((rope_overrides){NULL, __builtin_nanf(""), 0, __builtin_nanf("")})

int rope_overrides_given(const rope_overrides *o);
// out = the model's rotary config (config.json + environment) with the overrides applied, checked:
// falconlite needs alpha > 0, dynamic and linear need factor > 0; a missing threshold becomes the
// model's trained context, max_position_embeddings (2048 for Falcon, as PRETRAINED_MAX_TOKENS).
fl_code rope_config_apply_overrides(const model_config *cfg, const rope_overrides *o,
                                    rope_config *out, fl_error *err);
