// Internal state of the CUDA backend, shared by its .cu files: the context (device, stream,
// cuBLAS, first-error record, scratch buffers, captured graphs), the backend-owned matrix, and
// the launch helpers every op uses. Not part of the public interface (kernels/backend.h is).
#pragma once
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "kernels/backend.h"
}

#define CUDA_MAX_GRAPHS 64
#define CUDA_GRAVEYARD_MAX 64
#define GPTQ_GEMV_MAX_ROWS 16 // n_tok up to this runs the 4-bit GEMV; above, dequant + cuBLAS
#define GPTQ_MMA_MAX_ROWS 64  // n_tok up to this may run the tensor-core kernel (gptq_mma.cu)
#define GEMV_ARRIVAL_SLOTS 1024 // column blocks a GPTQ GEMV / mma launch may count arrivals for

// A device scratch buffer that only grows. Grown buffers may already be referenced by captured
// graphs, so the old allocation is parked in the context's graveyard until the backend is freed.
typedef struct cuda_scratch {
    void *p;
    size_t bytes;
} cuda_scratch;

typedef struct cuda_graph_entry {
    uint64_t key;
    cudaGraphExec_t exec;
    uint64_t last_use;
} cuda_graph_entry;

// One profiled span of ops (backend.h: op_begin / op_end).
typedef struct cuda_span {
    const char *name;
    cudaEvent_t start, stop; // created once, reused by later profiles
} cuda_span;

typedef struct cuda_ctx {
    int device;
    int n_sm;
    size_t smem_optin; // max dynamic shared memory per block
    int gemv_blocks_per_sm; // GPTQ GEMV grid target (FALCONLITE_GEMV_BLOCKS_PER_SM, default 4)
    int gemv_rows_per_batch; // GPTQ GEMV packed rows per weight batch at 1-2 rows (FALCONLITE_GEMV_ROWS)
    int gptq_mma;           // FALCONLITE_GPTQ_MMA: -1 auto, 0 never, 1 wherever it applies
    int mma_blocks_per_sm[4]; // resident GPTQ mma blocks per SM for 1..4 m16 tiles (0: unusable)
    int mma_rs[4];            // its packed rows per K unit (8 or 16) for 1..4 m16 tiles
    cudaStream_t stream;
    cublasHandle_t cublas;
    void *cublas_workspace;

    fl_code err_code; // first error since the last sync (FL_OK when none)
    char err_msg[480];

    cuda_scratch x_perm;    // [n_tok, n_in] act-order permuted activations (GEMM path)
    cuda_scratch gemv_acc;  // arrival counters + [max rows, max n_out] f32, kept zeroed between calls
    cuda_scratch dequant;   // [n_in, n_out] f16 weights of one GPTQ matrix (GEMM path)
    cuda_scratch attn_part; // flash-decoding partial outputs and softmax stats
    cuda_scratch f32_out;   // act_to_f32 staging
    void *graveyard[CUDA_GRAVEYARD_MAX];
    int n_graveyard;

    int capturing;
    uint64_t capture_key;
    cuda_graph_entry graphs[CUDA_MAX_GRAPHS];
    int n_graphs;
    uint64_t graph_clock;

    // op profile (profile.cu): spans timed with event pairs while the GPU is held behind gate
    // kernels, so that the host queues ops ahead of it and they run back to back
    int profiling;
    cuda_span *spans;
    int n_spans, cap_spans;
    int span_open;
    long long *gate_host;      // mapped pinned [2]: gates released so far, gates that timed out
    long long *gate_dev;       // the same memory, as the device sees it
    long long gates_armed;     // gates queued so far
    int ops_behind_gate;       // spans queued behind the newest unreleased gate (0: none armed)
} cuda_ctx;

// Backend-owned weight matrix.
struct bk_matrix {
    matrix_kind kind;
    int n_in, n_out;
    float *bias; // [n_out] f32 or NULL
    // MATRIX_DENSE
    __half *w; // [n_out, n_in]
    // MATRIX_GPTQ, repacked: inputs sorted by group and each group padded to whole packed rows
    // (8 inputs per uint32), so a group is a contiguous run of rows; k_pad sorted inputs in all.
    int k_pad;
    uint32_t *qweight;  // [k_pad/8, n_out] nibble j of row r is sorted input 8r + j
    __half *scales;     // [n_groups, n_out]
    uint32_t *zeros;    // [n_groups, n_out/4] four 8-bit zero points (stored zero + 1)
    int32_t *group_row; // [n_groups + 1] first packed row of each group (sorted order)
    int32_t *perm;      // [k_pad] original input of sorted input k (-1: padding), NULL if identity
    int n_groups;
    int max_group_rows; // packed rows of the largest group
};

static inline cuda_ctx *cuda_ctx_of(backend *b) { return (cuda_ctx *)b->ctx; }

__device__ __forceinline__ __half2 u32_as_half2(uint32_t u) {
    return *reinterpret_cast<__half2 *>(&u);
}

// p[0..3] += v (one 16-byte atomic from sm_90 on; p 16-byte aligned).
__device__ __forceinline__ void atomic_add4(float *p, float4 v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    atomicAdd(reinterpret_cast<float4 *>(p), v);
#else
    atomicAdd(p, v.x);
    atomicAdd(p + 1, v.y);
    atomicAdd(p + 2, v.z);
    atomicAdd(p + 3, v.w);
#endif
}

// The GPTQ decode kernels' finalize of 4 output columns: y[0..3] = f16(acc[0..3] + bias[0..3])
// (bias may be NULL) and acc[0..3] = 0 for the next call. acc 16-byte aligned.
__device__ __forceinline__ void gptq_finalize4(float *acc, __half *y, const float *bias) {
    float4 *a = reinterpret_cast<float4 *>(acc);
    float4 v = __ldcg(a);
    __stcg(a, make_float4(0.0f, 0.0f, 0.0f, 0.0f));
    if (bias) {
        v.x += bias[0];
        v.y += bias[1];
        v.z += bias[2];
        v.w += bias[3];
    }
    if (((uintptr_t)y & 3) == 0) {
        __half2 *o = reinterpret_cast<__half2 *>(y);
        o[0] = __floats2half2_rn(v.x, v.y);
        o[1] = __floats2half2_rn(v.z, v.w);
    } else {
        y[0] = __float2half_rn(v.x);
        y[1] = __float2half_rn(v.y);
        y[2] = __float2half_rn(v.z);
        y[3] = __float2half_rn(v.w);
    }
}

// Records the first error; later ones are dropped (sync() reports the first).
void cuda_record(cuda_ctx *c, fl_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
// Checks a runtime call and the last launch error; returns 0 on success.
int cuda_check(cuda_ctx *c, cudaError_t e, const char *what);
int cublas_check(cuda_ctx *c, cublasStatus_t s, const char *what);
#define CUDA_LAUNCHED(c, what) cuda_check((c), cudaGetLastError(), (what))

// Returns a scratch of at least bytes (grown, never shrunk), or NULL with an error recorded.
void *cuda_scratch_get(cuda_ctx *c, cuda_scratch *s, size_t bytes, const char *what);

static inline unsigned cuda_blocks(size_t n, unsigned threads) {
    return (unsigned)((n + threads - 1) / threads);
}

// ---- ops implemented across the .cu files (wired in cuda_backend.cu)
bk_matrix *cuda_matrix_create(backend *b, const host_matrix *m, fl_error *err);
void cuda_matrix_free(backend *b, bk_matrix *m);
bk_matrix *cuda_gptq_create(backend *b, const host_matrix *m, fl_error *err);
void cuda_matmul(backend *b, void *out, const void *x, const bk_matrix *w, int n_tok);
void cuda_dense_gemm(cuda_ctx *c, __half *out, const __half *x, const __half *w_t, int n_tok,
                     int n_in, int n_out, int w_is_kn);
void cuda_gptq_matmul(cuda_ctx *c, __half *out, const __half *x, const bk_matrix *w, int n_tok);
// Tensor-core GPTQ matmul for small batches (gptq_mma.cu). setup reads FALCONLITE_GPTQ_MMA and
// sizes the launch once per backend; wanted says whether this call should take it (x and out as
// the caller passes them); cuda_gptq_mma takes xs = x in sorted input order, [n_tok, k_pad].
void cuda_gptq_mma_setup(cuda_ctx *c);
int cuda_gptq_mma_wanted(const cuda_ctx *c, const bk_matrix *w, const void *x, const void *out,
                         int n_tok);
void cuda_gptq_mma(cuda_ctx *c, __half *out, const __half *xs, const bk_matrix *w, int n_tok);
void cuda_bias_add(cuda_ctx *c, __half *out, const float *bias, int n_tok, int n_out);
void cuda_half_from_f32(cuda_ctx *c, __half *dst, const float *src, size_t n);
void cuda_f32_from_half(cuda_ctx *c, float *dst, const __half *src, size_t n);

void cuda_embedding(backend *b, void *out, const bk_matrix *table, const int32_t *ids_dev,
                    int n_tok, int row_start);
void cuda_layernorm(backend *b, void *out, const void *x, const float *w, const float *bias,
                    int n_tok, int d, float eps);
void cuda_rmsnorm(backend *b, void *out, const void *x, const float *w, int n_tok, int d,
                  float eps);
void cuda_qkv_split(backend *b, void *q, void *k, void *v, const void *qkv, int n_tok, int n_head,
                    int n_head_kv, int head_dim);
void cuda_rotary(backend *b, void *x, const int32_t *pos_dev, const float *base_dev, int n_tok,
                 int n_heads, int head_dim, int rot_dim, float pos_scale);
void cuda_kv_store(backend *b, void *k_cache, void *v_cache, const void *k, const void *v,
                   const int32_t *slots_dev, int n_tok, int n_head_kv, int head_dim);
void cuda_attention(backend *b, void *out, const void *q, const void *k_cache, const void *v_cache,
                    const attn_batch *ab, int n_head, int n_head_kv, int head_dim, float scale);
void cuda_attention_decode(cuda_ctx *c, __half *out, const __half *q, const __half *k_cache,
                           const __half *v_cache, const attn_batch *ab, int n_head, int n_head_kv,
                           int head_dim, float scale);
// Returns 0 when the shape has no prefill kernel (the caller then uses the decode kernel).
int cuda_attention_prefill(cuda_ctx *c, __half *out, const __half *q, const __half *k_cache,
                           const __half *v_cache, const attn_batch *ab, int n_head, int n_head_kv,
                           int head_dim, float scale);
void cuda_qkv_rotary_store(backend *b, void *q, void *k_cache, void *v_cache, const void *qkv,
                           const int32_t *pos_dev, const float *base_dev, const int32_t *slots_dev,
                           int n_tok, int n_head, int n_head_kv, int head_dim, int rot_dim,
                           float pos_scale);
void cuda_residual_norm(backend *b, void *x, const void *r1, const void *r2, void *out_a,
                        bk_norm na, void *out_m, bk_norm nm, int rms, int n_tok, int d, float eps);
void cuda_gelu(backend *b, void *x, size_t n);
void cuda_swiglu(backend *b, void *out, const void *gate_up, int n_tok, int d_ff);
void cuda_add(backend *b, void *out, const void *x, const void *y, size_t n);
void cuda_gather_rows(backend *b, void *out, const void *x, const int32_t *rows_dev, int n_rows,
                      int d);

// ---- op profile (profile.cu)
void cuda_profile_begin(backend *b);
void cuda_op_begin(backend *b, const char *name);
void cuda_op_end(backend *b);
int cuda_profile_end(backend *b, op_profile_entry *out, int max, fl_error *err);
// Lets every queued gate pass; called before anything that waits for the stream.
void cuda_profile_release(cuda_ctx *c);
void cuda_profile_free(cuda_ctx *c);
