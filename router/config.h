// Router settings: TGI launcher flags with TGI's names and defaults, each also read from its
// upper-case environment variable (--max-input-length / MAX_INPUT_LENGTH), so the model card's
// start_falconlite.sh translates one to one. Flags win over the environment.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/quant_overrides.h"
#include "common/rope.h"
#include "common/status.h"

typedef struct router_config {
    char model_id[512]; // model directory (config.json, *.safetensors, tokenizer.json)
    int num_shard;
    char quantize[16]; // "" or "gptq" (informational: shards detect GPTQ from the checkpoint)
    uint32_t max_input_length;         // 1024
    uint32_t max_total_tokens;         // 2048
    uint32_t max_batch_prefill_tokens; // 4096
    uint32_t max_batch_total_tokens;   // 16000
    uint32_t max_concurrent_requests;  // 128
    float waiting_served_ratio;        // 1.2
    uint32_t max_waiting_tokens;       // 20
    uint32_t max_best_of;              // 2
    uint32_t max_stop_sequences;       // 4
    uint32_t validation_workers;       // 2 (reported in /info; validation runs on the API threads)
    int port;                          // 3000
    char hostname[256];                // 127.0.0.1 (loopback unless asked: see SECURITY.md)
    char shard_uds_path[400];          // "": a private 0700 directory made at start (launcher.h)
    int grpc_port;                     // 50051 (0: no public gRPC server)
    char backend[16];                  // cpu | cuda | auto
    int threads;                       // per shard (0: the shard's default)
    char shard_bin[512];               // falconlite-shard (default: beside the router binary)
    // --rope-* and FalconLite's DNTK_ALPHA_SCALER / PRETRAINED_MAX_TOKENS, checked, passed to
    // every shard as explicit --rope-* flags (fields not given: see rope_overrides).
    rope_overrides rope;
    // --gptq-bits / --gptq-groupsize and TGI's GPTQ_BITS / GPTQ_GROUPSIZE, passed to every shard
    // as explicit --gptq-* flags (0: not given).
    quant_overrides gptq;
    int shutdown_grace_ms; // 90000 (TGI's launcher grace period; --shutdown-timeout in seconds)
    // Hardening (SECURITY.md): a Prefill or Decode that takes longer than this marks the shards
    // hung: the step's requests fail, /health turns 503 and the shards are restarted.
    int shard_step_timeout_ms; // 300000 (--shard-step-timeout, seconds)
    char api_key[256];         // "": no authentication (--api-key, API_KEY, --api-key-file)
    char tls_cert[512];        // PEM files for the public HTTP and gRPC servers ("": plaintext)
    char tls_key[512];
    int prefix_cache;      // 1: shards reuse cached prompt prefixes (--prefix-cache off|on)
    int nccl_stream;       // --nccl-stream: index in router_nccl_stream_modes, passed to shards
    // The HTTP edge (router/http_conn.c).
    char cors_allow_origin[1024]; // comma list of origins given CORS headers ("": none)
    float http_header_timeout;    // seconds to receive a request's headers (10)
    float http_body_timeout;      // seconds a body may stall (30)
    // Chunked prefill (README): at most this many prompt tokens per forward step, sent to the
    // shards with each prefill batch; 0: prompts are prefilled whole (TGI 0.9.2).
    uint32_t prefill_chunk_tokens; // 1024
} router_config;

// Parses argv and the environment; checks TGI's argument rules. Returns FL_EINVAL with a message
// on bad input; *help is set when --help was given (usage already printed).
fl_code router_config_parse(int argc, char **argv, router_config *cfg, bool *help, fl_error *err);
// The --rope-* arguments that pass cfg->rope to a shard, written into args (8 entries at most;
// the strings live in buf, which must outlive args; 128 bytes suffice). Returns the number of
// entries.
int router_config_rope_args(const router_config *cfg, char *buf, size_t cap, char **args);
// The same for the --gptq-* arguments that pass cfg->gptq (4 entries at most; 32 bytes suffice).
int router_config_quant_args(const router_config *cfg, char *buf, size_t cap, char **args);

// The --nccl-stream values (auto, on, off; NULL-terminated), as the shards take them.
extern const char *const router_nccl_stream_modes[];
