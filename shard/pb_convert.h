// The shard's only contact with generated protobuf-c types: request decoding into service_msg.h
// structs, and replies built from them. The method table is proto/shard_methods.h.
#pragma once
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "proto/rpc_server.h"
#include "proto/shard_methods.h"
#include "shard/service_msg.h"

// Request decoding. Id arrays are borrowed from msg (valid while the call is open).
fl_code pb_prefill_request_decode(const ProtobufCMessage *msg, svc_batch *out, fl_error *err);
fl_code pb_warmup_request_decode(const ProtobufCMessage *msg, svc_batch *out,
                                 uint32_t *max_total_tokens, fl_error *err);
// The ids of a Decode's cached batches (malloc'd; NULL when out of memory).
uint64_t *pb_decode_request_ids(const ProtobufCMessage *msg, int *n);
void pb_filter_request_decode(const ProtobufCMessage *msg, uint64_t *batch_id,
                              const uint64_t **keep_ids, int *n);
void pb_clear_request_decode(const ProtobufCMessage *msg, const uint64_t **batch_ids, int *n);

// Replies (each ends the call with OK).
void pb_reply_info(rpc_call *call, const svc_info *info);
void pb_reply_empty(rpc_call *call, shard_method m); // Health, ClearCache
void pb_reply_discovery(rpc_call *call, char *const *urls, int n);
void pb_reply_filter(rpc_call *call, const svc_cached_batch *batch);
void pb_reply_warmup(rpc_call *call, uint32_t max_supported_total_tokens);
void pb_reply_step(rpc_call *call, shard_method m, const svc_step *step); // Prefill, Decode
