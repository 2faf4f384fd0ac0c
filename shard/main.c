// falconlite-shard: one tensor-parallel rank of the model behind a gRPC server on
// unix:<uds-path>-<rank>. Started by the router (one per rank); SIGTERM stops it cleanly.
#include <errno.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <unistd.h>

#include "common/log.h"
#include "common/options.h"
#include "common/rope.h"
#include "shard/service.h"

#define STOP_TIMEOUT_S 30

static void usage(FILE *f, const opt_group *groups, int n_groups) {
    fprintf(f,
            "usage: falconlite-shard --model DIR --uds-path PATH [--rank R --world W] [options]\n"
            "Serves rank R of W on unix:PATH-R. --comm-id names the ranks' rendezvous (required\n"
            "when W > 1, unique per launch). --rope-* override config.json's rotary scaling;\n"
            "--gptq-* fill the GPTQ settings the checkpoint does not give.\n");
    opts_usage(f, groups, n_groups, 0);
}

// The socket's directory is created private (0700) when missing; an existing one that others can
// enter is only warned about, since the operator chose it.
static int socket_dir_prepare(const char *uds_path) {
    char *copy = strdup(uds_path);
    if (!copy) return -1;
    const char *dir = dirname(copy);
    struct stat st;
    int rc = 0;
    if (stat(dir, &st) != 0) {
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            log_error("cannot create socket directory %s: %s", dir, strerror(errno));
            rc = -1;
        }
    } else if (st.st_mode & 0077) {
        log_warn("socket directory %s is accessible to other users (mode %o)", dir,
                 (unsigned)(st.st_mode & 0777));
    }
    free(copy);
    return rc;
}

// One GPU per rank, pinned with CUDA_VISIBLE_DEVICES before CUDA starts: the rank's GPU is then
// device 0 for every thread of the process, the gRPC server thread that runs the forward
// included (a thread that never called cudaSetDevice works on device 0). Rank r takes the r-th
// entry of an existing CUDA_VISIBLE_DEVICES list, else GPU r.
static void cuda_device_pin(int rank) {
    const char *vis = getenv("CUDA_VISIBLE_DEVICES");
    char pick[128];
    snprintf(pick, sizeof pick, "%d", rank);
    if (vis && *vis) {
        const char *p = vis;
        for (int i = 0; i < rank && p; i++) {
            p = strchr(p, ',');
            if (p) p++;
        }
        if (!p) return; // fewer GPUs listed than ranks: leave it to the backend to fail clearly
        size_t n = strcspn(p, ",");
        snprintf(pick, sizeof pick, "%.*s", (int)(n < sizeof pick ? n : sizeof pick - 1), p);
    }
    setenv("CUDA_VISIBLE_DEVICES", pick, 1);
}

int main(int argc, char **argv) {
    shard_options o = {.rank = 0, .world = 1, .backend = "cpu", .prefix_cache = 1};
    rope_overrides rope = ROPE_OVERRIDES_NONE;
    static const char *const backends[] = {"cpu", "cuda", "auto", NULL};
    static const char *const off_on[] = {"off", "on", NULL};
    static const char *const stream_modes[] = {"auto", "on", "off", NULL}; // comm_stream order
    const opt_spec shard_opts[] = {
        OPT("model", OPT_STRING, &o.model_dir, "model directory"),
        OPT("uds-path", OPT_STRING, &o.uds_path, "socket path prefix (the socket is PATH-RANK)"),
        OPT("rank", OPT_INT, &o.rank, "tensor-parallel rank", OPT_MIN(0)),
        OPT("world", OPT_INT, &o.world, "tensor-parallel world size", OPT_MIN(1)),
        OPT("backend", OPT_STRING, &o.backend, "compute backend", .choices = backends),
        OPT("threads", OPT_INT, &o.threads, "CPU backend workers (0: all cores)", OPT_MIN(0)),
        OPT("comm-id", OPT_STRING, &o.comm_id, "rendezvous name shared by the ranks"),
        OPT("comm-dir", OPT_STRING, &o.comm_dir, "rendezvous directory (default /dev/shm)"),
        OPT("nccl-stream", OPT_ENUM, &o.nccl_stream,
            "NCCL all-reduces on the compute stream, in decode graphs (auto: on)",
            .choices = stream_modes),
        OPT("prefix-cache", OPT_ENUM, &o.prefix_cache, "reuse the KV of prompt prefixes seen before",
            .choices = off_on),
    };
    opt_spec rope_opts[ROPE_OPTS_N];
    rope_opts_bind(&rope, rope_opts);
    // GPTQ overrides: flags only (the router passes GPTQ_BITS / GPTQ_GROUPSIZE as these).
    opt_spec quant_opts[QUANT_OPTS_N];
    quant_opts_bind(&o.gptq, quant_opts);
    const opt_group groups[] = {
        OPT_GROUP(NULL, shard_opts), OPT_GROUP("rotary scaling", rope_opts),
        OPT_GROUP("GPTQ (what quantize_config.json does not give)", quant_opts)};
    enum { N_GROUPS = sizeof groups / sizeof groups[0] };
    bool help;
    fl_error err = {0};
    if (opts_parse(groups, N_GROUPS, argc - 1, argv + 1, 0, &help, &err) != FL_OK) {
        fprintf(stderr, "falconlite-shard: error: %s\n", err.msg);
        usage(stderr, groups, N_GROUPS);
        return 2;
    }
    if (help) {
        usage(stdout, groups, N_GROUPS);
        return 0;
    }
    if (!o.model_dir || !o.uds_path || o.rank >= o.world) {
        usage(stderr, groups, N_GROUPS);
        return 2;
    }
    if (rope_overrides_given(&rope)) o.rope_override = &rope;
    char component[64];
    snprintf(component, sizeof component, "shard rank=%d", o.rank);
    log_set_component(component);
    log_set_level_from_env();

    if (strcmp(o.backend, "cpu") != 0) cuda_device_pin(o.rank);
    // NVLink multicast stays off in NCCL (it can take shared GPUs out of service); an operator's
    // explicit setting wins.
    setenv("NCCL_NVLS_ENABLE", "0", 0);
    // Signals go to sigwait below, never to the server or backend threads.
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    umask(0077); // the socket is created 0600

    if (socket_dir_prepare(o.uds_path) != 0) return 1;
    shard_service *s = NULL;
    if (shard_service_create(&o, &s, &err) != FL_OK || shard_service_start(s, &err) != FL_OK) {
        log_error("%s", err.msg);
        shard_service_free(s);
        return 1;
    }
    int sig = 0;
    sigwait(&sigs, &sig);
    // A step stuck in the backend or a collective must not keep the process alive: SIGALRM's
    // default action ends it if the orderly stop takes longer than this.
    alarm(STOP_TIMEOUT_S);
    int failed = shard_service_failed(s);
    log_info("stopping (%s)", failed ? "backend failure" : sig == SIGINT ? "SIGINT" : "SIGTERM");
    shard_service_free(s);
    return failed ? 1 : 0;
}
