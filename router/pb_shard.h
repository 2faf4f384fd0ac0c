// The router's side of the shard contract (proto/shard.proto): shard_api's plain-C structs to
// and from protobuf-c messages. Only this file and router/pb_api.c see generated types; the
// method table (paths, message types) is proto/shard_methods.h, shared with the shard.
#pragma once
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "common/status.h"
#include "proto/shard_methods.h"
#include "router/pb_built.h"
#include "router/shard_api.h"

// Requests.
pb_built *pb_shard_empty_request(shard_method m);             // Info, Health, ServiceDiscovery
pb_built *pb_shard_clear_request(const uint64_t *ids, int n); // n == 0: every batch
pb_built *pb_shard_filter_request(uint64_t batch_id, const uint64_t *keep, int n);
pb_built *pb_shard_prefill_request(const shard_batch *b);
pb_built *pb_shard_warmup_request(const shard_batch *b, uint32_t max_total_tokens);
pb_built *pb_shard_decode_request(const cached_batch *batches, int n);

// Responses (copied out; resp stays owned by the caller).
// Prefill / Decode responses -> shard_step.
fl_code pb_shard_step_from(const ProtobufCMessage *resp, shard_step *out, fl_error *err);
// A Prefill response's prefix-cache counts (0 from shards that do not report them).
void pb_shard_prefill_prefix_counts(const ProtobufCMessage *resp, uint32_t *lookup_tokens,
                                    uint32_t *hit_tokens);
fl_code pb_shard_filtered_from(const ProtobufCMessage *resp, cached_batch *out, fl_error *err);
uint32_t pb_shard_warmup_capacity(const ProtobufCMessage *resp);
void pb_shard_info_from(const ProtobufCMessage *resp, shard_info *out);
