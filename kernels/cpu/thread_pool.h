// A persistent pool of worker threads with a parallel-for. The calling thread takes part in
// every loop, so a pool of n threads starts n - 1 workers. Loops must not nest.
#pragma once
#include <stdint.h>

typedef struct thread_pool thread_pool;

// Runs items [begin, end) of a loop on thread `thread` (0 .. thread_pool_size - 1).
typedef void (*thread_pool_fn)(void *arg, int64_t begin, int64_t end, int thread);

// NULL when threads cannot be started.
thread_pool *thread_pool_create(int n_threads);
void thread_pool_free(thread_pool *p);
int thread_pool_size(const thread_pool *p);

// Calls fn over [0, n) in chunks of at least `grain` items, handed out dynamically to all
// threads, and returns when every chunk has run.
void thread_pool_for(thread_pool *p, int64_t n, int64_t grain, thread_pool_fn fn, void *arg);
