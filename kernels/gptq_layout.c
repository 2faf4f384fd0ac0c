// GPTQ act-order layout shared by the backends (see gptq_layout.h).
#include "kernels/gptq_layout.h"

#include <stdlib.h>
#include <string.h>

typedef uint32_t u32x8 __attribute__((vector_size(32)));

fl_code gptq_layout_check(const host_matrix *m, fl_error *err) {
    if (m->bits != 4)
        return fl_error_set(err, FL_EUNSUPPORTED, "gptq matrix: %d-bit weights (only 4-bit)",
                            m->bits);
    if (!m->qweight || !m->qzeros || !m->scales || !m->g_idx)
        return fl_error_set(err, FL_EINVAL,
                            "gptq matrix: qweight, qzeros, scales or g_idx missing");
    if (m->n_in <= 0 || m->n_out <= 0 || m->n_in % 8 || m->n_out % 8 || m->n_groups <= 0)
        return fl_error_set(err, FL_EINVAL,
                            "gptq matrix: n_in %d and n_out %d must be positive multiples of 8, "
                            "n_groups %d positive",
                            m->n_in, m->n_out, m->n_groups);
    for (int k = 0; k < m->n_in; k++) {
        int g = m->g_idx[k];
        if (g < 0 || g >= m->n_groups)
            return fl_error_set(err, FL_EINVAL, "gptq matrix: g_idx[%d] = %d outside [0, %d)", k,
                                g, m->n_groups);
    }
    return FL_OK;
}

void gptq_layout_free(gptq_layout *l) {
    free(l->perm);
    free(l->group_row);
    free(l->qweight);
    memset(l, 0, sizeof *l);
}

// Moves nibble k of the checkpoint's qweight to sorted position kp of dst, for every output.
static void repack_input(uint32_t *dst, const int32_t *qweight, int n_out, int k, int kp) {
    const int32_t *src = qweight + (size_t)(k / 8) * n_out;
    uint32_t *out = dst + (size_t)(kp / 8) * n_out;
    unsigned shift_in = 4 * (k % 8), shift_out = 4 * (kp % 8);
    for (int o = 0; o < n_out; o += 8) { // n_out is a multiple of 8
        u32x8 s, d;
        memcpy(&s, src + o, sizeof s);
        memcpy(&d, out + o, sizeof d);
        d |= ((s >> shift_in) & 15u) << shift_out;
        memcpy(out + o, &d, sizeof d);
    }
}

fl_code gptq_layout_create(gptq_layout *l, const host_matrix *m, fl_error *err) {
    memset(l, 0, sizeof *l);
    fl_code code = gptq_layout_check(m, err);
    if (code != FL_OK) return code;
    const int n_in = m->n_in, n_out = m->n_out, n_groups = m->n_groups;
    l->n_in = n_in;
    l->n_out = n_out;
    l->n_groups = n_groups;
    int32_t *next = calloc((size_t)n_groups, sizeof *next); // next free sorted input per group
    l->group_row = calloc((size_t)n_groups + 1, sizeof *l->group_row);
    if (!next || !l->group_row) goto oom;
    // group_row[g + 1] counts group g's inputs, then becomes a prefix sum of padded rows
    for (int k = 0; k < n_in; k++)
        l->group_row[m->g_idx[k] + 1]++;
    for (int g = 0; g < n_groups; g++) {
        int rows = (l->group_row[g + 1] + 7) / 8;
        if (rows > l->max_group_rows) l->max_group_rows = rows;
        next[g] = 8 * l->group_row[g];
        l->group_row[g + 1] = l->group_row[g] + rows;
    }
    if (l->max_group_rows == 0) l->max_group_rows = 1;
    l->k_pad = 8 * l->group_row[n_groups];
    l->perm = malloc((size_t)l->k_pad * sizeof *l->perm);
    if (!l->perm) goto oom;
    for (int k = 0; k < l->k_pad; k++)
        l->perm[k] = -1;
    for (int k = 0; k < n_in; k++) // stable sort by group
        l->perm[next[m->g_idx[k]]++] = k;
    free(next);
    next = NULL;

    int identity = l->k_pad == n_in;
    for (int k = 0; identity && k < n_in; k++)
        identity = l->perm[k] == k;
    if (identity) {
        free(l->perm);
        l->perm = NULL;
        return FL_OK;
    }
    size_t qw_bytes = (size_t)l->k_pad / 8 * (size_t)n_out * sizeof(uint32_t);
    void *qw = NULL;
    if (posix_memalign(&qw, 64, qw_bytes ? qw_bytes : 64) != 0) goto oom;
    l->qweight = qw;
    memset(l->qweight, 0, qw_bytes);
    for (int kp = 0; kp < l->k_pad; kp++)
        if (l->perm[kp] >= 0) // padding: nibble 0, multiplied by an activation of 0
            repack_input(l->qweight, m->qweight, n_out, l->perm[kp], kp);
    return FL_OK;
oom:
    free(next);
    gptq_layout_free(l);
    return fl_error_set(err, FL_ENOMEM, "gptq matrix: out of memory repacking %d x %d", n_in,
                        n_out);
}

void gptq_layout_zeros_u8(const host_matrix *m, uint8_t *dst) {
    for (int g = 0; g < m->n_groups; g++)
        for (int o = 0; o < m->n_out; o++)
            dst[(size_t)g * m->n_out + o] = (uint8_t)gptq_zero_point(m->qzeros, m->n_out, g, o);
}
