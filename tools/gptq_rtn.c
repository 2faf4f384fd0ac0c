#include "tools/gptq_rtn.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/dtype.h"

void gptq_rtn_out_free(gptq_rtn_out *o) {
    free(o->qweight);
    free(o->qzeros);
    free(o->g_idx);
    free(o->scales);
    memset(o, 0, sizeof *o);
}

// Scale and zero point of one group from its min/max, asymmetric as AutoGPTQ (range widened to
// include 0). The v1 layout stores zero - 1 in a nibble, so zero must lie in [1, 16]; a group
// with no negative weight would get zero 0, so it takes zero 1 and a scale that still reaches
// its maximum. (Clipping the range to minimise the squared weight error was tried on SmolLM2:
// perplexity got worse, 29.8 against 26.9, so outliers are kept.)
static void group_params(const float *x, int n, float *scale, int *zero) {
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; i++)
        lo = fminf(lo, x[i]), hi = fmaxf(hi, x[i]);
    lo = fminf(lo, 0.0f), hi = fmaxf(hi, 0.0f);
    if (hi == lo) lo = -1.0f, hi = 1.0f;
    float s = (hi - lo) / 15.0f;
    int z = (int)nearbyintf(-lo / s);
    if (z < 1) z = 1, s = hi / 14.0f;
    *scale = fp16_to_f32(f32_to_fp16(s)); // quantize against the scale the engine will read
    *zero = z;
}

static int quant_one(float x, float scale, int zero) {
    int q = (int)nearbyintf(x / scale) + zero;
    return q < 0 ? 0 : q > 15 ? 15 : q;
}

fl_code gptq_rtn_quantize(const float *w, int64_t n_out, int64_t n_in, int group_size,
                          gptq_rtn_out *o, fl_error *err) {
    memset(o, 0, sizeof *o);
    if (group_size <= 0 || n_in % group_size || n_in % 8 || n_out % 8)
        return fl_error_set(err, FL_EINVAL,
                            "GPTQ: a [%" PRId64 ", %" PRId64 "] matrix needs inputs divisible by 8 "
                            "and by the group size %d, and outputs divisible by 8",
                            n_out, n_in, group_size);
    int64_t n_groups = n_in / group_size;
    o->qweight = calloc((size_t)(n_in / 8 * n_out), sizeof *o->qweight);
    o->qzeros = calloc((size_t)(n_groups * n_out / 8), sizeof *o->qzeros);
    o->scales = malloc((size_t)(n_groups * n_out) * sizeof *o->scales);
    o->g_idx = malloc((size_t)n_in * sizeof *o->g_idx);
    if (!o->qweight || !o->qzeros || !o->scales || !o->g_idx) {
        gptq_rtn_out_free(o);
        return fl_error_set(err, FL_ENOMEM, "GPTQ: out of memory");
    }
    for (int64_t k = 0; k < n_in; k++)
        o->g_idx[k] = (int32_t)(k / group_size);
    for (int64_t n = 0; n < n_out; n++) {
        const float *row = w + n * n_in; // [n_in]
        for (int64_t g = 0; g < n_groups; g++) {
            const float *x = row + g * group_size;
            float scale;
            int zero;
            group_params(x, group_size, &scale, &zero);
            o->scales[g * n_out + n] = f32_to_fp16(scale);
            o->qzeros[g * (n_out / 8) + n / 8] |= (int32_t)((uint32_t)(zero - 1) << (4 * (n % 8)));
            for (int i = 0; i < group_size; i++) {
                int64_t k = g * group_size + i;
                int q = quant_one(x[i], scale, zero);
                o->qweight[(k / 8) * n_out + n] |= (int32_t)((uint32_t)q << (4 * (k % 8)));
            }
        }
    }
    return FL_OK;
}
