#include "router/shard_api.h"

#include <stdlib.h>
#include <string.h>

void cached_batch_clear(cached_batch *b) {
    free(b->request_ids);
    memset(b, 0, sizeof *b);
}

void shard_step_clear(shard_step *s) {
    for (int i = 0; i < s->n_gens; i++) {
        free(s->gens[i].prefill_ids);
        free(s->gens[i].prefill_logprobs);
    }
    free(s->gens);
    cached_batch_clear(&s->batch);
    memset(s, 0, sizeof *s);
}
