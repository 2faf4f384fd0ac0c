#include "router/config.h"

#include <arpa/inet.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/options.h"

static fl_code quantize_parse(const char *v, bool from_env, void *dst, fl_error *err) {
    (void)from_env;
    if (!strcmp(v, "bitsandbytes"))
        return fl_error_set(err, FL_EUNSUPPORTED, "--quantize bitsandbytes is not supported");
    if (strcmp(v, "gptq"))
        return fl_error_set(err, FL_EINVAL, "--quantize: expected gptq, got '%s'", v);
    snprintf(dst, sizeof((router_config *)0)->quantize, "%s", v);
    return FL_OK;
}

// Shells and containers export HOSTNAME as the machine's name: from the environment only an
// address literal counts.
static fl_code hostname_parse(const char *v, bool from_env, void *dst, fl_error *err) {
    unsigned char buf[16];
    if (from_env && inet_pton(AF_INET, v, buf) != 1 && inet_pton(AF_INET6, v, buf) != 1)
        return FL_OK;
    size_t cap = sizeof((router_config *)0)->hostname;
    if (strlen(v) >= cap) return fl_error_set(err, FL_EINVAL, "--hostname: value too long");
    memcpy(dst, v, strlen(v) + 1);
    return FL_OK;
}

// Whole seconds (1 .. 1 day) stored as milliseconds.
static fl_code seconds_parse(const char *v, bool from_env, void *dst, fl_error *err) {
    (void)from_env;
    char *end;
    long s = strtol(v, &end, 10);
    if (end == v || *end || s < 1 || s > 86400)
        return fl_error_set(err, FL_EINVAL, "expected seconds in [1, 86400], got '%s'", v);
    *(int *)dst = (int)(s * 1000);
    return FL_OK;
}

// The key's first line (a trailing newline is not part of it).
static fl_code key_file_parse(const char *v, bool from_env, void *dst, fl_error *err) {
    (void)from_env;
    FILE *f = fopen(v, "r");
    if (!f) return fl_error_set(err, FL_EIO, "--api-key-file: cannot open %s", v);
    size_t cap = sizeof((router_config *)0)->api_key;
    char *out = dst;
    bool ok = fgets(out, (int)cap, f) != NULL;
    fclose(f);
    if (ok) out[strcspn(out, "\r\n")] = 0;
    if (!ok || !out[0]) return fl_error_set(err, FL_EINVAL, "--api-key-file: %s is empty", v);
    return FL_OK;
}

static const char *const backends[] = {"cpu", "cuda", "auto", NULL};
static const char *const off_on[] = {"off", "on", NULL};

enum { N_TGI = 17, N_FALCONLITE = 8, N_HARDEN = 6 };

const char *const router_nccl_stream_modes[] = {"auto", "on", "off", NULL};

// The router's flags bound to c: TGI 0.9.2's launcher flags (each with its upper-case
// environment variable) and falconlite's own; the --rope-* group is rope_opts_bind's.
static void router_opts_bind(router_config *c, opt_spec tgi[N_TGI], opt_spec fl[N_FALCONLITE],
                             opt_spec harden[N_HARDEN], opt_spec rope[ROPE_OPTS_N]) {
    const opt_spec t[N_TGI] = {
        OPT("model-id", OPT_STRING, c->model_id, "model directory (also --model)",
            .env = "MODEL_ID", .cap = sizeof c->model_id),
        OPT("model", OPT_STRING, c->model_id, NULL, .cap = sizeof c->model_id),
        OPT("num-shard", OPT_INT, &c->num_shard, "shards (default: visible GPUs; 1 on cpu)",
            .env = "NUM_SHARD", OPT_MIN(1)),
        OPT("quantize", OPT_CUSTOM, c->quantize, "gptq", .env = "QUANTIZE",
            .parse = quantize_parse),
        OPT("max-input-length", OPT_U32, &c->max_input_length, "longest prompt in tokens",
            .env = "MAX_INPUT_LENGTH", OPT_MIN(1)),
        OPT("max-total-tokens", OPT_U32, &c->max_total_tokens, "prompt + new tokens per request",
            .env = "MAX_TOTAL_TOKENS", OPT_MIN(1)),
        OPT("max-batch-prefill-tokens", OPT_U32, &c->max_batch_prefill_tokens,
            "prompt tokens per prefill batch", .env = "MAX_BATCH_PREFILL_TOKENS", OPT_MIN(1)),
        OPT("max-batch-total-tokens", OPT_U32, &c->max_batch_total_tokens,
            "tokens of all batched requests", .env = "MAX_BATCH_TOTAL_TOKENS", OPT_MIN(1)),
        OPT("max-concurrent-requests", OPT_U32, &c->max_concurrent_requests,
            "requests in flight before 429", .env = "MAX_CONCURRENT_REQUESTS", OPT_MIN(1)),
        OPT("waiting-served-ratio", OPT_FLOAT, &c->waiting_served_ratio,
            "waiting / running ratio that forces a prefill", .env = "WAITING_SERVED_RATIO",
            OPT_MIN(0)),
        OPT("max-waiting-tokens", OPT_U32, &c->max_waiting_tokens,
            "decode steps before waiting requests are forced in", .env = "MAX_WAITING_TOKENS"),
        OPT("max-best-of", OPT_U32, &c->max_best_of, "largest best_of", .env = "MAX_BEST_OF",
            OPT_MIN(1)),
        OPT("max-stop-sequences", OPT_U32, &c->max_stop_sequences, "stop sequences per request",
            .env = "MAX_STOP_SEQUENCES"),
        OPT("validation-workers", OPT_U32, &c->validation_workers, "reported in /info",
            .env = "VALIDATION_WORKERS", OPT_MIN(1)),
        OPT("port", OPT_INT, &c->port, "HTTP port", .env = "PORT", .short_name = 'p',
            OPT_RANGE(0, 65535)),
        OPT("hostname", OPT_CUSTOM, c->hostname,
            "HTTP and gRPC address (default 127.0.0.1; 0.0.0.0: every interface)",
            .env = "HOSTNAME", .parse = hostname_parse),
        OPT("shard-uds-path", OPT_STRING, c->shard_uds_path,
            "shard socket prefix (default: a private directory)", .env = "SHARD_UDS_PATH",
            .cap = sizeof c->shard_uds_path),
    };
    const opt_spec f[N_FALCONLITE] = {
        OPT("grpc-port", OPT_INT, &c->grpc_port, "public gRPC port (0: off)", .env = "GRPC_PORT",
            OPT_RANGE(0, 65535)),
        OPT("backend", OPT_STRING, c->backend, "compute backend", .env = "BACKEND",
            .choices = backends, .cap = sizeof c->backend),
        OPT("threads", OPT_INT, &c->threads, "CPU threads per shard (0: the shard's default)",
            .env = "THREADS", OPT_MIN(0)),
        OPT("shard-bin", OPT_STRING, c->shard_bin, "falconlite-shard binary",
            .env = "FALCONLITE_SHARD_BIN", .cap = sizeof c->shard_bin),
        OPT("shutdown-grace-ms", OPT_INT, &c->shutdown_grace_ms, "shard stop grace period",
            OPT_MIN(0)),
        OPT("prefix-cache", OPT_ENUM, &c->prefix_cache, "shards reuse cached prompt prefixes",
            .env = "PREFIX_CACHE", .choices = off_on),
        OPT("nccl-stream", OPT_ENUM, &c->nccl_stream,
            "tensor parallelism on GPUs: NCCL all-reduces on the compute stream, captured in "
            "decode graphs (off: a host wait per all-reduce; auto: on)",
            .choices = router_nccl_stream_modes),
        OPT("prefill-chunk-tokens", OPT_U32, &c->prefill_chunk_tokens,
            "prompt tokens per forward step while running requests decode (0: whole prompts)",
            .env = "PREFILL_CHUNK_TOKENS"),
    };
    const opt_spec h[N_HARDEN] = {
        OPT("shard-step-timeout", OPT_CUSTOM, &c->shard_step_timeout_ms,
            "seconds one Prefill/Decode may take before the shards count as hung (default 300)",
            .env = "SHARD_STEP_TIMEOUT", .parse = seconds_parse),
        OPT("shutdown-timeout", OPT_CUSTOM, &c->shutdown_grace_ms,
            "seconds SIGTERM waits for requests in flight (default 90)", .env = "SHUTDOWN_TIMEOUT",
            .parse = seconds_parse),
        OPT("api-key", OPT_STRING, c->api_key,
            "bearer token required on every API call but /health (default: none)", .env = "API_KEY",
            .cap = sizeof c->api_key),
        OPT("api-key-file", OPT_CUSTOM, c->api_key, "read --api-key from this file",
            .env = "API_KEY_FILE", .parse = key_file_parse),
        OPT("tls-cert", OPT_STRING, c->tls_cert, "PEM certificate chain: HTTPS and gRPC over TLS",
            .env = "TLS_CERT", .cap = sizeof c->tls_cert),
        OPT("tls-key", OPT_STRING, c->tls_key, "PEM private key of --tls-cert",
            .env = "TLS_KEY", .cap = sizeof c->tls_key),
    };
    memcpy(tgi, t, sizeof t);
    memcpy(fl, f, sizeof f);
    memcpy(harden, h, sizeof h);
    rope_opts_bind(&c->rope, rope);
}

enum { N_HTTP = 3 };

// The HTTP edge: TGI's --cors-allow-origin and the read timeouts.
static void http_opts_bind(router_config *c, opt_spec out[N_HTTP]) {
    const opt_spec h[N_HTTP] = {
        OPT("cors-allow-origin", OPT_STRING, c->cors_allow_origin,
            "origins allowed by CORS, comma-separated (\"*\": any; default none)",
            .env = "CORS_ALLOW_ORIGIN", .cap = sizeof c->cors_allow_origin),
        OPT("http-header-timeout", OPT_FLOAT, &c->http_header_timeout,
            "seconds to receive a request's headers (idle keep-alive connections close after it)",
            .env = "HTTP_HEADER_TIMEOUT", OPT_MIN(0.001)),
        OPT("http-body-timeout", OPT_FLOAT, &c->http_body_timeout,
            "seconds a request body may stall", .env = "HTTP_BODY_TIMEOUT", OPT_MIN(0.001)),
    };
    memcpy(out, h, sizeof h);
}

// TGI launcher flags with no effect here, accepted so existing scripts run unchanged.
static const opt_spec ignored[] = {
    OPT("trust-remote-code", OPT_BOOL, NULL, NULL), OPT("sharded", OPT_STRING, NULL, NULL),
    OPT("dtype", OPT_STRING, NULL, NULL),           OPT("revision", OPT_STRING, NULL, NULL),
    OPT("json-output", OPT_BOOL, NULL, NULL),
};

// TGI's find_num_shards: the visible GPUs when --num-shard is not given, else 1.
static int visible_devices(void) {
    const char *v = getenv("CUDA_VISIBLE_DEVICES");
    if (!v) v = getenv("NVIDIA_VISIBLE_DEVICES");
    if (!v || !*v || !strcmp(v, "all") || !strcmp(v, "none") || !strcmp(v, "void")) return 1;
    int n = 1;
    for (const char *p = v; *p; p++)
        n += *p == ',';
    return n;
}

static void default_shard_bin(char *out, size_t cap) {
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        snprintf(out, cap, "falconlite-shard");
        return;
    }
    self[n] = 0;
    char *slash = strrchr(self, '/');
    if (slash) slash[1] = 0;
    if (strlen(self) + sizeof "falconlite-shard" > cap) {
        snprintf(out, cap, "falconlite-shard");
        return;
    }
    snprintf(out, cap, "%.*sfalconlite-shard", (int)(cap - sizeof "falconlite-shard"), self);
}

fl_code router_config_parse(int argc, char **argv, router_config *c, bool *help, fl_error *err) {
    memset(c, 0, sizeof *c);
    *help = false;
    c->max_input_length = 1024;
    c->max_total_tokens = 2048;
    c->max_batch_prefill_tokens = 4096;
    c->max_batch_total_tokens = 16000;
    c->max_concurrent_requests = 128;
    c->waiting_served_ratio = 1.2f;
    c->max_waiting_tokens = 20;
    c->max_best_of = 2;
    c->max_stop_sequences = 4;
    c->validation_workers = 2;
    c->port = 3000;
    snprintf(c->hostname, sizeof c->hostname, "127.0.0.1");
    c->grpc_port = 50051;
    snprintf(c->backend, sizeof c->backend, "auto");
    c->shutdown_grace_ms = 90000;
    c->prefix_cache = 1;
    c->shard_step_timeout_ms = 300000;
    c->prefill_chunk_tokens = 1024;
    c->rope = ROPE_OVERRIDES_NONE;
    default_shard_bin(c->shard_bin, sizeof c->shard_bin);
    c->http_header_timeout = 10;
    c->http_body_timeout = 30;

    opt_spec tgi[N_TGI], fl[N_FALCONLITE], harden[N_HARDEN], rope[ROPE_OPTS_N];
    router_opts_bind(c, tgi, fl, harden, rope);
    opt_spec http[N_HTTP];
    http_opts_bind(c, http);
    opt_spec gptq[QUANT_OPTS_N];
    quant_opts_bind(&c->gptq, gptq);
    const opt_group groups[] = {
        OPT_GROUP("TGI 0.9.2 launcher flags (each also read from its upper-case env var)", tgi),
        OPT_GROUP("falconlite", fl),
        OPT_GROUP("hardening (SECURITY.md)", harden),
        OPT_GROUP("rotary scaling (DNTK_ALPHA_SCALER / PRETRAINED_MAX_TOKENS in the environment "
                  "select falconlite)",
                  rope),
        OPT_GROUP("HTTP edge", http),
        OPT_GROUP("GPTQ (GPTQ_BITS / GPTQ_GROUPSIZE in the environment fill what the flags leave "
                  "open)",
                  gptq),
        OPT_GROUP(NULL, ignored),
    };
    enum { N_GROUPS = sizeof groups / sizeof groups[0] };
    fl_code rc = opts_parse(groups, N_GROUPS, argc - 1, argv + 1, OPTS_ENV, help, err);
    if (rc) return rc;
    if (*help) {
        printf("usage: %s --model-id DIR [options]\n", argv[0]);
        opts_usage(stdout, groups, N_GROUPS - 1, OPTS_ENV);
        return FL_OK;
    }
    // FalconLite's start script selects its rotary scaling through the environment; the shards get
    // it as explicit flags.
    if ((rc = rope_overrides_add_env(&c->rope, err))) return rc;
    // TGI's launcher reads GPTQ_BITS / GPTQ_GROUPSIZE; the shards get them as --gptq-* flags.
    if ((rc = quant_overrides_add_env(&c->gptq, err))) return rc;
    if (!c->num_shard) c->num_shard = !strcmp(c->backend, "cpu") ? 1 : visible_devices();
    if (!c->model_id[0])
        return fl_error_set(err, FL_EINVAL, "--model-id is required (a model directory)");
    // TGI's argument rules (router main.rs and launcher).
    if (c->max_input_length >= c->max_total_tokens)
        return fl_error_set(err, FL_EINVAL, "`max_input_length` must be < `max_total_tokens`");
    if (c->max_batch_prefill_tokens < c->max_input_length)
        return fl_error_set(
            err, FL_EINVAL,
            "`max_batch_prefill_tokens` must be >= `max_input_length`. Given: %u and %u",
            c->max_batch_prefill_tokens, c->max_input_length);
    if (c->max_batch_prefill_tokens > c->max_batch_total_tokens)
        return fl_error_set(
            err, FL_EINVAL,
            "`max_batch_prefill_tokens` must be <= `max_batch_total_tokens`. Given: %u and %u",
            c->max_batch_prefill_tokens, c->max_batch_total_tokens);
    if (c->max_total_tokens > c->max_batch_total_tokens)
        return fl_error_set(
            err, FL_EINVAL,
            "`max_total_tokens` must be <= `max_batch_total_tokens`. Given: %u and %u",
            c->max_total_tokens, c->max_batch_total_tokens);
    if (!c->tls_cert[0] != !c->tls_key[0])
        return fl_error_set(err, FL_EINVAL, "--tls-cert and --tls-key go together");
    return FL_OK;
}

// One "--flag" and its value into args[n] (the value's text at buf + used), for the shard
// argument writers below.
#define SHARD_ARG(flag, ...)                                                                       \
    do {                                                                                           \
        args[n++] = flag;                                                                          \
        args[n++] = buf + used;                                                                    \
        used += (size_t)snprintf(buf + used, cap - used, __VA_ARGS__) + 1;                         \
    } while (0)

int router_config_rope_args(const router_config *c, char *buf, size_t cap, char **args) {
    const rope_overrides *r = &c->rope;
    int n = 0;
    size_t used = 0;
    // One "--flag" and its value per given field; floats with 9 digits round-trip exactly.
    if (r->mode >= 0) SHARD_ARG("--rope-scaling", "%s", rope_mode_name((rope_mode)r->mode));
    if (!isnan(r->alpha)) SHARD_ARG("--rope-alpha", "%.9g", r->alpha);
    if (r->threshold) SHARD_ARG("--rope-threshold", "%d", r->threshold);
    if (!isnan(r->factor)) SHARD_ARG("--rope-factor", "%.9g", r->factor);
    return n;
}

// ---- GPTQ overrides to the shards (GPTQ_BITS / GPTQ_GROUPSIZE read here, once)
// -------------------
int router_config_quant_args(const router_config *c, char *buf, size_t cap, char **args) {
    int n = 0;
    size_t used = 0;
    if (c->gptq.bits) SHARD_ARG("--gptq-bits", "%d", c->gptq.bits);
    if (c->gptq.group_size) SHARD_ARG("--gptq-groupsize", "%d", c->gptq.group_size);
    return n;
}
#undef SHARD_ARG
