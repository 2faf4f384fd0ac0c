#include "router/health.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/log.h"

struct health {
    shard_client *shards;
    batcher *b;
    const tokenizer *tok;
    atomic_bool shards_up;
};

health *health_create(shard_client *shards, batcher *b, const tokenizer *tok) {
    health *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->shards = shards;
    h->b = b;
    h->tok = tok;
    atomic_init(&h->shards_up, true);
    return h;
}

void health_free(health *h) {
    free(h);
}

void health_set_shards_up(health *h, bool up) {
    atomic_store(&h->shards_up, up);
}

// TGI's liveness request: "liveness", one greedy token, ids u64::MAX.
static bool liveness_prefill(health *h) {
    int32_t *ids = NULL;
    int n = 0;
    if (tokenizer_encode(h->tok, "liveness", 8, &ids, &n, NULL) != FL_OK || n == 0) {
        free(ids);
        return false;
    }
    gen_params p = {.temperature = 1.0f,
                    .repetition_penalty = 1.0f,
                    .top_p = 1.0f,
                    .typical_p = 1.0f,
                    .max_new_tokens = 1,
                    .truncate = 10,
                    .best_of = 1};
    shard_request r = {.id = UINT64_MAX, .input_ids = ids, .n_input = n, .params = &p};
    shard_batch batch = {.id = UINT64_MAX, .requests = &r, .n = 1, .max_tokens = (uint32_t)n + 1};
    const shard_api *api = shard_client_api(h->shards);
    shard_step step = {0};
    fl_error err = {0};
    bool ok = api->prefill(api->self, &batch, &step, &err) == FL_OK;
    if (ok && step.has_batch) api->clear(api->self, UINT64_MAX, NULL);
    if (!ok) log_warn("liveness prefill failed: %s", err.msg);
    shard_step_clear(&step);
    free(ids);
    return ok;
}

bool health_check(health *h) {
    if (!atomic_load(&h->shards_up)) return false;
    // Alive is not enough: a step past its deadline means the engine makes no progress (and an
    // RPC to a stopped shard would only wait for its own deadline).
    if (shard_client_stalled(h->shards)) return false;
    if (batcher_healthy(h->b)) {
        fl_error err = {0};
        if (shard_client_health(h->shards, &err) == FL_OK) return true;
        log_warn("shard health check failed: %s", err.msg);
        return false;
    }
    bool ok = liveness_prefill(h);
    batcher_set_healthy(h->b, ok);
    return ok;
}
