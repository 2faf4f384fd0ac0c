#include "router/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { DURATION_BUCKETS = 35, LINEAR_BUCKETS = 100, SIZE_BUCKETS = 1024 };

typedef struct histogram {
    const char *name;
    const char *labels; // "" or `method="prefill"`
    int n_bounds;
    double bounds[SIZE_BUCKETS];
    uint64_t counts[SIZE_BUCKETS]; // non-cumulative, per bucket; +Inf = count
    uint64_t count;
    double sum;
} histogram;

static struct {
    pthread_mutex_t mu;
    int ready;
    uint64_t request_count, request_success;
    uint64_t failure[METRIC_ERR_COUNT];
    uint64_t concat[2];
    uint64_t inference_count[METRIC_METHOD_COUNT], inference_success[METRIC_METHOD_COUNT],
        inference_failure[METRIC_METHOD_COUNT];
    histogram hist[METRIC_HIST_COUNT];
    histogram inference_duration[METRIC_METHOD_COUNT];
    int queue_size, batch_size;
    uint32_t kv_blocks_used, kv_blocks_total; // rank 0's KV pool, as last polled
    uint32_t batch_max_tokens;
    uint64_t prefix_lookup_tokens, prefix_hit_tokens;
} reg = {.mu = PTHREAD_MUTEX_INITIALIZER};

static const char *failure_names[METRIC_ERR_COUNT] = {"overloaded", "validation", "incomplete",
                                                      "dropped", "generation"};
static const char *method_names[METRIC_METHOD_COUNT] = {"prefill", "decode"};

static void hist_duration(histogram *h, const char *name, const char *labels) {
    h->name = name;
    h->labels = labels;
    h->n_bounds = DURATION_BUCKETS;
    for (int k = 1; k <= DURATION_BUCKETS; k++)
        h->bounds[k - 1] = 0.0001 * pow(1.5, k);
}

static void hist_linear(histogram *h, const char *name, double max, int n) {
    h->name = name;
    h->labels = "";
    h->n_bounds = n;
    for (int i = 0; i < n; i++)
        h->bounds[i] = max / n * (i + 1);
}

static void init_locked(uint32_t max_input_length, uint32_t max_total_tokens) {
    histogram *h = reg.hist;
    hist_duration(&h[METRIC_REQUEST_DURATION], "tgi_request_duration", "");
    hist_duration(&h[METRIC_REQUEST_VALIDATION_DURATION], "tgi_request_validation_duration", "");
    hist_duration(&h[METRIC_REQUEST_QUEUE_DURATION], "tgi_request_queue_duration", "");
    hist_duration(&h[METRIC_REQUEST_INFERENCE_DURATION], "tgi_request_inference_duration", "");
    hist_duration(&h[METRIC_REQUEST_MEAN_TIME_PER_TOKEN_DURATION],
                  "tgi_request_mean_time_per_token_duration", "");
    hist_linear(&h[METRIC_REQUEST_GENERATED_TOKENS], "tgi_request_generated_tokens",
                max_total_tokens, LINEAR_BUCKETS);
    hist_linear(&h[METRIC_REQUEST_INPUT_LENGTH], "tgi_request_input_length", max_input_length,
                LINEAR_BUCKETS);
    hist_linear(&h[METRIC_REQUEST_MAX_NEW_TOKENS], "tgi_request_max_new_tokens", max_total_tokens,
                LINEAR_BUCKETS);
    hist_linear(&h[METRIC_BATCH_NEXT_SIZE], "tgi_batch_next_size", SIZE_BUCKETS, SIZE_BUCKETS);
    hist_duration(&reg.inference_duration[METRIC_PREFILL], "tgi_batch_inference_duration",
                  "method=\"prefill\"");
    hist_duration(&reg.inference_duration[METRIC_DECODE], "tgi_batch_inference_duration",
                  "method=\"decode\"");
    reg.ready = 1;
}

void metrics_init(uint32_t max_input_length, uint32_t max_total_tokens) {
    pthread_mutex_lock(&reg.mu);
    init_locked(max_input_length, max_total_tokens);
    pthread_mutex_unlock(&reg.mu);
}

static void lock(void) {
    pthread_mutex_lock(&reg.mu);
    if (!reg.ready) init_locked(1024, 2048);
}

static void unlock(void) {
    pthread_mutex_unlock(&reg.mu);
}

static void hist_add(histogram *h, double v) {
    int i = 0;
    while (i < h->n_bounds && v > h->bounds[i])
        i++;
    if (i < h->n_bounds) h->counts[i]++;
    h->count++;
    h->sum += v;
}

void metrics_request_count(void) {
    lock(), reg.request_count++, unlock();
}
void metrics_request_success(void) {
    lock(), reg.request_success++, unlock();
}
void metrics_request_failure(metric_failure err) {
    lock(), reg.failure[err]++, unlock();
}
void metrics_batch_concat(int wait_exceeded) {
    lock(), reg.concat[wait_exceeded != 0]++, unlock();
}

void metrics_batch_inference(metric_method m, int ok, double seconds) {
    lock();
    reg.inference_count[m]++;
    if (ok) {
        reg.inference_success[m]++;
        hist_add(&reg.inference_duration[m], seconds);
    } else {
        reg.inference_failure[m]++;
    }
    unlock();
}

void metrics_observe(metric_hist h, double value) {
    lock(), hist_add(&reg.hist[h], value), unlock();
}
void metrics_set_queue_size(int n) {
    lock(), reg.queue_size = n, unlock();
}

void metrics_set_kv_blocks(uint32_t used, uint32_t total) {
    lock();
    reg.kv_blocks_used = used;
    reg.kv_blocks_total = total;
    unlock();
}

void metrics_set_batch(int size, uint32_t max_tokens) {
    lock();
    reg.batch_size = size;
    reg.batch_max_tokens = max_tokens;
    unlock();
}

void metrics_prefix_cache(uint64_t lookup_tokens, uint64_t hit_tokens) {
    lock();
    reg.prefix_lookup_tokens += lookup_tokens;
    reg.prefix_hit_tokens += hit_tokens;
    unlock();
}

typedef struct textbuf {
    char *p;
    size_t len, cap;
} textbuf;

static void tb_printf(textbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tb_printf(textbuf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (b->p && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 65536;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return;
        b->p = p;
        b->cap = cap;
    }
}

static void render_hist(textbuf *b, const histogram *h, int with_type) {
    const char *sep = h->labels[0] ? "," : "";
    if (with_type) tb_printf(b, "# TYPE %s histogram\n", h->name);
    uint64_t cum = 0;
    for (int i = 0; i < h->n_bounds; i++) {
        cum += h->counts[i];
        tb_printf(b, "%s_bucket{%s%sle=\"%.17g\"} %llu\n", h->name, h->labels, sep, h->bounds[i],
                  (unsigned long long)cum);
    }
    tb_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", h->name, h->labels, sep,
              (unsigned long long)h->count);
    const char *open = h->labels[0] ? "{" : "", *close = h->labels[0] ? "}" : "";
    tb_printf(b, "%s_sum%s%s%s %.17g\n", h->name, open, h->labels, close, h->sum);
    tb_printf(b, "%s_count%s%s%s %llu\n", h->name, open, h->labels, close,
              (unsigned long long)h->count);
}

char *metrics_render(size_t *len) {
    textbuf b = {0};
    lock();
    tb_printf(&b, "# TYPE tgi_request_count counter\ntgi_request_count %llu\n",
              (unsigned long long)reg.request_count);
    tb_printf(&b, "# TYPE tgi_request_success counter\ntgi_request_success %llu\n",
              (unsigned long long)reg.request_success);
    tb_printf(&b, "# TYPE tgi_request_failure counter\n");
    for (int i = 0; i < METRIC_ERR_COUNT; i++)
        tb_printf(&b, "tgi_request_failure{err=\"%s\"} %llu\n", failure_names[i],
                  (unsigned long long)reg.failure[i]);
    tb_printf(&b,
              "# TYPE tgi_batch_concat counter\n"
              "tgi_batch_concat{reason=\"backpressure\"} %llu\n"
              "tgi_batch_concat{reason=\"wait_exceeded\"} %llu\n",
              (unsigned long long)reg.concat[0], (unsigned long long)reg.concat[1]);
    const char *inf[3] = {"tgi_batch_inference_count", "tgi_batch_inference_success",
                          "tgi_batch_inference_failure"};
    const uint64_t *vals[3] = {reg.inference_count, reg.inference_success, reg.inference_failure};
    for (int k = 0; k < 3; k++) {
        tb_printf(&b, "# TYPE %s counter\n", inf[k]);
        for (int m = 0; m < METRIC_METHOD_COUNT; m++)
            tb_printf(&b, "%s{method=\"%s\"} %llu\n", inf[k], method_names[m],
                      (unsigned long long)vals[k][m]);
    }
    for (int h = 0; h < METRIC_HIST_COUNT; h++)
        render_hist(&b, &reg.hist[h], 1);
    for (int m = 0; m < METRIC_METHOD_COUNT; m++)
        render_hist(&b, &reg.inference_duration[m], m == 0);
    tb_printf(&b, "# TYPE tgi_queue_size gauge\ntgi_queue_size %d\n", reg.queue_size);
    tb_printf(&b, "# TYPE tgi_batch_current_size gauge\ntgi_batch_current_size %d\n",
              reg.batch_size);
    tb_printf(&b, "# TYPE tgi_batch_current_max_tokens gauge\ntgi_batch_current_max_tokens %u\n",
              reg.batch_max_tokens);
    tb_printf(&b,
              "# TYPE tgi_prefix_cache_lookup_tokens counter\ntgi_prefix_cache_lookup_tokens %llu\n"
              "# TYPE tgi_prefix_cache_hit_tokens counter\ntgi_prefix_cache_hit_tokens %llu\n",
              (unsigned long long)reg.prefix_lookup_tokens,
              (unsigned long long)reg.prefix_hit_tokens);
    tb_printf(&b,
              "# TYPE falconlite_kv_blocks_used gauge\nfalconlite_kv_blocks_used %u\n"
              "# TYPE falconlite_kv_blocks_total gauge\nfalconlite_kv_blocks_total %u\n",
              reg.kv_blocks_used, reg.kv_blocks_total);
    unlock();
    if (len) *len = b.len;
    return b.p;
}
