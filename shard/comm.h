// Tensor-parallel communication between the ranks of one model: NCCL on GPUs, shared memory for
// the CPU backend. Buffers are backend act buffers (act_dtype) unless stated otherwise.
#pragma once
#include <stddef.h>

#include "common/status.h"
#include "kernels/backend.h"

typedef struct comm comm;

// Joins the communicator of `world` ranks called id (the same string on every rank, unique per
// launch of the rank group): NCCL when be is the CUDA backend, else shared memory through a file
// in dir (NULL: /dev/shm). Blocks until every rank has joined or timeout_ms has passed.
fl_code comm_create(backend *be, int rank, int world, const char *id, const char *dir,
                    int timeout_ms, comm **out, fl_error *err);

int comm_rank(const comm *c);
int comm_world(const comm *c);
// In place: buf[n] = sum over ranks of buf[n].
fl_code comm_all_reduce_sum(comm *c, backend *be, void *buf, size_t n, fl_error *err);
// Host f32: out[world * n] = concatenation of every rank's in[n] (rank order).
fl_code comm_all_gather_f32(comm *c, const float *in, float *out, size_t n, fl_error *err);
void comm_free(comm *c);
