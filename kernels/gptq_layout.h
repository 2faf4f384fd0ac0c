// The host-side layout of a 4-bit GPTQ matrix that every backend repacks to at matrix_create:
// input rows sorted by group (ExLlama's make_sequential permutation, which turns act-order
// g_idx into contiguous groups), each group padded with zero inputs to whole packed rows, and
// qweight repacked in that order. Also the one validation of a GPTQ host_matrix (bits, arrays,
// shapes, g_idx), so every backend rejects the same bad input with the same code and message.
#pragma once
#include <stdint.h>

#include "common/status.h"
#include "kernels/backend.h"

typedef struct gptq_layout {
    int n_in, n_out, n_groups;
    int k_pad;              // sorted, padded inputs (a multiple of 8)
    int32_t *perm;          // [k_pad] original input of sorted input k (-1: padding); NULL: identity
    int32_t *group_row;     // [n_groups + 1] first packed row (8 sorted inputs) of each group
    int max_group_rows;     // packed rows of the largest group (at least 1)
    uint32_t *qweight;      // [k_pad/8, n_out] nibble j of row r is sorted input 8r + j, 64-byte
                            // aligned (free()); NULL when perm is NULL (the checkpoint's is as is)
} gptq_layout;

// Checks a MATRIX_GPTQ host_matrix: FL_EUNSUPPORTED for bits other than 4, FL_EINVAL for a
// missing array, n_in or n_out not a multiple of 8, n_groups <= 0 or a g_idx entry outside
// [0, n_groups).
fl_code gptq_layout_check(const host_matrix *m, fl_error *err);
// Validates m (gptq_layout_check) and computes its sorted layout. On failure l holds nothing.
fl_code gptq_layout_create(gptq_layout *l, const host_matrix *m, fl_error *err);
// Frees what l still owns (a backend may take perm, group_row or qweight and set them to NULL).
void gptq_layout_free(gptq_layout *l);

// The zero point of group g, output o: the stored 4-bit value + 1 (AutoGPTQ v1 stores zero - 1),
// so 1..16.
static inline uint32_t gptq_zero_point(const int32_t *qzeros, int n_out, int g, int o) {
    return (((uint32_t)qzeros[(size_t)g * (n_out / 8) + o / 8] >> (4 * (o % 8))) & 15u) + 1u;
}
// dst[n_groups, n_out] = every zero point (gptq_zero_point) as a byte.
void gptq_layout_zeros_u8(const host_matrix *m, uint8_t *dst);
