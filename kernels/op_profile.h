// Per-name totals of a backend's op profile (kernels/backend.h: profile_begin), shared by the
// CPU and CUDA backends.
#pragma once
#include <string.h>

#include "kernels/backend.h"

#define OP_PROFILE_MAX_NAMES 64

typedef struct op_profile {
    op_profile_entry e[OP_PROFILE_MAX_NAMES]; // first-seen order
    int n;
} op_profile;

// Adds one span of `us` microseconds to name's total (names beyond the table are dropped).
static inline void op_profile_add(op_profile *p, const char *name, double us) {
    for (int i = 0; i < p->n; i++)
        if (p->e[i].name == name || strcmp(p->e[i].name, name) == 0) {
            p->e[i].calls++;
            p->e[i].total_us += us;
            return;
        }
    if (p->n < OP_PROFILE_MAX_NAMES) p->e[p->n++] = (op_profile_entry){name, 1, us};
}

// Copies up to max totals to out; returns how many names were seen.
static inline int op_profile_copy(const op_profile *p, op_profile_entry *out, int max) {
    for (int i = 0; i < p->n && i < max; i++)
        out[i] = p->e[i];
    return p->n;
}
