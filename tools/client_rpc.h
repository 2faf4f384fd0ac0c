// The CLI's client of a running router's public gRPC API (falconlite.v1 in proto/generate.proto,
// grpc.health.v1 in proto/health.proto) in plain C: `falconlite client` and `falconlite
// bench-server` reach the router only through this file, the one tool file that sees protobuf-c
// types. Results are copied into the structs below.
#pragma once
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/status.h"

// A channel to one router; threads may share it, one call per thread at a time.
typedef struct client_rpc client_rpc;

// Connects to addr ("host:port" or "unix:/path") and waits up to timeout_ms for the channel, so
// that a wrong address fails with a clear message instead of a deadline.
client_rpc *client_rpc_connect(const char *addr, int timeout_ms, fl_error *err);
void client_rpc_free(client_rpc *c);

// Generation parameters (falconlite.v1.Parameters). A field goes out only when its has_ flag is
// set, so the router applies TGI's default to every other one. Zero-initialise, then
// CLIENT_PARAM_SET what is wanted.
typedef struct client_params {
    bool has_best_of, has_do_sample, has_max_new_tokens, has_repetition_penalty;
    bool has_return_full_text, has_seed, has_temperature, has_top_k, has_top_p, has_truncate;
    bool has_typical_p, has_watermark, has_details, has_decoder_input_details, has_ignore_eos;
    uint32_t best_of, max_new_tokens, truncate;
    bool do_sample, return_full_text, watermark, details, decoder_input_details, ignore_eos;
    float repetition_penalty, temperature, top_p, typical_p;
    int32_t top_k;
    uint64_t seed;
    const char *const *stop; // [n_stop] stop sequences (borrowed)
    int n_stop;
} client_params;

#define CLIENT_PARAM_SET(p, field, value) ((p)->has_##field = true, (p)->field = (value))

typedef enum client_finish {
    CLIENT_FINISH_UNSPECIFIED = 0,
    CLIENT_FINISH_LENGTH,
    CLIENT_FINISH_EOS_TOKEN,
    CLIENT_FINISH_STOP_SEQUENCE,
} client_finish;

// "length", "eos_token", "stop_sequence" (TGI's names, as `falconlite generate --json`), or
// "unspecified".
const char *client_finish_name(client_finish f);

typedef struct client_token {
    uint32_t id;
    const char *text; // NULL when the router sent none
    bool has_logprob;
    float logprob; // 0 when !has_logprob (the first prompt token)
    bool special;
} client_token;

// How a generation ended (Details of Generate, StreamDetails of GenerateStream).
typedef struct client_details {
    client_finish finish;
    uint32_t generated_tokens;
    bool has_seed;
    uint64_t seed;
    client_token *prefill; // [n_prefill] prompt tokens (Generate with decoder_input_details)
    int n_prefill;
    client_token *tokens; // [n_tokens] generated tokens (Generate only)
    int n_tokens;
} client_details;

// Generate's answer (best_of's other candidates are not kept). Owns its strings and arrays.
typedef struct client_generation {
    char *text; // generated_text ("" when absent)
    bool has_details;
    client_details details;
} client_generation;

void client_generation_clear(client_generation *g);

// Generate RPC: waits for the whole answer (timeout_ms <= 0: no deadline).
fl_code client_rpc_generate(client_rpc *c, const char *inputs, const client_params *p,
                            int timeout_ms, client_generation *out, fl_error *err);

// One GenerateStream event, valid during the callback only.
typedef enum client_event_kind {
    CLIENT_EVENT_TOKEN, // a message's token; index 0 is the first token
    CLIENT_EVENT_END,   // the last message's generated_text and details (after its token)
} client_event_kind;

typedef struct client_event {
    client_event_kind kind;
    double time_s; // when the message arrived, on cli_now_s()'s clock (same for TOKEN and END)
    // TOKEN
    int index; // tokens before this one in the stream
    client_token token;
    // END
    const char *text;              // the whole generated text; NULL when absent
    const client_details *details; // NULL unless details were asked (no token arrays)
} client_event;

// Return false to stop reading: the call is cancelled and client_rpc_stream returns FL_OK.
typedef bool (*client_event_fn)(void *user, const client_event *ev);

// GenerateStream RPC: calls fn for each event as the messages arrive, until the stream ends.
// The deadline covers the whole stream (timeout_ms <= 0: none). Returns FL_EBACKEND with
// "<addr> <method>: <STATUS>: <details>" when the call fails or the router ends it with an error.
fl_code client_rpc_stream(client_rpc *c, const char *inputs, const client_params *p, int timeout_ms,
                          client_event_fn fn, void *user, fl_error *err);

// Tokenize RPC: the router's encoding of a text.
typedef struct client_tokens {
    uint32_t *ids; // [n_ids]
    int n_ids;
    char **tokens; // [n_tokens] vocabulary strings (byte-level form, as in tokenizer.json)
    int n_tokens;
} client_tokens;

void client_tokens_clear(client_tokens *t);
fl_code client_rpc_tokenize(client_rpc *c, const char *text, int timeout_ms, client_tokens *out,
                            fl_error *err);

// Info RPC: the router's limits, and every field it set as JSON.
typedef struct client_info {
    uint32_t max_concurrent_requests, max_input_length, max_total_tokens, max_batch_total_tokens;
    uint32_t num_shard;
    // The set scalar fields (strings, integers, floats, bools) as one JSON object keyed by the
    // proto field names, in field order; owned.
    cJSON *fields;
} client_info;

void client_info_clear(client_info *info);
fl_code client_rpc_info(client_rpc *c, int timeout_ms, client_info *out, fl_error *err);

// Health Check RPC (service ""): the router's serving status.
typedef struct client_health {
    bool serving;
    const char *status; // "SERVING", "NOT_SERVING", ... (static); "UNKNOWN" for other values
} client_health;

fl_code client_rpc_health(client_rpc *c, int timeout_ms, client_health *out, fl_error *err);
