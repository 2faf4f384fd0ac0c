// A model on one backend: config, this tensor-parallel rank's weights, and the forward pass over a
// ragged batch (several prefills and decodes in one call) with a paged KV cache.
#pragma once
#include <stdint.h>

#include "common/model_config.h"
#include "common/status.h"
#include "kernels/backend.h"
#include "shard/engine/kv_cache.h"

typedef struct comm comm; // tensor-parallel communicator (shard/comm.h); NULL for one rank

typedef struct model_options {
    int rank, world;       // tensor-parallel position; 0, 1 for a single process
    comm *comm;            // all-reduce / all-gather between ranks (NULL when world == 1)
    const rope_overrides *rope_override; // NULL: rotary scaling from config.json as written
    quant_overrides gptq; // GPTQ bits / group size the checkpoint lacks (0: not given)
} model_options;

typedef struct model model;

// Loads config.json (once; opt->rope_override applied on top), quantize_config.json (opt->gptq
// filling what it lacks) and this rank's slice of the safetensors weights from dir onto the
// backend. Bad files give one error naming the file and tensor or field.
fl_code model_load(const char *dir, const model_options *opt, backend *be, model **out,
                   fl_error *err);
void model_free(model *m);
const model_config *model_get_config(const model *m);
// Bytes of weights this rank streams per decode step (for bandwidth reports).
size_t model_weight_bytes(const model *m);
// Creates a KV cache for this model with n_blocks blocks of KV_BLOCK_SIZE tokens.
fl_code model_kv_cache_create(const model *m, int n_blocks, kv_cache **out, fl_error *err);

// One sequence of a forward batch: n_new tokens appended after the seq->n_tokens already cached
// (n_tokens == 0 with n_new > 1 is a prefill; n_tokens > 0 with n_new > 1 a later chunk of a
// chunked prefill; n_new == 1 a decode step). The caller has reserved enough blocks in seq.
// After the call seq->n_tokens has grown by n_new.
typedef struct fwd_seq {
    const int32_t *tokens; // [n_new]
    int n_new;
    kv_seq *kv;
    int all_logits; // 1: logits for every new token (prompt logprobs); 0: last token only
    // The sequence length whose dynamic-NTK rotary base rotates the new tokens' Q and K; 0: the
    // length after this step (n_tokens + n_new). A prompt prefilled in chunks passes its FULL
    // length for every chunk, so each prompt token is rotated exactly as in a whole-prompt
    // prefill (base(L_prompt)); decode steps pass 0 (base(p + 1) at position p).
    int rope_len;
} fwd_seq;

// Runs the forward pass and writes f32 logits over the full vocabulary (gathered across ranks)
// to logits: one row per output position, sequences in order, each contributing n_new rows when
// all_logits else 1. logits must hold that many rows of n_vocab floats (on every rank).
fl_code model_forward(model *m, kv_cache *kv, const fwd_seq *seqs, int n_seq, float *logits,
                      fl_error *err);
