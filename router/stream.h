// One running request's output as its client sees it (the per-request half of TGI's
// filter_send_generations and StoppingCriteria): the generated ids, decoded incrementally for
// streaming, stop sequences matched on the decoded text, and the final text of the END event.
// The batcher feeds it the shards' generations and delivers the events it makes.
#pragma once
#include "common/tokenizer.h"
#include "router/request.h"
#include "router/shard_api.h"

typedef struct stream stream;

// req and tok are borrowed and must outlive the stream. NULL: out of memory.
stream *stream_create(const gen_request *req, const tokenizer *tok);
void stream_free(stream *s);

// The PREFILL event of g (decoder_input_details): the prompt tokens with their logprobs, each
// text its id decoded alone (TGI batch_decode). NULL when g has no prompt tokens or on OOM.
gen_event *stream_prefill_event(const stream *s, const shard_generation *g);

// Takes g's generated token. Returns a TOKEN event, or the END event (the request is over) when
// the shard finished it or the text now ends with a stop sequence. END carries the final text,
// the finish reason, the token count and the seed; its t_* times are left to the caller.
// NULL: out of memory (the token is still counted).
gen_event *stream_push(stream *s, const shard_generation *g);
