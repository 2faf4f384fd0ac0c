// The front door both public APIs share (TGI infer.rs): the non-blocking concurrency limit
// (Overloaded -> 429), validation, queueing, gathering a stream of events into a result, and
// best_of (n sampled candidates, the one with the highest mean token logprob wins).
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "common/tokenizer.h"
#include "router/queue.h"
#include "router/validate.h"

typedef struct infer_config {
    validate_limits limits;
    uint32_t max_concurrent_requests; // 128
} infer_config;

typedef struct infer infer;

infer *infer_create(const infer_config *cfg, queue *q, const tokenizer *tok);
void infer_free(infer *inf);

// A gathered generation.
typedef struct gen_result {
    char *generated_text;
    finish_reason finish;
    uint32_t generated_tokens;
    int n_input; // prompt tokens
    bool has_seed;
    uint64_t seed;
    gen_token *prefill; // [n_prefill]
    int n_prefill;
    gen_token *tokens; // [n_tokens]
    int n_tokens;
    double t_queued, t_batched, t_end;
} gen_result;

// The outcome of infer_generate: results[0] is the answer, results[1..n) the other best_of
// candidates; or an error (results NULL).
typedef struct gen_outcome {
    gen_result *results;
    int n_results;
    bool failed;
    gen_error_kind error_kind;
    char error[640]; // the full client message ("Input validation error: ...")
    double t_start;  // when the request arrived
} gen_outcome;

void gen_outcome_clear(gen_outcome *o);

// Called exactly once, on any thread, with the outcome (owned by the callee: clear it).
typedef struct infer_waiter {
    void (*done)(void *user, gen_outcome *o);
    bool (*alive)(void *user); // may be NULL
    void *user;
} infer_waiter;

// POST /generate and gRPC Generate: validates (best_of first), takes one permit per candidate,
// queues and gathers. Immediate failures (validation, overload) also arrive through w.done,
// before this returns.
void infer_generate(infer *inf, gen_request_in *in, infer_waiter w);

// Streaming: best_of and decoder_input_details must be off (checked here with TGI's messages).
// On success the sink receives TOKEN events and one END or ERROR, and true is returned; on an
// immediate failure returns false with *kind and msg set and the sink is not used.
bool infer_stream(infer *inf, gen_request_in *in, gen_sink sink, gen_error_kind *kind, char *msg,
                  size_t msg_cap);

// Tokenize for the public Tokenize RPC.
fl_code infer_tokenize(infer *inf, const char *text, size_t len, int32_t **ids, int *n,
                       fl_error *err);
const tokenizer *infer_tokenizer(const infer *inf);
