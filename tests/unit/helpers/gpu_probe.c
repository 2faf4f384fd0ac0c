// GPU probe for the GPU-only test entries (gpu_probe.h). Built into the test helper library and,
// with GPU_PROBE_MAIN, as the `gpu_probe [MIN_GPUS]` executable the Python integration tests ask:
// it prints the device count (exit 0) or the reason to skip (exit 77).
#include "tests/unit/helpers/gpu_probe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef FALCONLITE_HAVE_CUDA
#include <cuda_runtime.h>
#endif

// The probe itself, run in the child: the device count, or -1 with the reason in why.
static int probe_devices(char *why, size_t len) {
#ifndef FALCONLITE_HAVE_CUDA
    snprintf(why, len, "CUDA backend not built (configure with -DFALCONLITE_CUDA=ON)");
    return -1;
#else
    // Without a driver, cudaGetDeviceCount says "driver version is insufficient": name the cause.
    int driver = 0;
    if (cudaDriverGetVersion(&driver) == cudaSuccess && driver == 0) {
        snprintf(why, len, "no CUDA device (no NVIDIA driver installed: libcuda not found)");
        return -1;
    }
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        snprintf(why, len, "no CUDA device (cudaGetDeviceCount: %s)", cudaGetErrorString(e));
        return -1;
    }
    return n;
#endif
}

int gpu_probe_count(int min_gpus, char *why, size_t len) {
    char msg[256] = "";
    int n = -1, fds[2];
    if (pipe(fds) != 0) {
        snprintf(why, len, "gpu probe: pipe failed");
        return 0;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) { // child: "<count> <reason>" into the pipe
        close(fds[0]);
        n = probe_devices(msg, sizeof msg);
        dprintf(fds[1], "%d %s", n, msg);
        _exit(0);
    }
    close(fds[1]);
    char buf[300] = "";
    ssize_t got = pid > 0 ? read(fds[0], buf, sizeof buf - 1) : -1;
    close(fds[0]);
    if (pid > 0) waitpid(pid, NULL, 0);
    int off = 0;
    if (got <= 0 || sscanf(buf, "%d %n", &n, &off) < 1) {
        snprintf(why, len, "gpu probe: no answer from the probe process");
        return 0;
    }
    if (n < 0) {
        snprintf(why, len, "%s", buf + off);
        return 0;
    }
    if (n < min_gpus) snprintf(why, len, "needs %d CUDA devices, found %d", min_gpus, n);
    return n;
}

void gpu_probe_require(const char *what, int min_gpus) {
    char why[256] = "";
    if (gpu_probe_count(min_gpus, why, sizeof why) >= min_gpus) return;
    printf("skip: %s: %s\n", what, why);
    exit(GPU_PROBE_SKIP);
}

#ifdef GPU_PROBE_MAIN
int main(int argc, char **argv) {
    int min_gpus = argc > 1 ? atoi(argv[1]) : 1;
    char why[256] = "";
    int n = gpu_probe_count(min_gpus, why, sizeof why);
    if (n < min_gpus) {
        printf("%s\n", why);
        return GPU_PROBE_SKIP;
    }
    printf("%d\n", n);
    return 0;
}
#endif
