// Rotary position embedding settings: the modes, their parsing from config.json, the operator's
// overrides (--rope-* flags and FalconLite's DNTK_ALPHA_SCALER / PRETRAINED_MAX_TOKENS
// environment, read only at a process edge), and the per-length base formula.
#pragma once
#include "common/status.h"

struct cJSON;
struct opt_spec;

// How the rotary base changes with the sequence's current length L.
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

// Reads config.json's rope_theta and rope_parameters (transformers 5) or rope_scaling (older):
// type, factor, theta, original_max_position_embeddings. path names the file in messages.
fl_code rope_config_parse(const struct cJSON *config, const char *path, int max_position_embeddings,
                          int head_dim, rope_config *out, fl_error *err);

// Parses a rotary mode name ("none", "falconlite", "dynamic", "linear").
fl_code rope_mode_parse(const char *name, rope_mode *out, fl_error *err);
const char *rope_mode_name(rope_mode mode);

// The rotary base to use for a sequence whose current length is L (prompt length at prefill,
// +1 each decode step), per the rope mode. Linear scaling returns theta (positions are scaled).
double rope_base_for_length(const rope_config *rope, int length);
// Position multiplier: 1/factor for linear scaling, else 1.
float rope_position_scale(const rope_config *rope);

// Rotary settings an operator gives on top of config.json; a field not given is -1, NAN or 0.
typedef struct rope_overrides {
    int mode; // rope_mode, -1: not given
    float alpha;
    int threshold;
    float factor;
} rope_overrides;

#define ROPE_OVERRIDES_NONE ((rope_overrides){-1, __builtin_nanf(""), 0, __builtin_nanf("")})

int rope_overrides_given(const rope_overrides *o);

// The --rope-scaling, --rope-alpha, --rope-threshold and --rope-factor options bound to o: the
// one declaration the router, the shard and the CLI share (ROPE_SCALING and ROPE_FACTOR are
// their environment variables where the parser reads the environment).
enum { ROPE_OPTS_N = 4 };
void rope_opts_bind(rope_overrides *o, struct opt_spec *out); // out: [ROPE_OPTS_N]

// FalconLite's environment: DNTK_ALPHA_SCALER selects falconlite scaling with that alpha and the
// threshold PRETRAINED_MAX_TOKENS (default 2048), factor 1, as FalconLite's start script and
// layers.py do. Fills only the fields of o not given already (flags win). Call at process edges.
fl_code rope_overrides_add_env(rope_overrides *o, fl_error *err);

// out = base with the overrides applied, checked: falconlite needs alpha > 0, dynamic and linear
// need factor > 0; a missing threshold becomes the model's trained context,
// max_position_embeddings (2048 for Falcon, as PRETRAINED_MAX_TOKENS).
fl_code rope_config_apply_overrides(const rope_config *base, int max_position_embeddings,
                                    const rope_overrides *o, rope_config *out, fl_error *err);
