// falconlite-shard: one tensor-parallel rank of the model behind a gRPC server on
// unix:<uds-path>-<rank>. Started by the router (one per rank); SIGTERM stops it cleanly.
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <unistd.h>

#include "common/log.h"
#include "shard/service.h"

#define STOP_TIMEOUT_S 30

static void usage(FILE *f) {
    fprintf(f,
            "usage: falconlite-shard --model DIR --uds-path PATH [--rank R --world W]\n"
            "         [--backend cpu|cuda|auto] [--threads N] [--comm-id ID] [--comm-dir DIR]\n"
            "         [--rope-scaling none|falconlite|dynamic|linear] [--rope-alpha A]\n"
            "         [--rope-threshold T] [--rope-factor F]\n"
            "Serves rank R of W on unix:PATH-R. --comm-id names the ranks' rendezvous (required\n"
            "when W > 1, unique per launch). --rope-* override config.json and the environment.\n");
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

// The rotary override from --rope-* flags on top of config.json (+ environment).
// 0: no flag given; 1: *out filled; -1: error logged.
static int rope_from_flags(const char *model_dir, const rope_overrides *f, rope_config *out) {
    if (!rope_overrides_given(f)) return 0;
    model_config cfg;
    fl_error err = {0};
    if (model_config_load(model_dir, &cfg, &err) != FL_OK ||
        rope_config_apply_overrides(&cfg, f, out, &err) != FL_OK) {
        log_error("%s", err.msg);
        return -1;
    }
    return 1;
}

int main(int argc, char **argv) {
    shard_options o = {.rank = 0, .world = 1, .backend = "cpu"};
    rope_overrides rf = ROPE_OVERRIDES_NONE;
    enum {
        O_ROPE_SCALING = 1000,
        O_ROPE_ALPHA,
        O_ROPE_THRESHOLD,
        O_ROPE_FACTOR,
        O_COMM_ID,
        O_COMM_DIR
    };
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'},
        {"uds-path", required_argument, 0, 'u'},
        {"rank", required_argument, 0, 'r'},
        {"world", required_argument, 0, 'w'},
        {"backend", required_argument, 0, 'b'},
        {"threads", required_argument, 0, 't'},
        {"comm-id", required_argument, 0, O_COMM_ID},
        {"comm-dir", required_argument, 0, O_COMM_DIR},
        {"rope-scaling", required_argument, 0, O_ROPE_SCALING},
        {"rope-alpha", required_argument, 0, O_ROPE_ALPHA},
        {"rope-threshold", required_argument, 0, O_ROPE_THRESHOLD},
        {"rope-factor", required_argument, 0, O_ROPE_FACTOR},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm':
            o.model_dir = optarg;
            break;
        case 'u':
            o.uds_path = optarg;
            break;
        case 'r':
            o.rank = atoi(optarg);
            break;
        case 'w':
            o.world = atoi(optarg);
            break;
        case 'b':
            o.backend = optarg;
            break;
        case 't':
            o.threads = atoi(optarg);
            break;
        case O_COMM_ID:
            o.comm_id = optarg;
            break;
        case O_COMM_DIR:
            o.comm_dir = optarg;
            break;
        case O_ROPE_SCALING:
            rf.mode = optarg;
            break;
        case O_ROPE_ALPHA:
            rf.alpha = strtof(optarg, NULL);
            break;
        case O_ROPE_THRESHOLD:
            rf.threshold = atoi(optarg);
            break;
        case O_ROPE_FACTOR:
            rf.factor = strtof(optarg, NULL);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!o.model_dir || !o.uds_path || o.world < 1 || o.rank < 0 || o.rank >= o.world) {
        usage(stderr);
        return 2;
    }
    char component[64];
    snprintf(component, sizeof component, "shard rank=%d", o.rank);
    log_set_component(component);
    log_set_level_from_env();

    rope_config rope;
    int rope_rc = rope_from_flags(o.model_dir, &rf, &rope);
    if (rope_rc < 0) return 2;
    if (rope_rc == 1) o.rope_override = &rope;

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
    fl_error err = {0};
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
