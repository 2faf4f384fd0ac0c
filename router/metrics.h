// Prometheus metrics with TGI 0.9.2's names, buckets and labels (tgi_request_*, tgi_batch_*, ...).
// One process-wide registry: every router module records into it, GET /metrics renders it.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef enum metric_failure {
    METRIC_ERR_OVERLOADED = 0,
    METRIC_ERR_VALIDATION,
    METRIC_ERR_INCOMPLETE,
    METRIC_ERR_DROPPED,
    METRIC_ERR_GENERATION,
    METRIC_ERR_COUNT,
} metric_failure;

typedef enum metric_method { METRIC_PREFILL = 0, METRIC_DECODE, METRIC_METHOD_COUNT } metric_method;

typedef enum metric_hist {
    METRIC_REQUEST_DURATION = 0,
    METRIC_REQUEST_VALIDATION_DURATION,
    METRIC_REQUEST_QUEUE_DURATION,
    METRIC_REQUEST_INFERENCE_DURATION,
    METRIC_REQUEST_MEAN_TIME_PER_TOKEN_DURATION,
    METRIC_REQUEST_GENERATED_TOKENS,
    METRIC_REQUEST_INPUT_LENGTH,
    METRIC_REQUEST_MAX_NEW_TOKENS,
    METRIC_BATCH_NEXT_SIZE,
    METRIC_HIST_COUNT,
} metric_hist;

// Sets the bucket bounds that depend on the limits (input length, total tokens). Call once
// before serving; recording before it uses max_input_length = 1024, max_total_tokens = 2048.
void metrics_init(uint32_t max_input_length, uint32_t max_total_tokens);

void metrics_request_count(void);
void metrics_request_success(void);
void metrics_request_failure(metric_failure err);
void metrics_batch_concat(int wait_exceeded); // reason backpressure (0) or wait_exceeded (1)
void metrics_batch_inference(metric_method m, int ok, double seconds);
void metrics_observe(metric_hist h, double value);
void metrics_set_queue_size(int n);
void metrics_set_batch(int size, uint32_t max_tokens);
// One Prefill's prefix-cache counts (falconlite): prompt tokens looked up and reused.
void metrics_prefix_cache(uint64_t lookup_tokens, uint64_t hit_tokens);

// falconlite_kv_blocks_used / _total: the shard's KV pool in blocks (blocks held by the prefix
// cache that no request uses count as free).
void metrics_set_kv_blocks(uint32_t used, uint32_t total);

// Renders the Prometheus text exposition format; malloc'd, caller frees.
char *metrics_render(size_t *len);
