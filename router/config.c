#include "router/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    O_MODEL = 1000,
    O_NUM_SHARD,
    O_QUANTIZE,
    O_MAX_INPUT,
    O_MAX_TOTAL,
    O_PREFILL,
    O_BATCH_TOTAL,
    O_CONCURRENT,
    O_RATIO,
    O_WAITING,
    O_BEST_OF,
    O_STOP,
    O_VALIDATION,
    O_PORT,
    O_HOSTNAME,
    O_UDS,
    O_GRPC_PORT,
    O_BACKEND,
    O_THREADS,
    O_SHARD_BIN,
    O_ROPE_SCALING,
    O_ROPE_ALPHA,
    O_ROPE_THRESHOLD,
    O_ROPE_FACTOR,
    O_GRACE,
    O_IGNORED_FLAG,
    O_IGNORED_VALUE,
    O_HELP,
};

typedef struct flag {
    const char *name;
    const char *env; // NULL: no environment variable
    int id;
    int has_arg;
} flag;

static const flag flags[] = {
    {"model-id", "MODEL_ID", O_MODEL, 1},
    {"model", NULL, O_MODEL, 1},
    {"num-shard", "NUM_SHARD", O_NUM_SHARD, 1},
    {"quantize", "QUANTIZE", O_QUANTIZE, 1},
    {"max-input-length", "MAX_INPUT_LENGTH", O_MAX_INPUT, 1},
    {"max-total-tokens", "MAX_TOTAL_TOKENS", O_MAX_TOTAL, 1},
    {"max-batch-prefill-tokens", "MAX_BATCH_PREFILL_TOKENS", O_PREFILL, 1},
    {"max-batch-total-tokens", "MAX_BATCH_TOTAL_TOKENS", O_BATCH_TOTAL, 1},
    {"max-concurrent-requests", "MAX_CONCURRENT_REQUESTS", O_CONCURRENT, 1},
    {"waiting-served-ratio", "WAITING_SERVED_RATIO", O_RATIO, 1},
    {"max-waiting-tokens", "MAX_WAITING_TOKENS", O_WAITING, 1},
    {"max-best-of", "MAX_BEST_OF", O_BEST_OF, 1},
    {"max-stop-sequences", "MAX_STOP_SEQUENCES", O_STOP, 1},
    {"validation-workers", "VALIDATION_WORKERS", O_VALIDATION, 1},
    {"port", "PORT", O_PORT, 1},
    {"hostname", "HOSTNAME", O_HOSTNAME, 1},
    {"shard-uds-path", "SHARD_UDS_PATH", O_UDS, 1},
    {"grpc-port", "GRPC_PORT", O_GRPC_PORT, 1},
    {"backend", "BACKEND", O_BACKEND, 1},
    {"threads", "THREADS", O_THREADS, 1},
    {"shard-bin", "FALCONLITE_SHARD_BIN", O_SHARD_BIN, 1},
    {"rope-scaling", "ROPE_SCALING", O_ROPE_SCALING, 1},
    {"rope-alpha", NULL, O_ROPE_ALPHA, 1},
    {"rope-threshold", NULL, O_ROPE_THRESHOLD, 1},
    {"rope-factor", "ROPE_FACTOR", O_ROPE_FACTOR, 1},
    {"shutdown-grace-ms", NULL, O_GRACE, 1},
    // TGI launcher flags with no effect here, accepted so existing scripts run unchanged.
    {"trust-remote-code", NULL, O_IGNORED_FLAG, 0},
    {"sharded", NULL, O_IGNORED_VALUE, 1},
    {"dtype", NULL, O_IGNORED_VALUE, 1},
    {"revision", NULL, O_IGNORED_VALUE, 1},
    {"json-output", NULL, O_IGNORED_FLAG, 0},
    {"help", NULL, O_HELP, 0},
};
enum { N_FLAGS = sizeof flags / sizeof flags[0] };

void router_config_usage(const char *prog) {
    printf("usage: %s --model-id DIR [options]\n"
           "TGI 0.9.2 launcher flags (each also read from its upper-case env var):\n"
           "  --model-id DIR (--model)            --num-shard N (1)\n"
           "  --quantize gptq                      --max-input-length N (1024)\n"
           "  --max-total-tokens N (2048)          --max-batch-prefill-tokens N (4096)\n"
           "  --max-batch-total-tokens N (16000)   --max-concurrent-requests N (128)\n"
           "  --waiting-served-ratio F (1.2)       --max-waiting-tokens N (20)\n"
           "  --max-best-of N (2)                  --max-stop-sequences N (4)\n"
           "  --port N (3000)  --hostname H (0.0.0.0)  --shard-uds-path P "
           "(/tmp/text-generation-server)\n"
           "falconlite:\n"
           "  --grpc-port N (50051; 0 = off)       --backend cpu|cuda|auto (auto)\n"
           "  --threads N (per shard)              --shard-bin PATH (beside this binary)\n"
           "  --rope-scaling none|falconlite|dynamic|linear --rope-alpha A --rope-threshold T\n"
           "  --rope-factor F                      --shutdown-grace-ms N (90000)\n",
           prog);
}

static fl_code parse_u32(const char *name, const char *v, uint32_t lo, uint32_t *out,
                         fl_error *err) {
    char *end = NULL;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || !end || *end || end == v || x > UINT32_MAX || x < lo || v[0] == '-')
        return fl_error_set(err, FL_EINVAL, "--%s: expected an integer >= %u, got '%s'", name, lo,
                            v);
    *out = (uint32_t)x;
    return FL_OK;
}

static fl_code copy_str(const char *name, const char *v, char *dst, size_t cap, fl_error *err) {
    if (strlen(v) >= cap) return fl_error_set(err, FL_EINVAL, "--%s: value too long", name);
    memcpy(dst, v, strlen(v) + 1);
    return FL_OK;
}

static fl_code apply(router_config *c, const flag *f, const char *v, bool from_env, fl_error *err) {
    uint32_t u = 0;
    fl_code rc = FL_OK;
    switch (f->id) {
    case O_MODEL:
        return copy_str(f->name, v, c->model_id, sizeof c->model_id, err);
    case O_NUM_SHARD:
        if ((rc = parse_u32(f->name, v, 1, &u, err)) == FL_OK) c->num_shard = (int)u;
        return rc;
    case O_QUANTIZE:
        if (strcmp(v, "gptq") && strcmp(v, "bitsandbytes"))
            return fl_error_set(err, FL_EINVAL, "--quantize: expected gptq, got '%s'", v);
        if (!strcmp(v, "bitsandbytes"))
            return fl_error_set(err, FL_EUNSUPPORTED, "--quantize bitsandbytes is not supported");
        return copy_str(f->name, v, c->quantize, sizeof c->quantize, err);
    case O_MAX_INPUT:
        return parse_u32(f->name, v, 1, &c->max_input_length, err);
    case O_MAX_TOTAL:
        return parse_u32(f->name, v, 1, &c->max_total_tokens, err);
    case O_PREFILL:
        return parse_u32(f->name, v, 1, &c->max_batch_prefill_tokens, err);
    case O_BATCH_TOTAL:
        return parse_u32(f->name, v, 1, &c->max_batch_total_tokens, err);
    case O_CONCURRENT:
        return parse_u32(f->name, v, 1, &c->max_concurrent_requests, err);
    case O_RATIO: {
        char *end = NULL;
        double x = strtod(v, &end);
        if (!end || *end || end == v || !(x >= 0))
            return fl_error_set(err, FL_EINVAL, "--%s: expected a number >= 0, got '%s'", f->name,
                                v);
        c->waiting_served_ratio = (float)x;
        return FL_OK;
    }
    case O_WAITING:
        return parse_u32(f->name, v, 0, &c->max_waiting_tokens, err);
    case O_BEST_OF:
        return parse_u32(f->name, v, 1, &c->max_best_of, err);
    case O_STOP:
        return parse_u32(f->name, v, 0, &c->max_stop_sequences, err);
    case O_VALIDATION:
        return parse_u32(f->name, v, 1, &c->validation_workers, err);
    case O_PORT:
        if ((rc = parse_u32(f->name, v, 0, &u, err)) == FL_OK && u > 65535)
            rc = fl_error_set(err, FL_EINVAL, "--port: %u is not a port", u);
        if (rc == FL_OK) c->port = (int)u;
        return rc;
    case O_GRPC_PORT:
        if ((rc = parse_u32(f->name, v, 0, &u, err)) == FL_OK && u > 65535)
            rc = fl_error_set(err, FL_EINVAL, "--grpc-port: %u is not a port", u);
        if (rc == FL_OK) c->grpc_port = (int)u;
        return rc;
    case O_HOSTNAME: {
        // Shells and containers export HOSTNAME as the machine's name: from the environment only
        // an address literal counts.
        unsigned char buf[16];
        if (from_env && inet_pton(AF_INET, v, buf) != 1 && inet_pton(AF_INET6, v, buf) != 1)
            return FL_OK;
        return copy_str(f->name, v, c->hostname, sizeof c->hostname, err);
    }
    case O_UDS:
        return copy_str(f->name, v, c->shard_uds_path, sizeof c->shard_uds_path, err);
    case O_BACKEND:
        if (strcmp(v, "cpu") && strcmp(v, "cuda") && strcmp(v, "auto"))
            return fl_error_set(err, FL_EINVAL, "--backend: expected cpu, cuda or auto, got '%s'",
                                v);
        return copy_str(f->name, v, c->backend, sizeof c->backend, err);
    case O_THREADS:
        if ((rc = parse_u32(f->name, v, 0, &u, err)) == FL_OK) c->threads = (int)u;
        return rc;
    case O_SHARD_BIN:
        return copy_str(f->name, v, c->shard_bin, sizeof c->shard_bin, err);
    case O_ROPE_SCALING:
        return copy_str(f->name, v, c->rope_scaling, sizeof c->rope_scaling, err);
    case O_ROPE_ALPHA:
        return copy_str(f->name, v, c->rope_alpha, sizeof c->rope_alpha, err);
    case O_ROPE_THRESHOLD:
        return copy_str(f->name, v, c->rope_threshold, sizeof c->rope_threshold, err);
    case O_ROPE_FACTOR:
        return copy_str(f->name, v, c->rope_factor, sizeof c->rope_factor, err);
    case O_GRACE:
        if ((rc = parse_u32(f->name, v, 0, &u, err)) == FL_OK) c->shutdown_grace_ms = (int)u;
        return rc;
    default:
        return FL_OK;
    }
}

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
    snprintf(c->hostname, sizeof c->hostname, "0.0.0.0");
    snprintf(c->shard_uds_path, sizeof c->shard_uds_path, "/tmp/text-generation-server");
    c->grpc_port = 50051;
    snprintf(c->backend, sizeof c->backend, "auto");
    c->shutdown_grace_ms = 90000;
    default_shard_bin(c->shard_bin, sizeof c->shard_bin);

    fl_code rc;
    for (int i = 0; i < N_FLAGS; i++) {
        const char *v = flags[i].env ? getenv(flags[i].env) : NULL;
        if (v && *v && (rc = apply(c, &flags[i], v, true, err)) != FL_OK)
            return fl_error_wrap(err, "environment %s", flags[i].env);
    }
    struct option longopts[N_FLAGS + 1];
    for (int i = 0; i < N_FLAGS; i++)
        longopts[i] = (struct option){
            flags[i].name, flags[i].has_arg ? required_argument : no_argument, NULL, 1000 + i};
    longopts[N_FLAGS] = (struct option){0, 0, 0, 0};
    bool num_shard_given = getenv("NUM_SHARD") != NULL;
    optind = 0; // glibc: 0 also resets getopt's internal state (the tests parse several times)
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "p:", longopts, NULL)) != -1) {
        if (ch == 'p') { // -p is --port, as in TGI
            for (int i = 0; i < N_FLAGS; i++)
                if (flags[i].id == O_PORT) ch = 1000 + i;
        }
        if (ch == '?' || ch < 1000 || ch >= 1000 + N_FLAGS)
            return fl_error_set(err, FL_EINVAL, "unknown or incomplete option '%s'",
                                argv[optind - 1]);
        const flag *f = &flags[ch - 1000];
        if (f->id == O_HELP) {
            router_config_usage(argv[0]);
            *help = true;
            return FL_OK;
        }
        if (f->id == O_NUM_SHARD) num_shard_given = true;
        if ((rc = apply(c, f, optarg ? optarg : "", false, err)) != FL_OK) return rc;
    }
    if (optind < argc)
        return fl_error_set(err, FL_EINVAL, "unexpected argument '%s'", argv[optind]);
    if (!num_shard_given) c->num_shard = !strcmp(c->backend, "cpu") ? 1 : visible_devices();
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
    return FL_OK;
}
