// GPTQ settings an operator gives where the checkpoint does not: the --gptq-bits and
// --gptq-groupsize flags and TGI's GPTQ_BITS / GPTQ_GROUPSIZE environment, read only at a process
// edge (the router, the CLI). model_config_load applies and checks them (common/model_config.h).
#pragma once
#include <stdbool.h>

#include "common/status.h"

struct opt_spec;

typedef struct quant_overrides {
    int bits;       // 0: not given
    int group_size; // 0: not given; -1: one group spanning all inputs
    // Set for the fields the environment filled, so that messages name the variable, not the flag.
    bool bits_from_env, group_from_env;
} quant_overrides;

int quant_overrides_given(const quant_overrides *o);

// The --gptq-bits and --gptq-groupsize options bound to o: the one declaration the router and
// the shard share.
enum { QUANT_OPTS_N = 2 };
void quant_opts_bind(quant_overrides *o, struct opt_spec *out); // out: [QUANT_OPTS_N]

// GPTQ_BITS / GPTQ_GROUPSIZE (strict integers; unset, empty or 0: not given) into the fields of o
// not given already (flags win). Call at process edges.
fl_code quant_overrides_add_env(quant_overrides *o, fl_error *err);

// What gave a field, for messages: "--gptq-bits" or "environment: GPTQ_BITS".
const char *quant_overrides_bits_source(const quant_overrides *o);
const char *quant_overrides_group_source(const quant_overrides *o);
