// Elementwise and data-movement ops on f16 activations: embedding gather (vocab-parallel),
// exact GELU, SwiGLU, add, QKV split (Falcon's grouped layout), KV-cache store, row gather.
// Arithmetic in f32; one thread per output element (these ops are bandwidth-trivial).
#include "kernels/cuda/cuda_backend.cuh"

#define EW_THREADS 256

__global__ void k_embedding(__half *out, const __half *table, const int32_t *ids, int n_tok,
                            int d, int row_start, int n_rows) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)n_tok * d) return;
    int t = (int)(i / d), col = (int)(i - (size_t)t * d);
    int row = ids[t] - row_start;
    out[i] = row >= 0 && row < n_rows ? table[(size_t)row * d + col] : __float2half(0.0f);
}

void cuda_embedding(backend *b, void *out, const bk_matrix *table, const int32_t *ids_dev,
                    int n_tok, int row_start) {
    cuda_ctx *c = cuda_ctx_of(b); // a dense table: checked by kernels/backend.c
    size_t n = (size_t)n_tok * table->n_in;
    if (n == 0) return;
    k_embedding<<<cuda_blocks(n, EW_THREADS), EW_THREADS, 0, c->stream>>>(
        (__half *)out, table->w, ids_dev, n_tok, table->n_in, row_start, table->n_out);
    CUDA_LAUNCHED(c, "embedding");
}

__global__ void k_gelu(__half *x, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = __half2float(x[i]);
    x[i] = __float2half_rn(0.5f * v * (1.0f + erff(v * 0.70710678118654752f)));
}

void cuda_gelu(backend *b, void *x, size_t n) {
    cuda_ctx *c = cuda_ctx_of(b);
    if (n == 0) return;
    k_gelu<<<cuda_blocks(n, EW_THREADS), EW_THREADS, 0, c->stream>>>((__half *)x, n);
    CUDA_LAUNCHED(c, "gelu");
}

__global__ void k_swiglu(__half *out, const __half *gate_up, int n_tok, int d_ff) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)n_tok * d_ff) return;
    size_t t = i / d_ff, j = i - t * d_ff;
    float g = __half2float(gate_up[t * 2 * d_ff + j]);
    float u = __half2float(gate_up[t * 2 * d_ff + d_ff + j]);
    out[i] = __float2half_rn(g / (1.0f + expf(-g)) * u);
}

void cuda_swiglu(backend *b, void *out, const void *gate_up, int n_tok, int d_ff) {
    cuda_ctx *c = cuda_ctx_of(b);
    size_t n = (size_t)n_tok * d_ff;
    if (n == 0) return;
    k_swiglu<<<cuda_blocks(n, EW_THREADS), EW_THREADS, 0, c->stream>>>(
        (__half *)out, (const __half *)gate_up, n_tok, d_ff);
    CUDA_LAUNCHED(c, "swiglu");
}

__global__ void k_add(__half *out, const __half *x, const __half *y, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = __float2half_rn(__half2float(x[i]) + __half2float(y[i]));
}

void cuda_add(backend *b, void *out, const void *x, const void *y, size_t n) {
    cuda_ctx *c = cuda_ctx_of(b);
    if (n == 0) return;
    k_add<<<cuda_blocks(n, EW_THREADS), EW_THREADS, 0, c->stream>>>(
        (__half *)out, (const __half *)x, (const __half *)y, n);
    CUDA_LAUNCHED(c, "add");
}

// qkv [n_tok][n_head_kv][group + 2][head_dim] with group = n_head / n_head_kv query heads.
__global__ void k_qkv_split(__half *q, __half *k, __half *v, const __half *qkv, int n_tok,
                            int n_head, int n_head_kv, int head_dim) {
    const int group = n_head / n_head_kv, per_kv = (group + 2) * head_dim;
    const size_t row = (size_t)n_head_kv * per_kv;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)n_tok * row) return;
    size_t t = i / row;
    int r = (int)(i - t * row);
    int kvh = r / per_kv, in = r - kvh * per_kv;
    int slot = in / head_dim, d = in - slot * head_dim;
    __half val = qkv[i];
    if (slot < group)
        q[(t * n_head + (size_t)kvh * group + slot) * head_dim + d] = val;
    else if (slot == group)
        k[(t * n_head_kv + kvh) * head_dim + d] = val;
    else
        v[(t * n_head_kv + kvh) * head_dim + d] = val;
}

void cuda_qkv_split(backend *b, void *q, void *k, void *v, const void *qkv, int n_tok, int n_head,
                    int n_head_kv, int head_dim) {
    cuda_ctx *c = cuda_ctx_of(b);
    size_t n = (size_t)n_tok * (n_head + 2 * n_head_kv) * head_dim;
    if (n == 0) return;
    k_qkv_split<<<cuda_blocks(n, EW_THREADS), EW_THREADS, 0, c->stream>>>(
        (__half *)q, (__half *)k, (__half *)v, (const __half *)qkv, n_tok, n_head, n_head_kv,
        head_dim);
    CUDA_LAUNCHED(c, "qkv_split");
}

// Cache layout [n_blocks][n_head_kv][KV_BLOCK_SIZE][head_dim]; a negative slot is skipped.
__global__ void k_kv_store(__half *kc, __half *vc, const __half *k, const __half *v,
                           const int32_t *slots, int n_tok, int n_head_kv, int head_dim) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const size_t row = (size_t)n_head_kv * head_dim;
    if (i >= (size_t)n_tok * row) return;
    size_t t = i / row;
    int r = (int)(i - t * row), h = r / head_dim, d = r - h * head_dim;
    int slot = slots[t];
    if (slot < 0) return;
    size_t dst = (((size_t)(slot / KV_BLOCK_SIZE) * n_head_kv + h) * KV_BLOCK_SIZE +
                  slot % KV_BLOCK_SIZE) * head_dim + d;
    kc[dst] = k[i];
    vc[dst] = v[i];
}

void cuda_kv_store(backend *b, void *k_cache, void *v_cache, const void *k, const void *v,
                   const int32_t *slots_dev, int n_tok, int n_head_kv, int head_dim) {
    cuda_ctx *c = cuda_ctx_of(b);
    size_t n = (size_t)n_tok * n_head_kv * head_dim;
    if (n == 0) return;
    k_kv_store<<<cuda_blocks(n, EW_THREADS), EW_THREADS, 0, c->stream>>>(
        (__half *)k_cache, (__half *)v_cache, (const __half *)k, (const __half *)v, slots_dev,
        n_tok, n_head_kv, head_dim);
    CUDA_LAUNCHED(c, "kv_store");
}

__global__ void k_gather_rows(__half *out, const __half *x, const int32_t *rows, int n_rows, int d) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)n_rows * d) return;
    size_t r = i / d;
    out[i] = x[(size_t)rows[r] * d + (i - r * d)];
}

void cuda_gather_rows(backend *b, void *out, const void *x, const int32_t *rows_dev, int n_rows,
                      int d) {
    cuda_ctx *c = cuda_ctx_of(b);
    size_t n = (size_t)n_rows * d;
    if (n == 0) return;
    k_gather_rows<<<cuda_blocks(n, EW_THREADS), EW_THREADS, 0, c->stream>>>(
        (__half *)out, (const __half *)x, rows_dev, n_rows, d);
    CUDA_LAUNCHED(c, "gather_rows");
}
