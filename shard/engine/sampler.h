// Next-token choice with TGI 0.9.2's NextTokenChooser semantics, one sampler per request:
// repetition penalty -> temperature -> top-k -> top-p -> typical-p -> seeded multinomial draw,
// or greedy argmax. Each sampler owns its random generator (seeded from the request's seed), so
// a request's tokens do not depend on what it is batched with.
#pragma once
#include <stdint.h>

#include "common/status.h"

typedef struct sampling_params {
    float temperature;        // 1.0: off
    int top_k;                // 0: off
    float top_p;              // 1.0: off
    float typical_p;          // 1.0: off
    float repetition_penalty; // 1.0: off
    int do_sample;            // 0: greedy, unless a warper above is on (TGI then samples)
    uint64_t seed;
} sampling_params;

// Greedy with every warper off (TGI's defaults).
void sampling_params_default(sampling_params *p);
// 1 when the sampler draws at random: do_sample, or any warper that TGI lets force sampling.
int sampling_params_is_sampling(const sampling_params *p);

typedef struct sampler sampler;

// Validates p as TGI's router does (temperature and repetition penalty > 0, top_k >= 0, top_p and
// typical_p in (0, 1]) and sizes the scratch buffers for n_vocab logits.
fl_code sampler_create(const sampling_params *p, int n_vocab, sampler **out, fl_error *err);
void sampler_free(sampler *s);

// Chooses the next token from logits [n_vocab] (left unchanged). history [n_history] holds the
// sequence so far, prompt included, for the repetition penalty. *logprob is TGI's reported
// value: log_softmax of the scores after penalty and every warper, at the chosen token.
// Fails (FL_EINVAL) when the logits contain NaN or no finite value.
fl_code sampler_next(sampler *s, const float *logits, const int32_t *history, int n_history,
                     int32_t *token, float *logprob, fl_error *err);
