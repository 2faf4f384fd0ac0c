// What GET /info and gRPC Info report (TGI's Info struct): the served model and router limits.
#pragma once
#include <stdint.h>

typedef struct server_info {
    char model_id[512];
    char model_sha[64];
    char model_dtype[32];       // TGI spelling, e.g. "torch.float16"
    char model_device_type[16]; // "cuda" or "cpu"
    char model_pipeline_tag[32];
    uint32_t max_concurrent_requests;
    uint32_t max_best_of;
    uint32_t max_stop_sequences;
    uint32_t max_input_length;
    uint32_t max_total_tokens;
    float waiting_served_ratio;
    uint32_t max_batch_total_tokens;
    uint32_t max_waiting_tokens;
    uint32_t validation_workers;
    char version[32];
    char sha[64];
    uint32_t num_shard;
} server_info;
