// Workers take chunks of the current loop from an atomic counter. Between loops they spin on
// the loop counter for a short while (a decode step posts hundreds of small loops back to back,
// and a futex wake-up per loop costs more than the loop) and then sleep on a condition variable
// (the machine may be shared). The caller waits for the last worker the same way.
#include "kernels/cpu/thread_pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#define POOL_SPIN_NS 50000 // spin this long before sleeping

struct thread_pool {
    int n_threads;
    pthread_t *workers; // [n_threads - 1]
    pthread_mutex_t mu;
    pthread_cond_t wake;             // a new loop (or stop) was posted
    pthread_cond_t done;             // the last worker finished the loop
    atomic_uint_fast64_t generation; // bumped (release) after a loop's fields are written
    atomic_int stop;
    atomic_int busy; // workers still inside the current loop
    int sleepers;    // workers waiting on wake (under mu)
    int waiting;     // the caller waits on done (under mu)

    // the current loop, published by the release on generation
    thread_pool_fn fn;
    void *arg;
    int64_t n_items, chunk;
    atomic_int_fast64_t next;
};

typedef struct worker_start {
    thread_pool *pool;
    int thread;
} worker_start;

static int64_t pool_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void pool_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

// Spins until expr holds or POOL_SPIN_NS pass; evaluates to whether it held.
#define POOL_SPIN_UNTIL(expr)                                                                      \
    ({                                                                                             \
        int held_ = 0;                                                                             \
        int64_t t0_ = 0;                                                                           \
        for (unsigned i_ = 0;; i_++) {                                                             \
            if (expr) {                                                                            \
                held_ = 1;                                                                         \
                break;                                                                             \
            }                                                                                      \
            if ((i_ & 63) == 63) {                                                                 \
                int64_t t_ = pool_now_ns();                                                        \
                if (!t0_)                                                                          \
                    t0_ = t_;                                                                      \
                else if (t_ - t0_ > POOL_SPIN_NS)                                                  \
                    break;                                                                         \
            }                                                                                      \
            pool_pause();                                                                          \
        }                                                                                          \
        held_;                                                                                     \
    })

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
        if (!POOL_SPIN_UNTIL(atomic_load_explicit(&p->generation, memory_order_acquire) != seen ||
                             atomic_load(&p->stop))) {
            pthread_mutex_lock(&p->mu);
            p->sleepers++;
            while (!atomic_load(&p->stop) &&
                   atomic_load_explicit(&p->generation, memory_order_acquire) == seen)
                pthread_cond_wait(&p->wake, &p->mu);
            p->sleepers--;
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = atomic_load_explicit(&p->generation, memory_order_acquire);

        pool_run_chunks(p, start.thread);

        if (atomic_fetch_sub(&p->busy, 1) == 1) {
            pthread_mutex_lock(&p->mu);
            if (p->waiting) pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
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
    atomic_store(&p->stop, 1);
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

    p->fn = fn;
    p->arg = arg;
    p->n_items = n;
    p->chunk = chunk;
    atomic_store(&p->next, 0);
    atomic_store(&p->busy, p->n_threads - 1);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    // A worker about to sleep re-checks generation under mu, so checking sleepers under mu after
    // the bump loses no wake-up.
    pthread_mutex_lock(&p->mu);
    if (p->sleepers) pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);

    pool_run_chunks(p, 0);

    if (!POOL_SPIN_UNTIL(atomic_load(&p->busy) == 0)) {
        pthread_mutex_lock(&p->mu);
        p->waiting = 1;
        while (atomic_load(&p->busy) > 0)
            pthread_cond_wait(&p->done, &p->mu);
        p->waiting = 0;
        pthread_mutex_unlock(&p->mu);
    }
}
