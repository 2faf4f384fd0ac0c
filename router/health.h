// Router health (TGI health.rs): while the last Prefill/Decode succeeded, a shard Health RPC on
// every rank decides; after a failure, a one-token liveness Prefill that skips the queue does
// (and clears the failure when it works). The launcher marks the shards down while it restarts
// one, and a Prefill/Decode past --shard-step-timeout (shard_client_stalled) makes the check fail
// at once: live processes that make no progress are unhealthy. Checks block (RPCs): run them off
// the event loop.
#pragma once
#include <stdbool.h>

#include "common/tokenizer.h"
#include "router/batcher.h"
#include "router/shard_client.h"

typedef struct health health;

health *health_create(shard_client *shards, batcher *b, const tokenizer *tok);
void health_free(health *h);

void health_set_shards_up(health *h, bool up);
bool health_check(health *h);
