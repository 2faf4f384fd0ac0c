#include "shard/engine/arch.h"

#include <stddef.h>

static const arch_desc arch_table[] = {
    [ARCH_FALCON] =
        {
            .layer_prefix = "transformer.h.%d.",
            .embed = "transformer.word_embeddings",
            .lm_head = "lm_head",
            .final_norm = "transformer.ln_f",
            .norm_pair = {"ln_attn", "ln_mlp"},
            .norm_input = "input_layernorm",
            .norm_post = "post_attention_layernorm",
            .linear = {[LIN_QKV] = {"self_attention.query_key_value"},
                       [LIN_ATTN_OUT] = {"self_attention.dense"},
                       [LIN_MLP_UP] = {"mlp.dense_h_to_4h"},
                       [LIN_MLP_DOWN] = {"mlp.dense_4h_to_h"}},
            .n_parts = {1, 1, 1, 1},
            .bias_when_config = {1, 1, 1, 1},
        },
    [ARCH_LLAMA] =
        {
            .layer_prefix = "model.layers.%d.",
            .embed = "model.embed_tokens",
            .lm_head = "lm_head",
            .final_norm = "model.norm",
            .norm_pair = {NULL, NULL},
            .norm_input = "input_layernorm",
            .norm_post = "post_attention_layernorm",
            .linear = {[LIN_QKV] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"},
                       [LIN_ATTN_OUT] = {"self_attn.o_proj"},
                       [LIN_MLP_UP] = {"mlp.gate_proj", "mlp.up_proj"},
                       [LIN_MLP_DOWN] = {"mlp.down_proj"}},
            .n_parts = {3, 1, 2, 1},
            .bias_when_config = {1, 1, 0, 0}, // attention_bias covers q, k, v, o only
        },
};

const arch_desc *arch_get(arch_kind kind) {
    if ((unsigned)kind >= sizeof arch_table / sizeof arch_table[0]) return NULL;
    return &arch_table[kind];
}
