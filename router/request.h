// A generation request as the router handles it: the parameters a client sent (with presence
// flags, since absent fields take TGI's defaults), the validated request sent to the shards, and
// the events that flow back to the API front-end that owns the client connection.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Parameters as received (HTTP JSON or gRPC); has_* is false for absent / null fields.
typedef struct gen_params_in {
    bool has_best_of;
    int64_t best_of;
    bool do_sample;
    bool has_max_new_tokens;
    int64_t max_new_tokens;
    bool has_repetition_penalty;
    double repetition_penalty;
    bool return_full_text;
    bool has_seed;
    uint64_t seed;
    char **stop; // [n_stop] NUL-terminated strings, owned
    int n_stop;
    bool has_temperature;
    double temperature;
    bool has_top_k;
    int64_t top_k;
    bool has_top_p;
    double top_p;
    bool has_truncate;
    int64_t truncate;
    bool has_typical_p;
    double typical_p;
    bool watermark;
    bool details;
    bool decoder_input_details;
    bool ignore_eos; // falconlite extension (not in TGI's schema): do not stop at EOS
} gen_params_in;

typedef struct gen_request_in {
    char *inputs; // UTF-8 prompt, owned
    size_t inputs_len;
    gen_params_in params;
} gen_request_in;

void gen_request_in_init(gen_request_in *r);
void gen_request_in_clear(gen_request_in *r);

// Validated parameters with TGI's defaults filled in.
typedef struct gen_params {
    float temperature;        // 1.0: off
    float repetition_penalty; // 1.0: off
    uint32_t top_k;           // 0: off
    float top_p;              // 1.0: off
    float typical_p;          // 1.0: off
    bool do_sample;
    // do_sample or any warper on: the shards sample with seed (the END event reports it). The
    // shards' sampler applies the same rule.
    bool sampled;
    bool watermark;
    uint64_t seed;
    uint32_t max_new_tokens;
    uint32_t truncate; // max_input_length unless given
    char **stop;       // [n_stop], owned
    int n_stop;
    uint32_t best_of; // 1 unless given
    bool details;
    bool decoder_input_details;
    bool return_full_text;
    bool ignore_eos; // generate max_new_tokens tokens even past EOS (benchmarks)
} gen_params;

// A request ready for the queue: prompt token ids after left truncation.
typedef struct gen_request {
    char *inputs; // the original prompt (return_full_text prepends it), owned
    size_t inputs_len;
    int32_t *input_ids; // [n_input], owned
    int n_input;
    gen_params params;
} gen_request;

gen_request *gen_request_clone(const gen_request *r); // deep copy (best_of candidates)
void gen_request_free(gen_request *r);

typedef enum finish_reason {
    FINISH_LENGTH = 0,
    FINISH_EOS_TOKEN,
    FINISH_STOP_SEQUENCE,
} finish_reason;
const char *finish_reason_name(finish_reason r); // "length", "eos_token", "stop_sequence"

// TGI's error classes; each maps to an HTTP status and an `error_type` string.
typedef enum gen_error_kind {
    GEN_ERR_VALIDATION = 0, // 422 "validation"
    GEN_ERR_OVERLOADED,     // 429 "overloaded"
    GEN_ERR_GENERATION,     // 424 "generation"
    GEN_ERR_INCOMPLETE,     // 500 "incomplete_generation"
    GEN_ERR_UNHEALTHY,      // 503 "healthcheck" (also used while shutting down)
} gen_error_kind;
const char *gen_error_type(gen_error_kind k);
int gen_error_http_status(gen_error_kind k);
// The message a client may see for an error of kind k: msg itself, or a generic text when msg
// shows the server's insides (socket or file paths; the log keeps msg). Borrowed or static.
const char *gen_error_public(gen_error_kind k, const char *msg);

typedef struct gen_token {
    uint32_t id;
    char *text;    // owned
    float logprob; // NaN when unknown (first prompt token)
    bool special;
} gen_token;

typedef enum gen_event_kind {
    GEN_EVENT_PREFILL = 0, // prompt tokens with logprobs (decoder_input_details only)
    GEN_EVENT_TOKEN,       // one generated token
    GEN_EVENT_END,         // the last generated token and the result
    GEN_EVENT_ERROR,       // terminal failure
} gen_event_kind;

// One message from the batcher to a request's front-end. Every request receives exactly one
// terminal event (END or ERROR).
typedef struct gen_event {
    gen_event_kind kind;
    gen_token token;    // TOKEN, END
    gen_token *prefill; // [n_prefill] PREFILL
    int n_prefill;
    char *generated_text; // END: decoded with special tokens skipped
    finish_reason finish;
    uint32_t generated_tokens;
    int n_input;   // END: prompt tokens (after truncation)
    bool has_seed; // END: the request sampled
    uint64_t seed;
    double t_queued, t_batched, t_end; // END: monotonic seconds (metrics, x-*-time headers)
    gen_error_kind error_kind;         // ERROR
    char *error;                       // ERROR: the message shown to the client, owned
} gen_event;

gen_event *gen_event_error(gen_error_kind kind, const char *msg);
void gen_event_free(gen_event *ev);

// Where a request's events go. send runs on the batcher thread, takes ownership of ev and
// returns false once the client is gone (the batcher then drops the request and frees its KV
// blocks at the next step). alive (may be NULL) tells the same without sending (checked while the
// request waits in the queue). release is called once, after the terminal event or the drop.
typedef struct gen_sink {
    bool (*send)(void *user, gen_event *ev);
    bool (*alive)(void *user);
    void (*release)(void *user);
    void *user;
} gen_sink;

// Monotonic clock in seconds.
double time_now(void);
