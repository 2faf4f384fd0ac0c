#include "common/quant_overrides.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "common/options.h"

int quant_overrides_given(const quant_overrides *o) {
    return o->bits || o->group_size;
}

void quant_opts_bind(quant_overrides *o, opt_spec *out) {
    const opt_spec specs[QUANT_OPTS_N] = {
        OPT("gptq-bits", OPT_INT, &o->bits,
            "GPTQ bits when quantize_config.json gives none (as GPTQ_BITS)"),
        OPT("gptq-groupsize", OPT_INT, &o->group_size,
            "GPTQ group size when quantize_config.json gives none; -1: one group (as "
            "GPTQ_GROUPSIZE)"),
    };
    memcpy(out, specs, sizeof specs);
}

// An environment variable as a strict integer into *out when *out is 0 (not given by a flag).
static fl_code env_int_fill(const char *name, int *out, bool *from_env, fl_error *err) {
    const char *s = getenv(name);
    if (!s || !*s || *out) return FL_OK;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < INT_MIN || v > INT_MAX)
        return fl_error_set(err, FL_EINVAL, "environment: %s='%s' must be an integer", name, s);
    *out = (int)v;
    *from_env = v != 0;
    return FL_OK;
}

fl_code quant_overrides_add_env(quant_overrides *o, fl_error *err) {
    fl_code rc = env_int_fill("GPTQ_BITS", &o->bits, &o->bits_from_env, err);
    return rc ? rc : env_int_fill("GPTQ_GROUPSIZE", &o->group_size, &o->group_from_env, err);
}

const char *quant_overrides_bits_source(const quant_overrides *o) {
    return o->bits_from_env ? "environment: GPTQ_BITS" : "--gptq-bits";
}

const char *quant_overrides_group_source(const quant_overrides *o) {
    return o->group_from_env ? "environment: GPTQ_GROUPSIZE" : "--gptq-groupsize";
}
