// Round-to-nearest 4-bit quantization of a dense matrix into the AutoGPTQ v1 layout the engine
// serves (no GPTQ error compensation: each group's min/max sets its scale and zero point).
#pragma once
#include <stdint.h>

#include "common/status.h"

// w [n_out, n_in] (HF nn.Linear layout) -> qweight [n_in/8, n_out], qzeros [n_in/G, n_out/8]
// (zero - 1, as AutoGPTQ v1 stores it), scales [n_in/G, n_out] fp16, g_idx [n_in] = k / G.
// n_in must be a multiple of 8 and of group_size, n_out a multiple of 8.
typedef struct gptq_rtn_out {
    int32_t *qweight, *qzeros, *g_idx;
    uint16_t *scales;
} gptq_rtn_out;

fl_code gptq_rtn_quantize(const float *w, int64_t n_out, int64_t n_in, int group_size,
                          gptq_rtn_out *out, fl_error *err);
void gptq_rtn_out_free(gptq_rtn_out *o);
