// This tensor-parallel rank's weights on the backend: read from the safetensors checkpoint,
// sliced (QKV by whole KV groups, dense and MLP-down row-parallel, MLP-up column-parallel,
// embedding and LM head on vocab), fused into the layout the forward driver expects (Falcon's
// grouped QKV, gate|up for swiglu) and uploaded one matrix at a time.
#pragma once
#include <stddef.h>

#include "common/model_config.h"
#include "common/status.h"
#include "kernels/backend.h"
#include "shard/engine/arch.h"

typedef struct layer_weights {
    // Norm before attention [0] and before the MLP [1]; [1] is NULL when the MLP reads the
    // attention norm's output (one-norm parallel layout). Biases are NULL for RMSNorm.
    float *norm_w[2], *norm_b[2]; // [d_model] backend vectors
    bk_matrix *lin[LIN_COUNT];
} layer_weights;

typedef struct model_weights {
    // This rank's share of the dimensions.
    int n_head, n_head_kv;
    int d_ff;           // MLP width (the up matrix has 2 * d_ff outputs for swiglu)
    int vocab_shard;    // embedding / LM head rows per rank: n_vocab padded to a multiple of world
    bk_matrix *embed;   // [vocab_shard, d_model]
    bk_matrix *lm_head; // [vocab_shard, d_model]; NULL when tied to embed
    float *final_norm_w, *final_norm_b;
    layer_weights *layers; // [n_layer]
    int n_layer;
    size_t stream_bytes; // bytes read per decode step (all linear layers + LM head)
} model_weights;

// Loads the weights of rank of world from the safetensors files in dir. cfg->quant is filled
// in from the checkpoint: a model is GPTQ when its linear layers have qweight tensors.
fl_code model_weights_load(model_weights *w, const char *dir, model_config *cfg, int rank,
                           int world, backend *be, fl_error *err);
void model_weights_free(model_weights *w, backend *be);
