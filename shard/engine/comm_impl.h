// Inside shard/comm.h: the transport behind a comm (shared memory or NCCL).
#pragma once
#include <stdint.h>

#include "shard/engine/comm.h"

typedef struct comm_ops {
    fl_code (*all_reduce_sum)(comm *c, backend *be, void *buf, size_t n, fl_error *err);
    fl_code (*all_gather_f32)(comm *c, const float *in, float *out, size_t n, fl_error *err);
    fl_code (*step_wait)(comm *c, backend *be, fl_error *err);
    void (*free)(comm *c);
} comm_ops;

struct comm {
    int rank, world;
    const comm_ops *ops;
    void *impl;
    int capturable; // collectives are queued on the backend's stream (comm_capturable)
    int broken;     // a transport error happened: the ranks are out of step, every later op fails
};

// The rank of a peer whose process (pids[rank], 0 = unknown) has exited, else -1. Ranks run on one
// host, so a collective waiting on a dead peer can fail instead of hanging.
int comm_dead_peer(const comm *c, const int32_t *pids);

// The rendezvous file <dir>/falconlite-comm-<id><suffix> (dir NULL: /dev/shm).
fl_code comm_rendezvous_path(const char *dir, const char *id, const char *suffix, char *out,
                             size_t cap, fl_error *err);

fl_code comm_shm_create(comm *c, const char *path, int timeout_ms, fl_error *err);
#ifdef FALCONLITE_HAVE_CUDA
fl_code comm_nccl_create(comm *c, backend *be, const char *path, comm_stream stream, int timeout_ms,
                         fl_error *err);
#endif
