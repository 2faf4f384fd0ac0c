#include "common/dtype.h"

#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtype_table[] = {
    [DTYPE_F32] = {"F32", 4}, [DTYPE_F16] = {"F16", 2}, [DTYPE_BF16] = {"BF16", 2},
    [DTYPE_I32] = {"I32", 4}, [DTYPE_I64] = {"I64", 8}, [DTYPE_I8] = {"I8", 1},
    [DTYPE_U8] = {"U8", 1},   [DTYPE_F64] = {"F64", 8},
};

size_t dtype_size(dtype t) {
    return dtype_table[t].size;
}

const char *dtype_name(dtype t) {
    return dtype_table[t].name;
}

int dtype_from_name(const char *name, dtype *out) {
    for (size_t i = 0; i < sizeof dtype_table / sizeof dtype_table[0]; i++) {
        if (!strcmp(dtype_table[i].name, name)) {
            *out = (dtype)i;
            return 0;
        }
    }
    return -1;
}
