// The shard service: this rank's model slice, its paged KV cache and a cache of batches by id,
// served over gRPC (proto/shard.proto) on unix:<uds-path>-<rank>. Every rank runs every RPC the
// router fans out; only rank 0 returns generations.
#pragma once
#include "common/model_config.h"
#include "common/status.h"
#include "shard/engine/comm.h"

typedef struct shard_options {
    const char *model_dir;
    const char *uds_path; // the socket is <uds_path>-<rank>
    int rank, world;
    const char *backend;                 // "cpu", "cuda" or "auto"
    int threads;                         // CPU backend workers (0: default)
    const rope_overrides *rope_override; // NULL: from config.json as written
    quant_overrides gptq;                // --gptq-bits / --gptq-groupsize (0: not given)
    const char *comm_id;                 // rendezvous name shared by the ranks (world > 1)
    const char *comm_dir;                // rendezvous directory (NULL: /dev/shm)
    comm_stream nccl_stream;             // where NCCL queues all-reduces (0: AUTO = on)
    int prefix_cache;                    // 1: reuse cached prompt prefixes (kv_cache.h)
} shard_options;

typedef struct shard_service shard_service;

// Creates the backend, joins the communicator and loads this rank's slice of the model.
fl_code shard_service_create(const shard_options *opt, shard_service **out, fl_error *err);
// Listens on unix:<uds_path>-<rank> and serves on a background thread.
fl_code shard_service_start(shard_service *s, fl_error *err);
// 1 once a handler hit a backend error the shard cannot recover from (a sticky CUDA error, a
// broken communicator). The handler replies first, then raises SIGTERM so that the main thread
// stops the service and exits non-zero.
int shard_service_failed(const shard_service *s);
// Stops serving (calls in flight get a short grace period) and frees everything.
void shard_service_free(shard_service *s);
