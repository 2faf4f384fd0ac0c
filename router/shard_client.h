// The router's client of its shards: every RPC goes to every rank (unix:<uds-path>-<rank>) at
// once and waits for all (tensor parallelism needs all ranks to run each step); rank 0's
// generations are the answer. Implements shard_api for the batcher.
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "common/status.h"
#include "router/shard_api.h"

typedef struct shard_client shard_client;

// uds_path: the prefix (rank r listens on unix:<uds_path>-<r>).
fl_code shard_client_create(const char *uds_path, int n_ranks, shard_client **out, fl_error *err);
void shard_client_free(shard_client *c);

// Waits until every rank's channel connects (timeout_ms in total).
fl_code shard_client_wait_ready(shard_client *c, int timeout_ms, fl_error *err);

fl_code shard_client_info(shard_client *c, shard_info *out, fl_error *err); // rank 0's answer
fl_code shard_client_health(shard_client *c, fl_error *err);
fl_code shard_client_clear_all(shard_client *c, fl_error *err);
// Runs Warmup with batch; *capacity gets the smallest max_supported_total_tokens of the ranks.
fl_code shard_client_warmup(shard_client *c, const shard_batch *batch, uint32_t max_total_tokens,
                            uint32_t *capacity, fl_error *err);

const shard_api *shard_client_api(shard_client *c);

// ---- progress (a shard that is alive but stuck) -------------------------------------------

// Prefill and Decode get a deadline of step_timeout_ms (0: none). When one passes, the client
// counts the shards as hung until a later step or shard_client_clear_all succeeds, and calls
// on_hung(user) on the thread that saw it (once per hang). Set before serving.
void shard_client_set_step_timeout(shard_client *c, int step_timeout_ms,
                                   void (*on_hung)(void *user), void *user);
// True while hung, or while a Prefill/Decode has been running for longer than the step timeout
// (any thread, no RPC: the health check asks this first).
bool shard_client_stalled(shard_client *c);
