// Backend selection by name.
#include <string.h>

#include "kernels/backend.h"

#ifndef FALCONLITE_HAVE_CUDA
backend *backend_cuda_create(int device, fl_error *err) {
    fl_error_set(err, FL_EUNSUPPORTED, "falconlite was built without CUDA");
    return NULL;
}
#endif

backend *backend_create(const char *name, fl_error *err) {
    if (!name || strcmp(name, "cpu") == 0) return backend_cpu_create(0, err);
    if (strcmp(name, "cuda") == 0) return backend_cuda_create(0, err);
    if (strcmp(name, "auto") == 0) {
        // No usable GPU (or no CUDA build) is the normal case for auto: fall back quietly.
        backend *b = backend_cuda_create(0, NULL);
        return b ? b : backend_cpu_create(0, err);
    }
    fl_error_set(err, FL_EINVAL, "unknown backend '%s' (cpu, cuda or auto)", name);
    return NULL;
}
