// Architectures as data: the checkpoint tensor names and the layer layout of each supported
// family, so that weight loading and the forward driver read a table instead of branching on
// the architecture.
#pragma once
#include "common/model_config.h"

#define ARCH_MAX_PARTS 3 // checkpoint tensors fused into one matrix (Llama q, k, v)

// Which linear layer of a block (the four matrices every supported block has).
typedef enum arch_linear {
    LIN_QKV = 0,
    LIN_ATTN_OUT,
    LIN_MLP_UP,
    LIN_MLP_DOWN,
    LIN_COUNT
} arch_linear;

typedef struct arch_desc {
    const char *layer_prefix; // printf pattern of a block's prefix, e.g. "transformer.h.%d."
    // Tensor names are prefixes: ".weight", ".bias", ".qweight", ... are appended.
    const char *embed;      // token embedding matrix [n_vocab, d_model]
    const char *lm_head;    // output matrix [n_vocab, d_model]; absent -> tied to embed
    const char *final_norm; // final norm
    // Block norms (prefixes inside a block). Two-norm parallel layout (Falcon-40B): norm_pair;
    // otherwise norm_input before attention (shared with the MLP when attention and MLP run in
    // parallel) and norm_post before the MLP of a sequential block.
    const char *norm_pair[2];
    const char *norm_input;
    const char *norm_post;
    // Checkpoint tensors of each linear layer, fused at load in this order: LIN_QKV parts are
    // q, k, v (rearranged into Falcon's grouped layout) or one fused tensor already in it;
    // LIN_MLP_UP parts are gate, up (fused into one [2 * d_ff] matrix for swiglu) or one tensor.
    const char *linear[LIN_COUNT][ARCH_MAX_PARTS];
    int n_parts[LIN_COUNT];
    int bias_when_config[LIN_COUNT]; // layer has a bias when the config's bias flag is set
} arch_desc;

const arch_desc *arch_get(arch_kind kind);
