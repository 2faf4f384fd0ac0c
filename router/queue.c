#include "router/queue.h"

#include <stdlib.h>

struct queue {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    queue_entry *head, *tail;
    int len;
    uint64_t next_id;
    bool closed;
};

queue_entry *queue_entry_create(gen_request *req, gen_sink sink) {
    queue_entry *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->req = req;
    e->sink = sink;
    e->t_queued = time_now();
    return e;
}

void queue_entry_free(queue_entry *e) {
    if (!e) return;
    if (e->sink.release) e->sink.release(e->sink.user);
    gen_request_free(e->req);
    free(e);
}

static bool entry_alive(queue_entry *e) {
    return !e->sink.alive || e->sink.alive(e->sink.user);
}

queue *queue_create(void) {
    queue *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    return q;
}

void queue_fail_all(queue *q, const char *err_msg) {
    pthread_mutex_lock(&q->mu);
    queue_entry *e = q->head;
    q->head = q->tail = NULL;
    q->len = 0;
    pthread_mutex_unlock(&q->mu);
    while (e) {
        queue_entry *next = e->next;
        gen_event *ev = gen_event_error(GEN_ERR_UNHEALTHY, err_msg);
        if (ev) e->sink.send(e->sink.user, ev);
        queue_entry_free(e);
        e = next;
    }
}

void queue_free(queue *q, const char *err_msg) {
    if (!q) return;
    queue_fail_all(q, err_msg);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q);
}

bool queue_append(queue *q, queue_entry *e) {
    pthread_mutex_lock(&q->mu);
    if (q->closed) {
        pthread_mutex_unlock(&q->mu);
        return false;
    }
    e->id = q->next_id++;
    e->next = NULL;
    if (q->tail)
        q->tail->next = e;
    else
        q->head = e;
    q->tail = e;
    q->len++;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return true;
}

int queue_len(queue *q) {
    pthread_mutex_lock(&q->mu);
    int n = q->len;
    pthread_mutex_unlock(&q->mu);
    return n;
}

void queue_close(queue *q) {
    pthread_mutex_lock(&q->mu);
    q->closed = true;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

bool queue_wait(queue *q) {
    pthread_mutex_lock(&q->mu);
    while (!q->closed && q->len == 0)
        pthread_cond_wait(&q->cv, &q->mu);
    bool has = q->len > 0; // a closed queue is still drained
    pthread_mutex_unlock(&q->mu);
    return has;
}

int queue_next_batch(queue *q, int min_size, uint32_t prefill_budget, uint32_t token_budget,
                     queue_entry **batch, int max_entries, uint32_t *max_tokens, int *n_dropped) {
    int n = 0, dropped = 0;
    uint64_t prefill_tokens = 0, decode_tokens = 0;
    pthread_mutex_lock(&q->mu);
    if (q->len == 0 || (min_size > 0 && q->len < min_size)) {
        pthread_mutex_unlock(&q->mu);
        if (n_dropped) *n_dropped = 0;
        return 0;
    }
    queue_entry *gone = NULL; // dropped entries, freed outside the lock
    while (q->head && n < max_entries) {
        queue_entry *e = q->head;
        if (!entry_alive(e)) {
            q->head = e->next;
            q->len--;
            e->next = gone;
            gone = e;
            dropped++;
            continue;
        }
        uint64_t p = prefill_tokens + (uint64_t)e->req->n_input;
        uint64_t d = decode_tokens + e->req->params.max_new_tokens;
        if (p > prefill_budget || p + d > token_budget) break; // FIFO: stop at the first misfit
        prefill_tokens = p;
        decode_tokens = d;
        q->head = e->next;
        q->len--;
        batch[n++] = e;
    }
    if (!q->head) q->tail = NULL;
    if (min_size > 0 && n < min_size) {
        // Not enough fit: put them back at the front, in order.
        if (n > 0 && !q->tail) q->tail = batch[n - 1];
        for (int i = n - 1; i >= 0; i--) {
            batch[i]->next = q->head;
            q->head = batch[i];
            q->len++;
        }
        n = 0;
    }
    pthread_mutex_unlock(&q->mu);
    double now = time_now();
    for (int i = 0; i < n; i++)
        batch[i]->t_batched = now;
    while (gone) {
        queue_entry *next = gone->next;
        queue_entry_free(gone);
        gone = next;
    }
    if (max_tokens) *max_tokens = (uint32_t)(prefill_tokens + decode_tokens);
    if (n_dropped) *n_dropped = dropped;
    return n;
}
