// Whether the GPU-only test cases can run here. Those cases are ctest entries of their own (the
// same binary with --gpu, see tests/CMakeLists.txt) that exit 77 (ctest: skipped) with a one-line
// reason when CUDA is not built or no device is present.
#pragma once
#include <stddef.h>

#define GPU_PROBE_SKIP 77 // the exit code ctest counts as skipped (SKIP_RETURN_CODE)

// The number of usable CUDA devices; when it is below min_gpus, also the reason in why[len]
// ("CUDA backend not built", "no CUDA device (cudaGetDeviceCount: ...)", ...). The probe runs in
// a child process, so the caller's process never initialises CUDA (it may fork ranks afterwards).
int gpu_probe_count(int min_gpus, char *why, size_t len);

// Exits GPU_PROBE_SKIP after printing "skip: <what>: <reason>" when fewer than min_gpus CUDA
// devices are usable; returns otherwise.
void gpu_probe_require(const char *what, int min_gpus);
