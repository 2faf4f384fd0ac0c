// Workers sleep on a condition variable between loops (the machine may be shared, so they do
// not spin) and take chunks of the current loop from an atomic counter.
#include "kernels/cpu/thread_pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

struct thread_pool {
    int n_threads;
    pthread_t *workers; // [n_threads - 1]
    pthread_mutex_t mu;
    pthread_cond_t wake; // a new loop (or stop) was posted
    pthread_cond_t done; // the last worker finished the loop
    uint64_t generation; // bumped for every loop
    int stop;
    int busy; // workers still inside the current loop

    // the current loop
    thread_pool_fn fn;
    void *arg;
    int64_t n_items, chunk;
    atomic_int_fast64_t next;
};

typedef struct worker_start {
    thread_pool *pool;
    int thread;
} worker_start;

static void pool_run_chunks(thread_pool *p, int thread) {
    for (;;) {
        int64_t begin = atomic_fetch_add(&p->next, p->chunk);
        if (begin >= p->n_items) return;
        int64_t end = begin + p->chunk < p->n_items ? begin + p->chunk : p->n_items;
        p->fn(p->arg, begin, end, thread);
    }
}

static void *pool_worker_main(void *start_arg) {
    worker_start start = *(worker_start *)start_arg;
    free(start_arg);
    thread_pool *p = start.pool;
    uint64_t seen = 0;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->stop && p->generation == seen)
            pthread_cond_wait(&p->wake, &p->mu);
        if (p->stop) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);

        pool_run_chunks(p, start.thread);

        pthread_mutex_lock(&p->mu);
        if (--p->busy == 0) pthread_cond_signal(&p->done);
        pthread_mutex_unlock(&p->mu);
    }
}

thread_pool *thread_pool_create(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    thread_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->workers = calloc((size_t)n_threads, sizeof *p->workers);
    if (!p->workers) {
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    p->n_threads = 1;
    for (int i = 1; i < n_threads; i++) {
        worker_start *start = malloc(sizeof *start);
        if (!start) break;
        *start = (worker_start){p, i};
        if (pthread_create(&p->workers[i - 1], NULL, pool_worker_main, start) != 0) {
            free(start);
            break;
        }
        p->n_threads++;
    }
    if (p->n_threads < n_threads) {
        thread_pool_free(p);
        return NULL;
    }
    return p;
}

void thread_pool_free(thread_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_threads - 1; i++)
        pthread_join(p->workers[i], NULL);
    pthread_cond_destroy(&p->done);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mu);
    free(p->workers);
    free(p);
}

int thread_pool_size(const thread_pool *p) {
    return p->n_threads;
}

void thread_pool_for(thread_pool *p, int64_t n, int64_t grain, thread_pool_fn fn, void *arg) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    if (p->n_threads == 1 || n <= grain) {
        fn(arg, 0, n, 0);
        return;
    }
    // About four chunks per thread balances uneven items without much counter traffic.
    int64_t chunk = (n + 4 * p->n_threads - 1) / (4 * p->n_threads);
    if (chunk < grain) chunk = grain;

    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->n_items = n;
    p->chunk = chunk;
    atomic_store(&p->next, 0);
    p->busy = p->n_threads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);

    pool_run_chunks(p, 0);

    pthread_mutex_lock(&p->mu);
    while (p->busy > 0)
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
