// The model object shared by model.c (loading, lifetime) and forward.c (the forward driver).
#pragma once
#include "shard/engine/arch.h"
#include "shard/engine/model.h"
#include "shard/engine/model_weights.h"

typedef struct fwd_scratch fwd_scratch; // device buffers of the forward pass (forward.c)

struct model {
    model_config cfg;
    const arch_desc *arch;
    backend *be;
    comm *comm;
    int rank, world;
    float pos_scale; // rotary position multiplier (linear scaling)
    model_weights w;
    fwd_scratch *scratch; // grown to the largest batch seen; NULL before the first forward
};

void fwd_scratch_free(fwd_scratch *s, backend *be);
