// OpenAI's chat and completions API (POST /v1/chat/completions, /v1/completions, GET /v1/models)
// in the router's terms, without I/O: a request body becomes one generation request per choice
// (the chat messages through the model's chat template), and outcomes and stream events become
// OpenAI's JSON objects and SSE chunks. Parameters keep their meaning or are refused: nothing is
// accepted that would not be honoured. The parsers take a buffer, so they can be fuzzed.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/chat_template.h"
#include "router/infer.h"
#include "router/request.h"

typedef enum openai_kind { OPENAI_CHAT, OPENAI_COMPLETION } openai_kind;

typedef struct openai_limits {
    uint32_t max_n;              // --max-best-of
    uint32_t default_max_tokens; // max_total_tokens - max_input_length: always fits
} openai_limits;

// An error as OpenAI reports it: {"error": {"message", "type", "param", "code"}}.
typedef struct openai_error {
    int status;       // 400, 404, 413, 429, 500, 503
    char message[640];
    char param[64];   // "" -> null
    const char *code; // NULL -> null
} openai_error;

typedef struct openai_request {
    openai_kind kind;
    gen_request_in in; // the prompt (template applied) and parameters of choice 0
    int n;             // choices; choice i uses seed + i when a seed is given
    bool stream, include_usage, logprobs;
    char **stop; // [n_stop] copies (stripped from the output as OpenAI does)
    int n_stop;
} openai_request;

// Parses a request body; tmpl (chat only) renders the messages. false: *err is set.
bool openai_parse(openai_kind kind, const char *body, size_t len, const openai_limits *lim,
                  const chat_template *tmpl, openai_request *out, openai_error *err);
void openai_request_clear(openai_request *r);
// Choice i's generation request (a deep copy). false: out of memory.
bool openai_request_choice(const openai_request *r, int i, gen_request_in *out);

// Sets *err from a generation failure (TGI's kinds mapped to OpenAI's status codes).
void openai_error_from_gen(gen_error_kind kind, const char *msg, openai_error *err);
void openai_error_set(openai_error *err, int status, const char *param, const char *code,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));
char *openai_error_json(const openai_error *err);

// What every object of one response shares.
typedef struct openai_meta {
    char id[48]; // "chatcmpl-..." / "cmpl-..."
    long created;
    const char *model;
} openai_meta;

void openai_meta_init(openai_meta *m, openai_kind kind, const char *model);

// The whole answer: results[i] is choice i.
char *openai_response_json(const openai_request *r, const openai_meta *m,
                           const gen_result *const *results);
char *openai_models_json(const char *model, long created);

// One choice of a stream: the text seen so far, what of it went out (text that may still turn
// out to start a stop sequence is held back), and whether it ended.
typedef struct openai_choice_stream {
    char *text;
    size_t len, cap, sent;
    bool ended;
} openai_choice_stream;

void openai_choice_stream_clear(openai_choice_stream *s);
// The chat stream's first chunk of a choice (the assistant role, empty content).
char *openai_chunk_role(const openai_request *r, const openai_meta *m, int choice);
// The chunk for a TOKEN or END event of choice (END carries finish_reason); NULL when there is
// nothing to send.
char *openai_chunk_event(const openai_request *r, const openai_meta *m, int choice,
                         openai_choice_stream *s, const gen_event *ev);
// The last chunk with stream_options.include_usage: no choices, the usage of every choice.
char *openai_chunk_usage(const openai_request *r, const openai_meta *m, int prompt_tokens,
                         int completion_tokens);
