// The router's FIFO of validated requests (TGI queue.rs). Any thread appends; the batcher takes
// batches that fit the prefill and total token budgets, strictly in arrival order: the first
// entry over budget ends the batch (no skipping ahead).
#pragma once
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "router/request.h"

// One queued or running request. The batcher owns entries once they leave the queue.
typedef struct queue_entry {
    uint64_t id; // assigned by queue_append (monotonic)
    gen_request *req;
    gen_sink sink;
    double t_queued, t_batched;
    struct queue_entry *next; // queue link
} queue_entry;

queue_entry *queue_entry_create(gen_request *req, gen_sink sink);
// Frees the entry and its request, calling sink.release once.
void queue_entry_free(queue_entry *e);

typedef struct queue queue;

queue *queue_create(void);
// Fails every entry still queued with err_msg (GEN_ERR_UNHEALTHY) and frees the queue.
void queue_free(queue *q, const char *err_msg);
// Fails and removes every entry still queued (shutdown after the grace period).
void queue_fail_all(queue *q, const char *err_msg);

// Appends e (assigning e->id) and wakes a waiting batcher. Returns false after queue_close.
bool queue_append(queue *q, queue_entry *e);
int queue_len(queue *q);
// Later appends fail; queue_wait stops blocking.
void queue_close(queue *q);
// Blocks until the queue is non-empty or closed; returns false once closed and empty (a
// closed queue still hands out what it holds, so shutdown drains it).
bool queue_wait(queue *q);

// TGI next_batch: returns the number of entries moved into batch[] (0: none), in FIFO order.
// min_size > 0: return nothing unless at least min_size entries fit. Entries whose client is
// gone are skipped and freed (counted in *n_dropped when not NULL). Budgets: sum of input
// lengths <= prefill_budget and that plus sum of max_new_tokens <= token_budget;
// *max_tokens gets that sum. batch has room for max_entries.
int queue_next_batch(queue *q, int min_size, uint32_t prefill_budget, uint32_t token_budget,
                     queue_entry **batch, int max_entries, uint32_t *max_tokens, int *n_dropped);
