#include "shard/engine/comm.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shard/engine/comm_impl.h"

fl_code comm_rendezvous_path(const char *dir, const char *id, const char *suffix, char *out,
                             size_t cap, fl_error *err) {
    if (!id || !*id || strchr(id, '/'))
        return fl_error_set(err, FL_EINVAL, "comm: id '%s' must be a non-empty file name",
                            id ? id : "");
    int n = snprintf(out, cap, "%s/falconlite-comm-%s%s", dir ? dir : "/dev/shm", id, suffix);
    if (n < 0 || (size_t)n >= cap) return fl_error_set(err, FL_EINVAL, "comm: path too long");
    return FL_OK;
}

int comm_dead_peer(const comm *c, const int32_t *pids) {
    for (int r = 0; r < c->world; r++) {
        int32_t pid = __atomic_load_n(&pids[r], __ATOMIC_ACQUIRE);
        if (r != c->rank && pid > 0 && kill(pid, 0) != 0 && errno == ESRCH) return r;
    }
    return -1;
}

fl_code comm_create(backend *be, int rank, int world, const char *id, const char *dir,
                    comm_stream stream, int timeout_ms, comm **out, fl_error *err) {
    *out = NULL;
    if (world < 1 || rank < 0 || rank >= world)
        return fl_error_set(err, FL_EINVAL, "comm: rank %d out of range for world %d", rank, world);
    if (stream < COMM_STREAM_AUTO || stream > COMM_STREAM_OFF)
        return fl_error_set(err, FL_EINVAL, "comm: unknown stream mode %d", (int)stream);
    comm *c = calloc(1, sizeof *c);
    if (!c) return fl_error_set(err, FL_ENOMEM, "comm: out of memory");
    c->rank = rank;
    c->world = world;
    char path[4096];
    fl_code rc = comm_rendezvous_path(dir, id, "", path, sizeof path, err);
    if (rc == FL_OK) {
#ifdef FALCONLITE_HAVE_CUDA
        if (strcmp(be->name, "cuda") == 0)
            rc = comm_nccl_create(c, be, path, stream, timeout_ms, err);
        else
#endif
            rc = comm_shm_create(c, path, timeout_ms, err);
    }
    if (rc != FL_OK) {
        free(c);
        return rc;
    }
    *out = c;
    return FL_OK;
}

int comm_rank(const comm *c) {
    return c->rank;
}
int comm_world(const comm *c) {
    return c->world;
}

fl_code comm_all_reduce_sum(comm *c, backend *be, void *buf, size_t n, fl_error *err) {
    if (c->broken)
        return fl_error_set(err, FL_EBACKEND, "comm rank %d: broken by an earlier error", c->rank);
    fl_code rc = c->ops->all_reduce_sum(c, be, buf, n, err);
    if (rc != FL_OK) c->broken = 1;
    return rc;
}

fl_code comm_all_gather_f32(comm *c, const float *in, float *out, size_t n, fl_error *err) {
    if (c->broken)
        return fl_error_set(err, FL_EBACKEND, "comm rank %d: broken by an earlier error", c->rank);
    fl_code rc = c->ops->all_gather_f32(c, in, out, n, err);
    if (rc != FL_OK) c->broken = 1;
    return rc;
}

fl_code comm_step_wait(comm *c, backend *be, fl_error *err) {
    if (c->broken)
        return fl_error_set(err, FL_EBACKEND, "comm rank %d: broken by an earlier error", c->rank);
    fl_code rc = c->ops->step_wait(c, be, err);
    if (rc != FL_OK) c->broken = 1;
    return rc;
}

int comm_capturable(const comm *c) {
    return c->capturable && !c->broken;
}

void comm_free(comm *c) {
    if (!c) return;
    if (c->ops) c->ops->free(c);
    free(c);
}
