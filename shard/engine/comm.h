// Tensor-parallel communication between the ranks of one model: NCCL on GPUs, shared memory for
// the CPU backend. Buffers are backend act buffers (act_dtype) unless stated otherwise.
#pragma once
#include <stddef.h>

#include "common/status.h"
#include "kernels/backend.h"

typedef struct comm comm;

// Where NCCL queues its all-reduces (the shards' --nccl-stream auto|on|off, in this order; the
// shared-memory comm ignores it). ON: on the backend's stream (backend.native_stream), in stream
// order between the ops, with no host round trip per layer; decode-step graph captures include
// them and the host waits once per step (comm_step_wait). OFF: on the default stream between a
// backend sync and a host wait, a round trip per collective (the path validated first, kept for
// A/B runs). AUTO: ON.
typedef enum comm_stream { COMM_STREAM_AUTO, COMM_STREAM_ON, COMM_STREAM_OFF } comm_stream;

// Joins the communicator of `world` ranks called id (the same string on every rank, unique per
// launch of the rank group): NCCL when be is the CUDA backend, else shared memory through a file
// in dir (NULL: /dev/shm). Blocks until every rank has joined or timeout_ms has passed.
// The comm is bound to be: be must outlive it (with NCCL, comm_free drops be's graphs first).
fl_code comm_create(backend *be, int rank, int world, const char *id, const char *dir,
                    comm_stream stream, int timeout_ms, comm **out, fl_error *err);

int comm_rank(const comm *c);
int comm_world(const comm *c);
// In place: buf[n] = sum over ranks of buf[n]. It may only be queued (NCCL on the backend's
// stream): buf holds the sum once comm_step_wait has returned.
fl_code comm_all_reduce_sum(comm *c, backend *be, void *buf, size_t n, fl_error *err);
// Waits until the work queued on the backend, collectives included, is done, and returns the
// first error of either (a peer rank that exited included, instead of hanging). Call it before
// reading results on the host; it also syncs the backend.
fl_code comm_step_wait(comm *c, backend *be, fl_error *err);
// 1 when collectives are queued on the backend's stream, so a backend graph capture may include
// them (every rank must then capture and replay the same steps); 0 when they run on the host
// (shared memory), synchronise (COMM_STREAM_OFF, or a backend without a native stream), or the
// communicator is broken.
int comm_capturable(const comm *c);
// Host f32: out[world * n] = concatenation of every rank's in[n] (rank order).
fl_code comm_all_gather_f32(comm *c, const float *in, float *out, size_t n, fl_error *err);
void comm_free(comm *c);
