// Device facts and a copy-bandwidth probe for benchmarks (tools/cmd_bench.c). Plain C: callers
// need no CUDA headers. Only linked when FALCONLITE_HAVE_CUDA is defined.
#pragma once
#include <stddef.h>

typedef struct cuda_device_info {
    char name[256];
    int cc_major, cc_minor;
    int n_sm;
    size_t mem_total, mem_free; // bytes
    int clock_khz, mem_clock_khz, mem_bus_bits;
} cuda_device_info;

// 0 on success, -1 when the device cannot be queried (the message is written to err_msg).
int cuda_device_info_get(int device, cuda_device_info *out, char *err_msg, size_t err_len);

// Measured device-to-device cudaMemcpy bandwidth of a `bytes` buffer, best of `reps`, counting
// bytes read + bytes written (the copy ceiling a bandwidth-bound kernel can approach).
// Returns bytes/s, or a negative value on failure.
double cuda_copy_bandwidth(int device, size_t bytes, int reps);
