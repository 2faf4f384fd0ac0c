// Device facts and the copy-bandwidth probe behind `falconlite bench` (see cuda_info.h).
#include <stdio.h>

#include <cuda_runtime.h>

extern "C" {
#include "kernels/cuda/cuda_info.h"
}

extern "C" int cuda_device_info_get(int device, cuda_device_info *out, char *err_msg,
                                    size_t err_len) {
    cudaDeviceProp p;
    cudaError_t e = cudaGetDeviceProperties(&p, device);
    if (e == cudaSuccess) e = cudaSetDevice(device);
    if (e == cudaSuccess) e = cudaMemGetInfo(&out->mem_free, &out->mem_total);
    if (e != cudaSuccess) {
        snprintf(err_msg, err_len, "kernels/cuda: device %d: %s", device, cudaGetErrorString(e));
        return -1;
    }
    snprintf(out->name, sizeof out->name, "%s", p.name);
    out->cc_major = p.major;
    out->cc_minor = p.minor;
    out->n_sm = p.multiProcessorCount;
    int v = 0;
    out->clock_khz = cudaDeviceGetAttribute(&v, cudaDevAttrClockRate, device) == cudaSuccess ? v : 0;
    out->mem_clock_khz =
        cudaDeviceGetAttribute(&v, cudaDevAttrMemoryClockRate, device) == cudaSuccess ? v : 0;
    out->mem_bus_bits =
        cudaDeviceGetAttribute(&v, cudaDevAttrGlobalMemoryBusWidth, device) == cudaSuccess ? v : 0;
    return 0;
}

extern "C" double cuda_copy_bandwidth(int device, size_t bytes, int reps) {
    void *a = NULL, *b = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    double best = -1.0;
    if (cudaSetDevice(device) != cudaSuccess || cudaMalloc(&a, bytes) != cudaSuccess ||
        cudaMalloc(&b, bytes) != cudaSuccess || cudaEventCreate(&e0) != cudaSuccess ||
        cudaEventCreate(&e1) != cudaSuccess)
        goto done;
    // Non-zero contents: the copy engine must not see a trivially compressible buffer.
    if (cudaMemset(a, 0x5a, bytes) != cudaSuccess || cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice) != cudaSuccess)
        goto done;
    for (int r = 0; r < reps; r++) {
        float ms = 0.0f;
        cudaEventRecord(e0);
        cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
        cudaEventRecord(e1);
        if (cudaEventSynchronize(e1) != cudaSuccess || cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess)
            goto done;
        double bw = 2.0 * (double)bytes / (ms * 1e-3);
        if (bw > best) best = bw;
    }
done:
    cudaGetLastError();
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    cudaFree(a);
    cudaFree(b);
    return best;
}
