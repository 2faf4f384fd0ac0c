// NCCL communicator for CUDA-backend ranks. Rank 0 publishes an ncclUniqueId through a file in
// the rendezvous directory; the others read it and every rank joins with ncclCommInitRank on its
// current device (set by the CUDA backend).
//
// COMM_STREAM_ON (the default, AUTO): all-reduces are queued on the backend's stream
// (backend.native_stream): stream order puts them between the ops, with no host round trip per
// layer, prefill and decode alike, and a decode step's graph capture includes them; the host
// waits once per step (comm_step_wait). COMM_STREAM_OFF (the path first validated on 2x H200,
// kept for A/B runs): they run on the legacy default stream between a backend sync and a host
// wait, correct whatever stream the backend uses, at a round trip per collective.
// Waits poll, so that a peer rank that died (NCCL would block forever) aborts the communicator
// with an error. Host all-gathers always run on the default stream with a wait: the host needs
// their result at once.
//
// NCCL (2.26+) will not destroy or abort a communicator while a graph that captured one of its
// collectives lives, so the comm drops the backend's graphs first; destroying a graph exec that
// is still running defers its release until the aborted kernels have exited.
#ifdef FALCONLITE_HAVE_CUDA
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <cuda_runtime.h>
#include <nccl.h>

#include "shard/engine/comm_impl.h"

#define NCCL_POLL_SPIN_US  2000 // busy-poll this long before sleeping between polls
#define NCCL_PEER_CHECK_MS 100

typedef struct nccl_comm {
    ncclComm_t nc;       // NULL once aborted
    backend *be;         // the backend the comm was made for: its graphs may hold our collectives
    cudaStream_t stream; // all-reduce stream: the backend's (c->capturable) or the default stream
    float *dev;          // [cap] scratch for host all-gathers: world * n floats
    size_t cap;
    int32_t *pids; // [world] every rank's process id
} nccl_comm;

static fl_code nccl_check(ncclResult_t r, const char *what, fl_error *err) {
    if (r == ncclSuccess) return FL_OK;
    return fl_error_set(err, FL_EBACKEND, "comm: %s: %s", what, ncclGetErrorString(r));
}

static fl_code cuda_check(cudaError_t e, const char *what, fl_error *err) {
    if (e == cudaSuccess) return FL_OK;
    return fl_error_set(err, FL_EBACKEND, "comm: %s: %s", what, cudaGetErrorString(e));
}

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

// Releases every graph that may have captured a collective of this communicator, which NCCL
// requires before it destroys or aborts it.
static void nccl_graphs_drop(comm *c) {
    nccl_comm *nc = c->impl;
    if (c->capturable && nc->be->graph_reset) nc->be->graph_reset(nc->be);
}

// Waits for the work queued on stream. A dead peer or an NCCL error aborts the communicator (its
// kernels then exit) and fails.
static fl_code nccl_wait(comm *c, cudaStream_t stream, const char *what, fl_error *err) {
    nccl_comm *nc = c->impl;
    int64_t start = now_us(), last_check = start;
    for (;;) {
        cudaError_t e = cudaStreamQuery(stream);
        if (e == cudaSuccess) return FL_OK;
        if (e != cudaErrorNotReady) return cuda_check(e, what, err);
        int64_t t = now_us();
        if (t - last_check < NCCL_PEER_CHECK_MS * 1000) {
            if (t - start > NCCL_POLL_SPIN_US) usleep(50);
            continue;
        }
        last_check = t;
        ncclResult_t async = ncclSuccess;
        ncclCommGetAsyncError(nc->nc, &async);
        int dead = comm_dead_peer(c, nc->pids);
        if (async == ncclSuccess && dead < 0) continue;
        nccl_graphs_drop(c);
        ncclCommAbort(nc->nc);
        nc->nc = NULL;
        if (dead >= 0)
            return fl_error_set(err, FL_EBACKEND, "comm rank %d: %s: rank %d exited", c->rank, what,
                                dead);
        return nccl_check(async, what, err);
    }
}

static fl_code nccl_all_reduce_sum(comm *c, backend *be, void *buf, size_t n, fl_error *err) {
    nccl_comm *nc = c->impl;
    ncclDataType_t t;
    switch (be->act_dtype) {
    case DTYPE_F16:
        t = ncclHalf;
        break;
    case DTYPE_BF16:
        t = ncclBfloat16;
        break;
    case DTYPE_F32:
        t = ncclFloat;
        break;
    default:
        return fl_error_set(err, FL_EUNSUPPORTED, "comm: no NCCL type for act dtype");
    }
    if (!c->capturable) {
        fl_code rc = be->sync(be, err);
        if (rc != FL_OK) return rc;
    }
    fl_code rc =
        nccl_check(ncclAllReduce(buf, buf, n, t, ncclSum, nc->nc, nc->stream), "all-reduce", err);
    if (rc != FL_OK || c->capturable) return rc; // queued: comm_step_wait waits for it
    return nccl_wait(c, nc->stream, "all-reduce", err);
}

static fl_code nccl_step_wait(comm *c, backend *be, fl_error *err) {
    nccl_comm *nc = c->impl;
    if (c->capturable) {
        fl_code rc = nccl_wait(c, nc->stream, "step", err);
        if (rc != FL_OK) return rc;
    }
    return be->sync(be, err);
}

static fl_code nccl_all_gather_f32(comm *c, const float *in, float *out, size_t n, fl_error *err) {
    nccl_comm *nc = c->impl;
    size_t need = (size_t)c->world * n;
    if (need > nc->cap) {
        cudaFree(nc->dev);
        nc->dev = NULL;
        nc->cap = 0;
        fl_code rc = cuda_check(cudaMalloc((void **)&nc->dev, need * sizeof(float)),
                                "all-gather buffer", err);
        if (rc != FL_OK) return rc;
        nc->cap = need;
    }
    float *mine = nc->dev + (size_t)c->rank * n; // in place: each rank's part at its offset
    fl_code rc = cuda_check(cudaMemcpy(mine, in, n * sizeof(float), cudaMemcpyHostToDevice),
                            "all-gather upload", err);
    if (rc == FL_OK)
        rc = nccl_check(ncclAllGather(mine, nc->dev, n, ncclFloat, nc->nc, 0), "all-gather", err);
    if (rc == FL_OK) rc = nccl_wait(c, 0, "all-gather", err);
    if (rc == FL_OK)
        rc = cuda_check(cudaMemcpy(out, nc->dev, need * sizeof(float), cudaMemcpyDeviceToHost),
                        "all-gather download", err);
    return rc;
}

static void nccl_free(comm *c) {
    nccl_comm *nc = c->impl;
    if (!nc) return;
    if (nc->nc) {
        nccl_graphs_drop(c);
        ncclCommDestroy(nc->nc);
    }
    cudaFree(nc->dev);
    free(nc->pids);
    free(nc);
    c->impl = NULL;
}

static const comm_ops nccl_ops = {nccl_all_reduce_sum, nccl_all_gather_f32, nccl_step_wait,
                                  nccl_free};

static fl_code id_publish(const char *path, const ncclUniqueId *id, fl_error *err) {
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
    unlink(path); // a stale id of an earlier launch with the same name
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return fl_error_set(err, FL_EIO, "comm: cannot create %s: %s", tmp, strerror(errno));
    ssize_t w = write(fd, id, sizeof *id);
    close(fd);
    if (w != (ssize_t)sizeof *id || rename(tmp, path) != 0) {
        unlink(tmp);
        return fl_error_set(err, FL_EIO, "comm: cannot publish %s", path);
    }
    return FL_OK;
}

static fl_code id_read(const char *path, int timeout_ms, ncclUniqueId *id, fl_error *err) {
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int fd = open(path, O_RDONLY);
        if (fd >= 0) {
            ssize_t r = read(fd, id, sizeof *id);
            close(fd);
            if (r == (ssize_t)sizeof *id) return FL_OK;
        }
        clock_gettime(CLOCK_MONOTONIC, &t);
        long ms = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
        if (ms > timeout_ms)
            return fl_error_set(err, FL_EIO, "comm: %s did not appear within %d ms", path,
                                timeout_ms);
        usleep(10000);
    }
}

fl_code comm_nccl_create(comm *c, backend *be, const char *path, comm_stream stream, int timeout_ms,
                         fl_error *err) {
    char id_path[4200];
    snprintf(id_path, sizeof id_path, "%s.nccl", path);
    ncclUniqueId id;
    fl_code rc = FL_OK;
    if (c->rank == 0) {
        rc = nccl_check(ncclGetUniqueId(&id), "unique id", err);
        if (rc == FL_OK) rc = id_publish(id_path, &id, err);
    } else {
        rc = id_read(id_path, timeout_ms, &id, err);
    }
    if (rc != FL_OK) return rc;
    nccl_comm *nc = calloc(1, sizeof *nc);
    if (!nc) return fl_error_set(err, FL_ENOMEM, "comm: out of memory");
    rc = nccl_check(ncclCommInitRank(&nc->nc, c->world, id, c->rank), "init", err);
    if (rc != FL_OK) {
        free(nc);
        return rc;
    }
    if (c->rank == 0) unlink(id_path); // every rank has joined: the id is no longer needed
    c->impl = nc;
    c->ops = &nccl_ops;
    nc->be = be;
    // Learn the peers' process ids (for nccl_wait): all-gather through a device buffer.
    nc->pids = calloc((size_t)c->world, sizeof *nc->pids);
    int32_t *dev = NULL;
    int32_t me = (int32_t)getpid();
    rc = nc->pids ? FL_OK : fl_error_set(err, FL_ENOMEM, "comm: out of memory");
    if (rc == FL_OK)
        rc = cuda_check(cudaMalloc((void **)&dev, (size_t)c->world * sizeof *dev), "pids", err);
    if (rc == FL_OK)
        rc = cuda_check(cudaMemcpy(dev + c->rank, &me, sizeof me, cudaMemcpyHostToDevice), "pids",
                        err);
    if (rc == FL_OK)
        rc = nccl_check(ncclAllGather(dev + c->rank, dev, 1, ncclInt32, nc->nc, 0), "pids", err);
    if (rc == FL_OK) rc = cuda_check(cudaStreamSynchronize(0), "pids", err);
    if (rc == FL_OK)
        rc = cuda_check(
            cudaMemcpy(nc->pids, dev, (size_t)c->world * sizeof *dev, cudaMemcpyDeviceToHost),
            "pids", err);
    cudaFree(dev);
    if (rc != FL_OK) {
        nccl_free(c);
        c->ops = NULL;
        return rc;
    }
    // Queued on the backend's stream unless told otherwise (or the backend has no stream).
    void *native = be->native_stream ? be->native_stream(be) : NULL;
    if (native && stream != COMM_STREAM_OFF) {
        nc->stream = (cudaStream_t)native;
        c->capturable = 1;
    }
    return FL_OK;
}
#endif
