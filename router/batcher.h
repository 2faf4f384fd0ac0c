// TGI 0.9.2's continuous-batching loop (infer.rs batching_task), on its own thread: take a batch
// from the queue within the token budgets and prefill it; then, before every decode step, try to
// onboard newcomers (waiting_served_ratio / max_waiting_tokens), prefill them while the running
// batch waits, and decode both together. Each running request's generations go through its
// stream (router/stream.h: detokenization, stop sequences, the final text), and finished or
// disconnected requests are filtered out of the shards' batch at the next step. Each Decode is
// sent before the previous step's tokens are delivered, so delivery overlaps the shards' work; a
// request that stops in the router is then computed one step more and that token discarded
// (clients see exactly TGI's output), and it leaves the token budget one step later than in TGI.
// Chunked prefill (prefill_chunk_tokens > 0): each prefill batch tells the shards to take at
// most that many prompt tokens per forward step, so a long prompt is ingested over its Prefill
// and the following Decodes, each also advancing the running requests by one token. A request
// with no generation yet is still prefilling: it sends no event (its first token, and its
// PREFILL event, come from the step that took its last chunk), and a client that leaves in the
// meantime is filtered out of the shards' batch (its KV blocks freed) at the next step.
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "common/status.h"
#include "common/tokenizer.h"
#include "router/queue.h"
#include "router/shard_api.h"

typedef struct batcher_config {
    uint32_t max_batch_prefill_tokens; // 4096
    uint32_t max_batch_total_tokens;   // 16000
    float waiting_served_ratio;        // 1.2
    uint32_t max_waiting_tokens;       // 20
    uint32_t prefill_chunk_tokens;     // 0: prompts prefilled whole; else see below
    int max_batch_requests;            // upper bound on requests per prefill (queue capacity)
} batcher_config;

typedef struct batcher batcher;

// q, shards and tok are borrowed and must outlive the batcher.
fl_code batcher_create(const batcher_config *cfg, queue *q, const shard_api *shards,
                       const tokenizer *tok, batcher **out, fl_error *err);
// Frees a stopped (or never started) batcher.
void batcher_free(batcher *b);

fl_code batcher_start(batcher *b, fl_error *err);
// Closes the queue, lets queued and running requests finish for up to grace_ms, then fails the
// rest ("shutting down") and joins the thread.
void batcher_stop(batcher *b, int grace_ms);

// Runs the loop on the calling thread until the queue is empty and nothing is running (tests).
void batcher_run_until_idle(batcher *b);

// TGI generation_health: false after a failed Prefill or Decode, true after a successful one.
bool batcher_healthy(const batcher *b);
// Records the outcome of a liveness check made outside the loop (health.c).
void batcher_set_healthy(batcher *b, bool healthy);
