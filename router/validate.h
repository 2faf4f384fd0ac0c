// Request validation with TGI 0.9.2's rules, order and messages (validation.rs): the order of the
// checks decides which error a client sees, and the messages are what TGI clients match on.
// Messages are the inner ValidationError text; front-ends prefix "Input validation error: ".
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "common/tokenizer.h"
#include "router/request.h"

typedef struct validate_limits {
    uint32_t max_best_of;        // 2
    uint32_t max_stop_sequences; // 4
    uint32_t max_input_length;   // 1024
    uint32_t max_total_tokens;   // 2048
} validate_limits;

// validate_best_of: checked before everything else when best_of > 1 (generate_best_of).
fl_code validate_best_of(const validate_limits *lim, uint32_t best_of, fl_error *err);

// First what TGI's JSON extractor would refuse (inputs and stop sequences not UTF-8, a float
// parameter NaN, infinite or beyond f32), then checks 1-11 of TGI's validate (everything that
// does not need the token count); fills out with defaults applied. out->stop takes ownership of in->stop (in->stop becomes NULL).
fl_code validate_params(const validate_limits *lim, gen_request_in *in, gen_params *out,
                        fl_error *err);

// Check 12: after left truncation to p->truncate (when the client gave one), the token-count
// rules in TGI's order (MaxTotalTokens first, then InputLength).
fl_code validate_lengths(const validate_limits *lim, int n_input, const gen_params *p,
                         fl_error *err);

// The whole pipeline: validate_params, tokenize in->inputs, truncate, validate_lengths. Without
// truncate, a prompt longer in bytes than max_input_length tokens can cover
// (tokenizer_max_token_bytes) is refused before tokenizing. On success
// *out owns the prompt (taken from in), the ids and the stop strings.
fl_code validate_request(const validate_limits *lim, const tokenizer *tok, gen_request_in *in,
                         gen_request **out, fl_error *err);

// Whether s[0..len) is well-formed UTF-8 (every text field a client sends must be).
bool validate_utf8(const char *s, size_t len);

// A random 64-bit seed (TGI draws one when the client gives none).
uint64_t validate_random_seed(void);
