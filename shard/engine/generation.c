#include "shard/engine/generation.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// The rotary base a prefill of n_prompt tokens rotates its prompt with (as model_forward computes
// it: from the sequence's length after the step), which keys the prompt's cached blocks.
static float prompt_rope_base(const model *m, int n_prompt) {
    return (float)rope_base_for_length(&model_get_config(m)->rope, n_prompt);
}

fl_code seq_request_create(const model *m, kv_cache *kv, uint64_t id, const int32_t *prompt,
                           int n_prompt, const seq_params *p, seq_request **out, fl_error *err) {
    int n_vocab = model_get_config(m)->n_vocab;
    if (n_prompt < 1)
        return fl_error_set(err, FL_EINVAL, "request %llu: empty prompt", (unsigned long long)id);
    if (p->max_new_tokens < 1)
        return fl_error_set(err, FL_EINVAL, "request %llu: max_new_tokens must be >= 1 (%d)",
                            (unsigned long long)id, p->max_new_tokens);
    if (p->n_stop_ids < 0 || (p->n_stop_ids > 0 && !p->stop_ids))
        return fl_error_set(err, FL_EINVAL, "request %llu: bad stop token list",
                            (unsigned long long)id);
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= n_vocab)
            return fl_error_set(
                err, FL_EINVAL,
                "request %llu: prompt token %d is %d, outside the vocabulary [0, %d)",
                (unsigned long long)id, i, prompt[i], n_vocab);
    seq_request *r = calloc(1, sizeof *r);
    if (!r)
        return fl_error_set(err, FL_ENOMEM, "request %llu: out of memory", (unsigned long long)id);
    r->id = id;
    r->params = *p;
    r->n_prompt = n_prompt;
    size_t n_tok = (size_t)n_prompt + p->max_new_tokens;
    r->tokens = malloc(sizeof *r->tokens * n_tok);
    r->logprobs = malloc(sizeof *r->logprobs * p->max_new_tokens);
    int32_t *stops = p->n_stop_ids ? malloc(sizeof *stops * p->n_stop_ids) : NULL;
    r->params.stop_ids = stops;
    if (p->prompt_logprobs) r->prompt_logprobs = malloc(sizeof *r->prompt_logprobs * n_prompt);
    if (!r->tokens || !r->logprobs || (p->n_stop_ids && !stops) ||
        (p->prompt_logprobs && !r->prompt_logprobs)) {
        seq_request_free(NULL, r);
        return fl_error_set(err, FL_ENOMEM, "request %llu: out of memory for %zu tokens",
                            (unsigned long long)id, n_tok);
    }
    memcpy(r->tokens, prompt, sizeof *prompt * n_prompt);
    if (stops) memcpy(stops, p->stop_ids, sizeof *stops * p->n_stop_ids);
    fl_code rc = sampler_create(&p->sampling, n_vocab, &r->sampler, err);
    if (!rc && kv->prefix_on && !p->prompt_logprobs) {
        r->n_prefix_lookup = n_prompt;
        r->n_prefix_hit = kv_seq_prefix_acquire(kv, &r->kv, r->tokens, n_prompt - 1,
                                                prompt_rope_base(m, n_prompt));
    }
    if (!rc) rc = kv_seq_reserve(kv, &r->kv, n_prompt + p->max_new_tokens - 1, err);
    if (rc) {
        seq_request_free(kv, r); // gives back the cached prefix it took
        fl_error_wrap(err, "request %llu", (unsigned long long)id);
        return rc;
    }
    *out = r;
    return FL_OK;
}

void seq_request_free(kv_cache *kv, seq_request *r) {
    if (!r) return;
    if (kv) kv_seq_release(kv, &r->kv);
    sampler_free(r->sampler);
    free(r->tokens);
    free(r->logprobs);
    free((void *)r->params.stop_ids);
    free(r->prompt_logprobs);
    free(r);
}

// log_softmax(row)[id] over n_vocab logits.
static float row_logprob(const float *row, int n_vocab, int32_t id) {
    float mx = -INFINITY;
    for (int i = 0; i < n_vocab; i++)
        if (row[i] > mx) mx = row[i];
    double sum = 0.0;
    for (int i = 0; i < n_vocab; i++)
        sum += expf(row[i] - mx); // float exp: this runs over every prompt token
    return (float)((double)row[id] - mx - log(sum));
}

// TGI's StoppingCriteria order: length first, then EOS, then stop tokens.
static gen_finish seq_request_check_stop(const seq_request *r, int32_t tok) {
    const seq_params *p = &r->params;
    if (r->n_generated >= p->max_new_tokens) return GEN_FINISH_LENGTH;
    if (!p->ignore_eos && p->eos_id >= 0 && tok == p->eos_id) return GEN_FINISH_EOS;
    for (int i = 0; i < p->n_stop_ids; i++)
        if (tok == p->stop_ids[i]) return GEN_FINISH_STOP;
    return GEN_RUNNING;
}

fl_code gen_batch_step(model *m, kv_cache *kv, seq_request **reqs, int n, fl_error *err) {
    return gen_batch_step_chunked(m, kv, reqs, n, 0, err);
}

// The forward sequence of request r in a step; *budget is what is left of the step's prompt
// tokens (< 0: no limit) and shrinks by the chunk taken. n_new 0: r sits this step out.
static fwd_seq step_seq(seq_request *r, int *budget) {
    if (!seq_request_prefilling(r))
        return (fwd_seq){
            .tokens = r->tokens + r->n_prompt + r->n_generated - 1, .n_new = 1, .kv = &r->kv};
    int done = r->kv.n_tokens, chunk = r->n_prompt - done; // prompt tokens cached / left
    if (*budget >= 0) {
        if (chunk > *budget) chunk = *budget;
        *budget -= chunk;
    }
    return (fwd_seq){.tokens = r->tokens + done,
                     .n_new = chunk,
                     .kv = &r->kv,
                     .all_logits = r->params.prompt_logprobs,
                     .rope_len = r->n_prompt}; // every chunk rotates with base(L_prompt)
}

// Prompt logprobs of one chunk (q's tokens starting at prompt position `from`): logits row j
// predicts prompt token from + j + 1. Returns the rows used: all but the last row of the final
// chunk, which predicts the first generated token.
static size_t chunk_prompt_logprobs(seq_request *r, const fwd_seq *q, int from, const float *logits,
                                    int n_vocab) {
    if (from == 0) r->prompt_logprobs[0] = NAN;
    int j = 0;
    for (; j < q->n_new && from + j + 1 < r->n_prompt; j++)
        r->prompt_logprobs[from + j + 1] =
            row_logprob(logits + (size_t)j * n_vocab, n_vocab, r->tokens[from + j + 1]);
    return (size_t)j;
}

fl_code gen_batch_step_chunked(model *m, kv_cache *kv, seq_request **reqs, int n,
                               int prefill_budget, fl_error *err) {
    if (n < 1) return FL_OK;
    int n_vocab = model_get_config(m)->n_vocab;
    fwd_seq *seqs = malloc(sizeof *seqs * n);
    seq_request **in = malloc(sizeof *in * n); // in[k]: the request of seqs[k]
    if (!seqs || !in) {
        free(seqs);
        free(in);
        return fl_error_set(err, FL_ENOMEM, "generation: out of memory");
    }
    size_t n_rows = 0;
    int n_seq = 0, budget = prefill_budget > 0 ? prefill_budget : -1;
    for (int i = 0; i < n; i++) {
        seq_request *r = reqs[i];
        if (r->finish != GEN_RUNNING) {
            free(seqs);
            free(in);
            return fl_error_set(err, FL_EINVAL, "request %llu has already finished",
                                (unsigned long long)r->id);
        }
        fwd_seq q = step_seq(r, &budget);
        if (q.n_new == 0) continue;
        in[n_seq] = r;
        seqs[n_seq++] = q;
        n_rows += q.all_logits ? (size_t)q.n_new : 1;
    }
    // [n_rows, n_vocab]
    float *logits = malloc(sizeof *logits * (n_rows ? n_rows : 1) * n_vocab);
    if (!logits) {
        free(seqs);
        free(in);
        return fl_error_set(err, FL_ENOMEM, "generation: out of memory for %zu logit rows", n_rows);
    }
    fl_code rc = model_forward(m, kv, seqs, n_seq, logits, err);
    // Prompt blocks written so far (all of the prompt, or the chunks in) join the prefix cache.
    for (int k = 0; k < n_seq && !rc; k++)
        if (seq_request_prefilling(in[k]))
            kv_seq_prefix_publish(kv, &in[k]->kv, in[k]->tokens, in[k]->kv.n_tokens,
                                  prompt_rope_base(m, in[k]->n_prompt));
    size_t row = 0;
    for (int k = 0; k < n_seq && !rc; k++) {
        seq_request *r = in[k];
        int from = r->kv.n_tokens - seqs[k].n_new; // prompt position of the chunk (prefilling)
        if (seqs[k].all_logits)
            row += chunk_prompt_logprobs(r, &seqs[k], from, logits + row * n_vocab, n_vocab);
        if (seq_request_prefilling(r) && r->kv.n_tokens < r->n_prompt) { // partial: no token
            if (!seqs[k].all_logits) row++;
            continue;
        }
        int32_t tok;
        float lp;
        rc = sampler_next(r->sampler, logits + row * n_vocab, r->tokens,
                          r->n_prompt + r->n_generated, &tok, &lp, err);
        if (rc) {
            fl_error_wrap(err, "request %llu", (unsigned long long)r->id);
            break;
        }
        row++;
        r->tokens[r->n_prompt + r->n_generated] = tok;
        r->logprobs[r->n_generated++] = lp;
        r->finish = seq_request_check_stop(r, tok);
    }
    free(logits);
    free(seqs);
    free(in);
    return rc;
}
