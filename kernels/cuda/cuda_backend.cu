// The CUDA backend's wiring: context creation on a device, one non-blocking stream for every op,
// cuBLAS, first-error recording, memory and copies, scratch buffers, and decode-step CUDA graphs.
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/cuda/cuda_backend.cuh"

#define CUBLAS_WORKSPACE_BYTES (32u << 20)

static_assert(offsetof(bk_matrix, kind) == offsetof(bk_matrix_header, kind) &&
                  offsetof(bk_matrix, n_in) == offsetof(bk_matrix_header, n_in) &&
                  offsetof(bk_matrix, n_out) == offsetof(bk_matrix_header, n_out),
              "bk_matrix must begin with bk_matrix_header's members");

void cuda_record(cuda_ctx *c, fl_code code, const char *fmt, ...) {
    if (c->err_code != FL_OK) return;
    c->err_code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err_msg, sizeof c->err_msg, fmt, ap);
    va_end(ap);
}

int cuda_check(cuda_ctx *c, cudaError_t e, const char *what) {
    if (e == cudaSuccess) return 0;
    cuda_record(c, e == cudaErrorMemoryAllocation ? FL_ENOMEM : FL_EBACKEND,
                "kernels/cuda: %s: %s", what, cudaGetErrorString(e));
    return -1;
}

int cublas_check(cuda_ctx *c, cublasStatus_t s, const char *what) {
    if (s == CUBLAS_STATUS_SUCCESS) return 0;
    cuda_record(c, FL_EBACKEND, "kernels/cuda: %s: cuBLAS %s", what, cublasGetStatusString(s));
    return -1;
}

void *cuda_scratch_get(cuda_ctx *c, cuda_scratch *s, size_t bytes, const char *what) {
    if (s->bytes >= bytes) return s->p;
    if (s->p && c->n_graphs == 0 && !c->capturing) { // nothing captured can still refer to it
        cuda_profile_release(c);
        cudaStreamSynchronize(c->stream);
        cudaFree(s->p);
    } else if (s->p) {
        if (c->n_graveyard == CUDA_GRAVEYARD_MAX) {
            cuda_record(c, FL_ENOMEM, "kernels/cuda: %s: too many scratch regrowths", what);
            return NULL;
        }
        c->graveyard[c->n_graveyard++] = s->p;
    }
    size_t grow = s->bytes + s->bytes / 2;
    if (grow > bytes) bytes = grow;
    s->p = NULL;
    s->bytes = 0;
    void *p = NULL;
    if (cuda_check(c, cudaMalloc(&p, bytes), what)) return NULL;
    s->p = p;
    s->bytes = bytes;
    return p;
}

// ---- conversions between f32 and the act dtype (f16)
__global__ void k_half_from_f32(__half *dst, const float *src, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = __float2half_rn(src[i]);
}

__global__ void k_f32_from_half(float *dst, const __half *src, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = __half2float(src[i]);
}

void cuda_half_from_f32(cuda_ctx *c, __half *dst, const float *src, size_t n) {
    if (n == 0) return;
    k_half_from_f32<<<cuda_blocks(n, 256), 256, 0, c->stream>>>(dst, src, n);
    CUDA_LAUNCHED(c, "half_from_f32");
}

void cuda_f32_from_half(cuda_ctx *c, float *dst, const __half *src, size_t n) {
    if (n == 0) return;
    k_f32_from_half<<<cuda_blocks(n, 256), 256, 0, c->stream>>>(dst, src, n);
    CUDA_LAUNCHED(c, "f32_from_half");
}

// ---- backend interface: lifetime, errors, memory
static fl_code cb_sync(backend *b, fl_error *err) {
    cuda_ctx *c = cuda_ctx_of(b);
    cuda_profile_release(c);
    if (!c->capturing) cuda_check(c, cudaStreamSynchronize(c->stream), "stream synchronize");
    fl_code code = c->err_code;
    if (code != FL_OK) {
        fl_error_set(err, code, "%s", c->err_msg);
        c->err_code = FL_OK;
        c->err_msg[0] = 0;
    }
    return code;
}

static void cb_record_error(backend *b, fl_code code, const char *msg) {
    cuda_record(cuda_ctx_of(b), code, "%s", msg);
}

static size_t cb_mem_available(backend *b) {
    size_t free_b = 0, total = 0;
    if (cuda_check(cuda_ctx_of(b), cudaMemGetInfo(&free_b, &total), "cudaMemGetInfo")) return 0;
    return free_b;
}

static void *cb_buf_alloc(backend *b, size_t nbytes) {
    void *p = NULL;
    if (cudaMalloc(&p, nbytes ? nbytes : 1) != cudaSuccess) {
        cudaGetLastError(); // an allocation failure is reported by the NULL, not as sticky
        return NULL;
    }
    return p;
}

static void cb_buf_free(backend *b, void *p) {
    cuda_profile_release(cuda_ctx_of(b)); // cudaFree waits for the device
    if (p) cuda_check(cuda_ctx_of(b), cudaFree(p), "cudaFree");
}

static void cb_copy_to_device(backend *b, void *dst, const void *src, size_t nbytes) {
    cuda_ctx *c = cuda_ctx_of(b);
    if (nbytes == 0) return;
    if (c->capturing) {
        cuda_record(c, FL_EBACKEND, "kernels/cuda: copy_to_device while capturing a graph");
        return;
    }
    // Pageable source: the call returns once src has been staged, so the caller may reuse it.
    cuda_check(c, cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, c->stream),
               "copy_to_device");
}

static void cb_copy_to_host(backend *b, void *dst, const void *src, size_t nbytes) {
    cuda_ctx *c = cuda_ctx_of(b);
    if (nbytes == 0) return;
    cuda_profile_release(c);
    if (cuda_check(c, cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, c->stream),
                   "copy_to_host"))
        return;
    cuda_check(c, cudaStreamSynchronize(c->stream), "copy_to_host synchronize");
}

static void cb_act_from_f32(backend *b, void *dst, const float *src, size_t n) {
    cuda_ctx *c = cuda_ctx_of(b);
    if (n == 0) return;
    uint16_t *tmp = (uint16_t *)malloc(n * sizeof(uint16_t));
    if (!tmp) {
        cuda_record(c, FL_ENOMEM, "kernels/cuda: act_from_f32: out of host memory (%zu values)", n);
        return;
    }
    for (size_t i = 0; i < n; i++) tmp[i] = f32_to_fp16(src[i]);
    cb_copy_to_device(b, dst, tmp, n * sizeof(uint16_t));
    free(tmp);
}

static void cb_act_to_f32(backend *b, float *dst, const void *src, size_t n) {
    cuda_ctx *c = cuda_ctx_of(b);
    if (n == 0) return;
    float *tmp = (float *)cuda_scratch_get(c, &c->f32_out, n * sizeof(float), "act_to_f32");
    if (!tmp) return;
    cuda_f32_from_half(c, tmp, (const __half *)src, n);
    cb_copy_to_host(b, dst, tmp, n * sizeof(float));
}

static float *cb_vector_create(backend *b, const float *v, int n) {
    cuda_ctx *c = cuda_ctx_of(b);
    float *p = (float *)cb_buf_alloc(b, (size_t)n * sizeof(float));
    if (!p) return NULL;
    if (cuda_check(c, cudaMemcpy(p, v, (size_t)n * sizeof(float), cudaMemcpyHostToDevice),
                   "vector_create")) {
        cudaFree(p);
        return NULL;
    }
    return p;
}

static void *cb_native_stream(backend *b) {
    return cuda_ctx_of(b)->stream;
}

// ---- decode-step graphs
static cuda_graph_entry *graph_find(cuda_ctx *c, uint64_t key) {
    for (int i = 0; i < c->n_graphs; i++)
        if (c->graphs[i].key == key) return &c->graphs[i];
    return NULL;
}

static int cb_graph_replay(backend *b, uint64_t key) {
    cuda_ctx *c = cuda_ctx_of(b);
    cuda_graph_entry *g = graph_find(c, key);
    if (!g || c->err_code != FL_OK || c->profiling) return 0;
    g->last_use = ++c->graph_clock;
    return cuda_check(c, cudaGraphLaunch(g->exec, c->stream), "cudaGraphLaunch") == 0;
}

static void cb_graph_capture_begin(backend *b, uint64_t key) {
    cuda_ctx *c = cuda_ctx_of(b);
    if (c->profiling) return; // a profile times the ops one by one
    // Relaxed: scratch buffers may grow (cudaMalloc) while the first step of a shape is captured.
    if (cuda_check(c, cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeRelaxed),
                   "cudaStreamBeginCapture"))
        return;
    c->capturing = 1;
    c->capture_key = key;
}

static void cb_graph_capture_end(backend *b, uint64_t key) {
    cuda_ctx *c = cuda_ctx_of(b);
    if (!c->capturing) return;
    c->capturing = 0;
    cudaGraph_t graph = NULL;
    if (cuda_check(c, cudaStreamEndCapture(c->stream, &graph), "cudaStreamEndCapture")) return;
    cudaGraphExec_t exec = NULL;
    cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    if (cuda_check(c, e, "cudaGraphInstantiate")) return;
    if (c->err_code != FL_OK) { // an op failed inside the capture: do not keep or run it
        cudaGraphExecDestroy(exec);
        return;
    }
    cuda_graph_entry *slot = graph_find(c, key);
    if (!slot && c->n_graphs < CUDA_MAX_GRAPHS) slot = &c->graphs[c->n_graphs++];
    if (!slot) { // evict the least recently used
        slot = &c->graphs[0];
        for (int i = 1; i < c->n_graphs; i++)
            if (c->graphs[i].last_use < slot->last_use) slot = &c->graphs[i];
    }
    if (slot->exec) cudaGraphExecDestroy(slot->exec);
    slot->key = key;
    slot->exec = exec;
    slot->last_use = ++c->graph_clock;
    // The captured ops have not run yet: this launch is the step itself.
    cuda_check(c, cudaGraphLaunch(exec, c->stream), "cudaGraphLaunch");
}

static void cb_graph_reset(backend *b) {
    cuda_ctx *c = cuda_ctx_of(b);
    for (int i = 0; i < c->n_graphs; i++)
        if (c->graphs[i].exec) cudaGraphExecDestroy(c->graphs[i].exec);
    memset(c->graphs, 0, sizeof c->graphs);
    c->n_graphs = 0;
}

static void cb_free(backend *b) {
    if (!b) return;
    cuda_ctx *c = cuda_ctx_of(b);
    if (c) {
        cuda_profile_free(c);
        cudaStreamSynchronize(c->stream);
        cb_graph_reset(b);
        cuda_scratch *all[] = {&c->x_perm, &c->gemv_acc, &c->dequant, &c->attn_part, &c->f32_out};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) cudaFree(all[i]->p);
        for (int i = 0; i < c->n_graveyard; i++) cudaFree(c->graveyard[i]);
        if (c->cublas) cublasDestroy(c->cublas);
        cudaFree(c->cublas_workspace);
        if (c->stream) cudaStreamDestroy(c->stream);
        free(c);
    }
    free(b);
}

extern "C" backend *backend_cuda_create(int device, fl_error *err) {
    int n_dev = 0;
    cudaError_t e = cudaGetDeviceCount(&n_dev);
    if (e != cudaSuccess || n_dev == 0) {
        cudaGetLastError();
        // Without a GPU there is no driver, which the runtime reports as a driver "version
        // insufficient for the runtime": name what is actually missing.
        const char *why = e == cudaSuccess                     ? "device count is 0"
                          : access("/dev/nvidiactl", F_OK) != 0 ? "no NVIDIA driver loaded"
                                                                : cudaGetErrorString(e);
        fl_error_set(err, FL_EUNSUPPORTED, "kernels/cuda: no CUDA device (%s)", why);
        return NULL;
    }
    if (device < 0 || device >= n_dev) {
        fl_error_set(err, FL_EINVAL, "kernels/cuda: device %d out of range (found %d)", device,
                     n_dev);
        return NULL;
    }
    backend *b = (backend *)calloc(1, sizeof *b);
    cuda_ctx *c = (cuda_ctx *)calloc(1, sizeof *c);
    if (!b || !c) {
        free(b);
        free(c);
        fl_error_set(err, FL_ENOMEM, "kernels/cuda: out of host memory");
        return NULL;
    }
    b->ctx = c;
    b->free = cb_free;
    c->device = device;
    cudaDeviceProp prop;
    int ok = cuda_check(c, cudaSetDevice(device), "cudaSetDevice") == 0 &&
             cuda_check(c, cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties") == 0 &&
             cuda_check(c, cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking),
                        "cudaStreamCreate") == 0 &&
             cublas_check(c, cublasCreate(&c->cublas), "cublasCreate") == 0 &&
             cublas_check(c, cublasSetStream(c->cublas, c->stream), "cublasSetStream") == 0 &&
             cuda_check(c, cudaMalloc(&c->cublas_workspace, CUBLAS_WORKSPACE_BYTES),
                        "cuBLAS workspace") == 0 &&
             // An explicit workspace keeps cuBLAS from allocating while a graph is captured.
             cublas_check(c, cublasSetWorkspace(c->cublas, c->cublas_workspace,
                                                CUBLAS_WORKSPACE_BYTES),
                          "cublasSetWorkspace") == 0;
    if (!ok) {
        fl_error_set(err, c->err_code, "%s", c->err_msg);
        cb_free(b);
        return NULL;
    }
    c->n_sm = prop.multiProcessorCount;
    c->smem_optin = prop.sharedMemPerBlockOptin;
    // A tuning knob for kernels/PERFORMANCE.md sweeps; the default is the measured best.
    const char *bps = getenv("FALCONLITE_GEMV_BLOCKS_PER_SM");
    c->gemv_blocks_per_sm = bps && atoi(bps) > 0 ? atoi(bps) : 4;
    // The GEMV's weight batch depth at 1-2 rows (gptq_matmul.cu): 4 or 8 packed rows for both,
    // 0 (default) = 4 at one row, 8 at two.
    const char *gr = getenv("FALCONLITE_GEMV_ROWS");
    c->gemv_rows_per_batch = gr ? atoi(gr) : 0;
    cuda_gptq_mma_setup(c); // reads the FALCONLITE_GPTQ_MMA* knobs

    b->name = "cuda";
    b->act_dtype = DTYPE_F16;
    b->sync = cb_sync;
    b->record_error = cb_record_error;
    b->mem_available = cb_mem_available;
    b->buf_alloc = cb_buf_alloc;
    b->buf_free = cb_buf_free;
    b->copy_to_device = cb_copy_to_device;
    b->copy_to_host = cb_copy_to_host;
    b->act_from_f32 = cb_act_from_f32;
    b->act_to_f32 = cb_act_to_f32;
    b->matrix_create = cuda_matrix_create;
    b->matrix_free = cuda_matrix_free;
    b->vector_create = cb_vector_create;
    b->embedding = cuda_embedding;
    b->layernorm = cuda_layernorm;
    b->rmsnorm = cuda_rmsnorm;
    b->matmul = cuda_matmul;
    b->qkv_split = cuda_qkv_split;
    b->rotary = cuda_rotary;
    b->kv_store = cuda_kv_store;
    b->attention = cuda_attention;
    b->gelu = cuda_gelu;
    b->swiglu = cuda_swiglu;
    b->add = cuda_add;
    b->gather_rows = cuda_gather_rows;
    b->qkv_rotary_store = cuda_qkv_rotary_store;
    b->residual_norm = cuda_residual_norm;
    b->profile_begin = cuda_profile_begin;
    b->op_begin = cuda_op_begin;
    b->op_end = cuda_op_end;
    b->profile_end = cuda_profile_end;
    b->native_stream = cb_native_stream;
    b->graph_replay = cb_graph_replay;
    b->graph_capture_begin = cb_graph_capture_begin;
    b->graph_capture_end = cb_graph_capture_end;
    b->graph_reset = cb_graph_reset;
    return backend_checks_install(b, err);
}
