#include "router/validate.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/utf8.h"

uint64_t validate_random_seed(void) {
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed) {
        // getrandom cannot fail for 8 bytes on Linux >= 3.17; fall back to the clock anyway.
        seed = (uint64_t)(time_now() * 1e9) * 6364136223846793005ULL + 1442695040888963407ULL;
    }
    return seed;
}

fl_code validate_best_of(const validate_limits *lim, uint32_t best_of, fl_error *err) {
    if (lim->max_best_of == 1 && best_of != 1)
        return fl_error_set(err, FL_EINVAL, "`best_of` != 1 is not allowed for this endpoint");
    if (best_of > lim->max_best_of)
        return fl_error_set(err, FL_EINVAL, "`best_of` must be > 0 and <= %u. Given: %u",
                            lim->max_best_of, best_of);
    return FL_OK;
}

bool validate_utf8(const char *s, size_t len) {
    return utf8_valid_prefix((const uint8_t *)s, len) == len;
}

// What TGI's JSON extractor refuses before validation runs: text that is not UTF-8 and floats
// that no f32 holds (NaN, infinities, 1e309). gRPC carries such values as they are; one check
// here covers every front-end.
static fl_code check_representable(const gen_request_in *in, fl_error *err) {
    const gen_params_in *p = &in->params;
    const struct {
        const char *name;
        bool has;
        double v;
    } floats[] = {
        {"temperature", p->has_temperature, p->temperature},
        {"repetition_penalty", p->has_repetition_penalty, p->repetition_penalty},
        {"top_p", p->has_top_p, p->top_p},
        {"typical_p", p->has_typical_p, p->typical_p},
    };
    for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++)
        if (floats[i].has && !(isfinite(floats[i].v) && fabs(floats[i].v) <= FLT_MAX))
            return fl_error_set(err, FL_EINVAL, "`%s` must be a finite number", floats[i].name);
    if (!validate_utf8(in->inputs ? in->inputs : "", in->inputs_len))
        return fl_error_set(err, FL_EINVAL, "`inputs` must be valid UTF-8");
    for (int i = 0; i < p->n_stop; i++)
        if (!validate_utf8(p->stop[i], strlen(p->stop[i])))
            return fl_error_set(err, FL_EINVAL, "`stop` sequences must be valid UTF-8");
    return FL_OK;
}

fl_code validate_params(const validate_limits *lim, gen_request_in *in, gen_params *out,
                        fl_error *err) {
    const gen_params_in *p = &in->params;
    memset(out, 0, sizeof *out);
    fl_code rc = check_representable(in, err);
    if (rc != FL_OK) return rc;
    // best_of 0 behaves as 1, as in TGI (only best_of > 1 takes the best-of path).
    // Saturated, not truncated: 2^32 + 2 must not pass as 2.
    uint32_t best_of = !p->has_best_of || p->best_of <= 1 ? 1
                       : p->best_of > UINT32_MAX          ? UINT32_MAX
                                                          : (uint32_t)p->best_of;
    bool sampling =
        p->do_sample || p->has_temperature || p->has_top_k || p->has_top_p || p->has_typical_p;
    if (best_of > 1 && !sampling)
        return fl_error_set(err, FL_EINVAL, "you must use sampling when `best_of` is > 1");

    double temperature = p->has_temperature ? p->temperature : 1.0;
    if (temperature <= 0.0)
        return fl_error_set(err, FL_EINVAL, "`temperature` must be strictly positive");
    double rep = p->has_repetition_penalty ? p->repetition_penalty : 1.0;
    if (rep <= 0.0)
        return fl_error_set(err, FL_EINVAL, "`repetition_penalty` must be strictly positive");
    double top_p = 1.0, typical_p = 1.0;
    if (p->has_top_p) {
        if (p->top_p <= 0.0 || p->top_p >= 1.0)
            return fl_error_set(err, FL_EINVAL, "`top_p` must be > 0.0 and < 1.0");
        top_p = p->top_p;
    }
    if (p->has_typical_p) {
        if (p->typical_p <= 0.0 || p->typical_p >= 1.0)
            return fl_error_set(err, FL_EINVAL, "`typical_p` must be > 0.0 and < 1.0");
        typical_p = p->typical_p;
    }
    uint32_t top_k = 0;
    if (p->has_top_k) {
        if (p->top_k <= 0) return fl_error_set(err, FL_EINVAL, "`top_k` must be strictly positive");
        top_k = (uint32_t)p->top_k;
    }
    int64_t max_new = p->has_max_new_tokens ? p->max_new_tokens : 20;
    if (max_new == 0)
        return fl_error_set(err, FL_EINVAL, "`max_new_tokens` must be strictly positive");
    if (p->n_stop > (int)lim->max_stop_sequences)
        return fl_error_set(err, FL_EINVAL, "`stop` supports up to %u stop sequences. Given: %d",
                            lim->max_stop_sequences, p->n_stop);
    uint64_t seed;
    if (p->has_seed) {
        if (best_of > 1)
            return fl_error_set(err, FL_EINVAL, "`seed` must not be set when `best_of` > 1");
        seed = p->seed;
    } else {
        seed = validate_random_seed();
    }
    if (in->inputs_len == 0) return fl_error_set(err, FL_EINVAL, "`inputs` cannot be empty");
    // The shards do not implement watermarking; refusing here keeps one such request from
    // failing the whole prefill batch it would join.
    if (p->watermark)
        return fl_error_set(err, FL_EUNSUPPORTED, "`watermark` == true is not supported");
    uint32_t truncate = lim->max_input_length;
    if (p->has_truncate) {
        if (p->truncate <= 0 || p->truncate > (int64_t)lim->max_input_length)
            return fl_error_set(
                err, FL_EINVAL,
                "`truncate` must be strictly positive and less than %u. Given: %lld",
                lim->max_input_length, (long long)p->truncate);
        truncate = (uint32_t)p->truncate;
    }

    out->temperature = (float)temperature;
    out->repetition_penalty = (float)rep;
    out->top_k = top_k;
    out->top_p = (float)top_p;
    out->typical_p = (float)typical_p;
    out->do_sample = p->do_sample;
    out->sampled = out->do_sample || out->temperature != 1.0f || out->top_k != 0 ||
                   out->top_p < 1.0f || out->typical_p < 1.0f;
    out->watermark = p->watermark;
    out->seed = seed;
    out->max_new_tokens = (uint32_t)max_new;
    out->truncate = truncate;
    out->stop = in->params.stop;
    out->n_stop = in->params.n_stop;
    in->params.stop = NULL;
    in->params.n_stop = 0;
    out->best_of = best_of;
    out->details = p->details;
    out->decoder_input_details = p->decoder_input_details;
    out->return_full_text = p->return_full_text;
    out->ignore_eos = p->ignore_eos;
    return FL_OK;
}

fl_code validate_lengths(const validate_limits *lim, int n_input, const gen_params *p,
                         fl_error *err) {
    uint64_t total = (uint64_t)n_input + p->max_new_tokens;
    if (total > lim->max_total_tokens)
        return fl_error_set(err, FL_EINVAL,
                            "`inputs` tokens + `max_new_tokens` must be <= %u. Given: %d `inputs` "
                            "tokens and %u `max_new_tokens`",
                            lim->max_total_tokens, n_input, p->max_new_tokens);
    if ((uint32_t)n_input > lim->max_input_length)
        return fl_error_set(err, FL_EINVAL, "`inputs` must have less than %u tokens. Given: %d",
                            lim->max_input_length, n_input);
    return FL_OK;
}

static void params_clear(gen_params *p) {
    for (int i = 0; i < p->n_stop; i++)
        free(p->stop[i]);
    free(p->stop);
    p->stop = NULL;
    p->n_stop = 0;
}

fl_code validate_request(const validate_limits *lim, const tokenizer *tok, gen_request_in *in,
                         gen_request **out, fl_error *err) {
    gen_params params;
    fl_code rc = validate_params(lim, in, &params, err);
    if (rc != FL_OK) return rc;
    // A prompt whose bytes already need more tokens than allowed is refused without tokenizing.
    size_t per_token = tokenizer_max_token_bytes(tok);
    if (!in->params.has_truncate && per_token &&
        in->inputs_len > (size_t)lim->max_input_length * per_token) {
        params_clear(&params);
        return fl_error_set(err, FL_EINVAL,
                            "`inputs` must have less than %u tokens. Given: at least %zu",
                            lim->max_input_length, (in->inputs_len + per_token - 1) / per_token);
    }
    int32_t *ids = NULL;
    int n = 0;
    fl_error terr;
    if (tokenizer_encode(tok, in->inputs, in->inputs_len, &ids, &n, &terr) != FL_OK) {
        params_clear(&params);
        return fl_error_set(err, FL_EINVAL, "tokenizer error %s", terr.msg);
    }
    // Left truncation keeps the end of the prompt, as TGI's TruncationDirection::Left.
    if (in->params.has_truncate && (uint32_t)n > params.truncate) {
        int drop = n - (int)params.truncate;
        memmove(ids, ids + drop, sizeof(int32_t) * params.truncate);
        n = (int)params.truncate;
    }
    rc = validate_lengths(lim, n, &params, err);
    gen_request *r = rc == FL_OK ? calloc(1, sizeof *r) : NULL;
    if (!r) {
        free(ids);
        params_clear(&params);
        return rc != FL_OK ? rc : fl_error_set(err, FL_ENOMEM, "out of memory");
    }
    r->inputs = in->inputs;
    r->inputs_len = in->inputs_len;
    in->inputs = NULL;
    in->inputs_len = 0;
    r->input_ids = ids;
    r->n_input = n;
    r->params = params;
    *out = r;
    return FL_OK;
}
