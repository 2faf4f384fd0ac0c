// GPTQ 4-bit matrices (AutoGPTQ v1 layout) on the GPU. Weights stay 4-bit.
//
// Repack at matrix_create: input rows are sorted by group (kernels/gptq_layout.h, ExLlama's
// make_sequential) so every group is a contiguous run of packed rows, and the activations are
// gathered through `perm` while a block stages them in shared memory (act-order then costs one
// indexed load per input, not a separate kernel). Zero points are unpacked to bytes (stored zero + 1, which may be 16).
//
// Decode (n_tok <= GPTQ_GEMV_MAX_ROWS): a GEMV that streams qweight once with 16-byte loads; each
// thread owns 4 output columns, blocks split K by whole groups so every Falcon shape fills the
// SMs, partial sums go to an f32 accumulator by atomicAdd, and the last K slice of each column
// block to arrive writes f16 (+bias) and re-zeroes the accumulator (one launch per matmul).
// Dequant uses the fp16 exponent trick: (q | 0x6400) is 1024 + q, and one hfma2 turns it into
// (q - z)/16, exact in fp16; the 16 is folded into the group scale.
// Prefill (larger n_tok): dequantise into an f16 scratch [n_in, n_out] and call cuBLAS.
// Small batches (4..GPTQ_MMA_MAX_ROWS rows by default) take the tensor-core kernel of
// gptq_mma.cu instead, on the same layout (FALCONLITE_GPTQ_MMA picks: auto / 0 / 1).
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_backend.cuh"

extern "C" {
#include "kernels/gptq_layout.h"
}

#define GEMV_THREADS 128
#define GEMV_COLS_PER_THREAD 4

// ---- decode GEMV

// One packed row (8 inputs) x 4 columns into the group accumulators of M activation rows.
// xs points at the row's 8 reordered activations of batch row 0; rows are n_k apart.
template <int M>
__device__ __forceinline__ void gemv_row(uint4 qv, const __half *xs, int n_k, const __half2 *bias,
                                         float (*gacc)[4]) {
    const __half2 sixteenth = __float2half2_rn(1.0f / 16.0f);
    uint4 xv[M];
#pragma unroll
    for (int m = 0; m < M; m++) xv[m] = *reinterpret_cast<const uint4 *>(xs + m * n_k);
    const uint32_t qc[4] = {qv.x, qv.y, qv.z, qv.w};
#pragma unroll
    for (int c = 0; c < 4; c++) {
        __half2 w[4];
#pragma unroll
        for (int p = 0; p < 4; p++)
            w[p] = __hfma2(u32_as_half2(((qc[c] >> (4 * p)) & 0x000f000fu) | 0x64006400u),
                           sixteenth, bias[c]);
#pragma unroll
        for (int m = 0; m < M; m++) {
            __half2 h = __hmul2(w[0], u32_as_half2(xv[m].x));
            h = __hfma2(w[1], u32_as_half2(xv[m].y), h);
            h = __hfma2(w[2], u32_as_half2(xv[m].z), h);
            h = __hfma2(w[3], u32_as_half2(xv[m].w), h);
            gacc[m][c] += __low2float(h) + __high2float(h);
        }
    }
}

template <int M, int RB>
__global__ void __launch_bounds__(GEMV_THREADS)
    k_gptq_gemv(float *__restrict__ acc, const __half *__restrict__ x,
                const uint32_t *__restrict__ qw, const __half *__restrict__ scales,
                const uint32_t *__restrict__ zeros, const int32_t *__restrict__ group_row,
                const int32_t *__restrict__ perm, int K, int N, int G, int groups_per_slice,
                unsigned *__restrict__ arrivals, __half *__restrict__ y,
                const float *__restrict__ bias_out) {
    extern __shared__ __half xs[]; // [M][n_rows*8], each 8 reordered (x0 x4 x1 x5 x2 x6 x3 x7)
    const int g0 = blockIdx.y * groups_per_slice;
    const int g1 = min(G, g0 + groups_per_slice);
    const int r0 = group_row[g0], n_rows = group_row[g1] - r0;
    const int n_k = n_rows * 8;
    const int n4 = blockIdx.x * blockDim.x + threadIdx.x;
    const bool active = n4 * GEMV_COLS_PER_THREAD < N;
    const int r_end = r0 + n_rows;
    // The slice's packed rows stream in batches of RB (16 RB bytes per thread), double-buffered:
    // the next batch is in flight while this one is computed. The first batch is issued before
    // the activations are staged, so the block's first weight bytes do not wait for them.
    const uint4 *wcol = reinterpret_cast<const uint4 *>(qw) + n4;
    const size_t wstride = (size_t)N / 4; // uint4 per packed row
    uint4 cur[RB];
#pragma unroll
    for (int u = 0; u < RB; u++)
        cur[u] = active && r0 + u < r_end ? __ldcs(wcol + (size_t)(r0 + u) * wstride)
                                          : make_uint4(0, 0, 0, 0);
    for (int i = threadIdx.x; i < M * n_k; i += blockDim.x) {
        int m = i / n_k, kk = i - m * n_k;
        int k = 8 * r0 + kk;
        if (perm) k = perm[k];
        int j = kk & 7;
        xs[m * n_k + (kk & ~7) + (j & 3) * 2 + (j >> 2)] =
            k >= 0 ? x[(size_t)m * K + k] : __float2half(0.0f);
    }
    __syncthreads();

    float out[M][4], gacc[M][4];
#pragma unroll
    for (int m = 0; m < M; m++)
#pragma unroll
        for (int c = 0; c < 4; c++) out[m][c] = gacc[m][c] = 0.0f;
    int g = g0 - 1, g_end = r0; // current group and its first row past the end
    __half2 bias[4];            // -(1024 + z) / 16 per column: hfma2(1024 + q, 1/16, bias) = (q - z)/16
    float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int r = active ? r0 : r_end; r < r_end; r += RB) {
        uint4 nxt[RB];
#pragma unroll
        for (int u = 0; u < RB; u++)
            nxt[u] = r + RB + u < r_end ? __ldcs(wcol + (size_t)(r + RB + u) * wstride)
                                        : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int u = 0; u < RB; u++) {
            const int rr = r + u;
            if (rr >= r_end) break;
            while (rr == g_end) { // entering the next (non-empty) group: apply the last one's scale
#pragma unroll
                for (int m = 0; m < M; m++)
#pragma unroll
                    for (int c = 0; c < 4; c++) {
                        out[m][c] += gacc[m][c] * s[c];
                        gacc[m][c] = 0.0f;
                    }
                g++;
                g_end = group_row[g + 1];
                const uint2 s_raw = *reinterpret_cast<const uint2 *>(&scales[(size_t)g * N + 4 * n4]);
                const uint32_t z_raw = zeros[(size_t)g * (N / 4) + n4];
#pragma unroll
                for (int c = 0; c < 4; c++)
                    bias[c] = __float2half2_rn(-(1024.0f + (float)((z_raw >> (8 * c)) & 0xff)) / 16.0f);
                const __half2 s01 = u32_as_half2(s_raw.x), s23 = u32_as_half2(s_raw.y);
                s[0] = 16.0f * __low2float(s01);
                s[1] = 16.0f * __high2float(s01);
                s[2] = 16.0f * __low2float(s23);
                s[3] = 16.0f * __high2float(s23);
            }
            gemv_row<M>(cur[u], xs + (rr - r0) * 8, n_k, bias, gacc);
        }
#pragma unroll
        for (int u = 0; u < RB; u++) cur[u] = nxt[u];
    }
#pragma unroll
    for (int m = 0; m < M; m++)
#pragma unroll
        for (int c = 0; c < 4; c++) out[m][c] += gacc[m][c] * s[c];
    if (active)
#pragma unroll
        for (int m = 0; m < M; m++)
            atomic_add4(&acc[(size_t)m * N + 4 * n4],
                        make_float4(out[m][0], out[m][1], out[m][2], out[m][3]));
    // The last K slice to finish a column block writes y = f16(acc + bias) for it and leaves the
    // accumulator and its arrival counter at zero for the next call (no finalize launch).
    __shared__ bool last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(&arrivals[blockIdx.x], 1u) == gridDim.y - 1;
    __syncthreads();
    if (!last) return;
    if (active)
#pragma unroll
        for (int m = 0; m < M; m++)
            gptq_finalize4(acc + (size_t)m * N + 4 * n4, y + (size_t)m * N + 4 * n4,
                           bias_out ? bias_out + 4 * n4 : NULL);
    if (threadIdx.x == 0) arrivals[blockIdx.x] = 0;
}

// ---- prefill: dequantise to [n_in(sorted), n_out] f16, permute activations, cuBLAS
__global__ void k_gptq_dequant(__half *w, const uint32_t *qw, const __half *scales,
                               const uint32_t *zeros, const int32_t *group_row, int N) {
    const int g = blockIdx.y;
    const int n = blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= N) return;
    const float s = __half2float(scales[(size_t)g * N + n]);
    const float z = (float)((zeros[(size_t)g * (N / 4) + n / 4] >> (8 * (n & 3))) & 0xff);
    for (int r = group_row[g]; r < group_row[g + 1]; r++) {
        const uint32_t q = qw[(size_t)r * N + n];
#pragma unroll
        for (int j = 0; j < 8; j++)
            w[(size_t)(8 * r + j) * N + n] = __float2half_rn(((float)((q >> (4 * j)) & 15) - z) * s);
    }
}

// dst[n_tok, k_pad] = x[:, perm] (0 where perm is -1: the padding rows of a group)
__global__ void k_permute_cols(__half *dst, const __half *x, const int32_t *perm, int n_tok, int K,
                               int k_pad) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)n_tok * k_pad) return;
    size_t t = i / k_pad;
    const int k = perm[i - t * k_pad];
    dst[i] = k >= 0 ? x[t * K + k] : __float2half(0.0f);
}

template <int M, int RB>
static void launch_gemv(cuda_ctx *c, float *acc, __half *y, const __half *x, const bk_matrix *w) {
    const int N = w->n_out, G = w->n_groups;
    const int blocks_n = (int)cuda_blocks((size_t)N / GEMV_COLS_PER_THREAD, GEMV_THREADS);
    // About gemv_blocks_per_sm blocks per SM; each K slice holds whole groups and its
    // activations fit 48 KB.
    const size_t target = (size_t)c->gemv_blocks_per_sm * c->n_sm;
    int gps = (int)(((size_t)G * blocks_n + target - 1) / target);
    const int max_gps = (48 << 10) / (M * w->max_group_rows * 8 * (int)sizeof(__half));
    if (gps > max_gps) gps = max_gps;
    if (gps < 1) gps = 1;
    const size_t smem = (size_t)M * gps * w->max_group_rows * 8 * sizeof(__half);
    dim3 grid(blocks_n, (G + gps - 1) / gps);
    k_gptq_gemv<M, RB><<<grid, GEMV_THREADS, smem, c->stream>>>(
        acc, x, w->qweight, w->scales, w->zeros, w->group_row, w->perm, w->n_in, N, G, gps,
        (unsigned *)c->gemv_acc.p, y, w->bias);
    CUDA_LAUNCHED(c, "gptq gemv");
}

// x in sorted input order, [n_tok, k_pad]: x itself without act-order, else gathered into the
// act-order scratch. NULL (error recorded) on failure.
static const __half *gptq_sorted_input(cuda_ctx *c, const __half *x, const bk_matrix *w,
                                       int n_tok) {
    if (!w->perm) return x;
    const size_t n = (size_t)n_tok * w->k_pad;
    __half *xp = (__half *)cuda_scratch_get(c, &c->x_perm, n * sizeof(__half),
                                            "gptq act-order scratch");
    if (!xp) return NULL;
    k_permute_cols<<<cuda_blocks(n, 256), 256, 0, c->stream>>>(xp, x, w->perm, n_tok, w->n_in,
                                                               w->k_pad);
    return CUDA_LAUNCHED(c, "gptq permute") ? NULL : xp;
}

void cuda_gptq_matmul(cuda_ctx *c, __half *out, const __half *x, const bk_matrix *w, int n_tok) {
    const int K = w->n_in, N = w->n_out, k_pad = w->k_pad;
    if (cuda_gptq_mma_wanted(c, w, x, out, n_tok)) {
        const __half *xs = gptq_sorted_input(c, x, w, n_tok);
        if (xs) cuda_gptq_mma(c, out, xs, w, n_tok);
        return;
    }
    if (n_tok > GPTQ_GEMV_MAX_ROWS) {
        __half *wd = (__half *)cuda_scratch_get(c, &c->dequant, (size_t)k_pad * N * sizeof(__half),
                                                "gptq dequant scratch");
        if (!wd) return;
        dim3 grid(cuda_blocks(N, 128), w->n_groups);
        k_gptq_dequant<<<grid, 128, 0, c->stream>>>(wd, w->qweight, w->scales, w->zeros,
                                                    w->group_row, N);
        if (CUDA_LAUNCHED(c, "gptq dequant")) return;
        const __half *xs = gptq_sorted_input(c, x, w, n_tok);
        if (!xs) return;
        cuda_dense_gemm(c, out, xs, wd, n_tok, k_pad, N, 1);
        if (w->bias) cuda_bias_add(c, out, w->bias, n_tok, N);
        return;
    }
    // [GEMV_ARRIVAL_SLOTS] counters, then [GPTQ_GEMV_MAX_ROWS, n_out] f32; sized and zeroed by
    // cuda_gptq_create, and left zeroed by every GEMV.
    float *acc = (float *)c->gemv_acc.p + GEMV_ARRIVAL_SLOTS;
    // Rows go through the kernel in chunks of up to 8 (the unrolled accumulator count).
    for (int t0 = 0; t0 < n_tok; t0 += 8) {
        const int m = n_tok - t0 < 8 ? n_tok - t0 : 8;
        const __half *xt = x + (size_t)t0 * K;
        float *at = acc + (size_t)t0 * N;
        __half *yt = out + (size_t)t0 * N;
        // packed rows per weight batch: 4, or 8 at 2 rows (FALCONLITE_GEMV_ROWS=4|8 sets both;
        // on the H200, 8 or 16 at one row measured slower)
        const int rb = c->gemv_rows_per_batch;
        switch (m) {
        case 1:
            if (rb == 8) launch_gemv<1, 8>(c, at, yt, xt, w);
            else launch_gemv<1, 4>(c, at, yt, xt, w);
            break;
        case 2:
            if (rb == 4) launch_gemv<2, 4>(c, at, yt, xt, w);
            else launch_gemv<2, 8>(c, at, yt, xt, w);
            break;
        case 3: launch_gemv<3, 4>(c, at, yt, xt, w); break;
        case 4: launch_gemv<4, 4>(c, at, yt, xt, w); break;
        case 5: launch_gemv<5, 4>(c, at, yt, xt, w); break;
        case 6: launch_gemv<6, 4>(c, at, yt, xt, w); break;
        case 7: launch_gemv<7, 4>(c, at, yt, xt, w); break;
        default: launch_gemv<8, 4>(c, at, yt, xt, w); break;
        }
    }
}

// ---- repack at load
template <typename T>
static int upload(cuda_ctx *c, T **dst, const void *src, size_t count, const char *what) {
    if (cuda_check(c, cudaMalloc((void **)dst, count * sizeof(T)), what)) return -1;
    return cuda_check(c, cudaMemcpy(*dst, src, count * sizeof(T), cudaMemcpyHostToDevice), what);
}

// Uploads the shared sorted layout (kernels/gptq_layout.h): qweight in sorted order, perm when
// not the identity, group_row, and the zero points as bytes (four per uint32).
bk_matrix *cuda_gptq_create(backend *b, const host_matrix *h, fl_error *err) {
    cuda_ctx *c = cuda_ctx_of(b);
    const int K = h->n_in, N = h->n_out, G = h->n_groups;
    gptq_layout l;
    if (gptq_layout_create(&l, h, err) != FL_OK) return NULL;
    bk_matrix *m = (bk_matrix *)calloc(1, sizeof *m);
    uint8_t *zb = (uint8_t *)malloc((size_t)G * N);
    const char *why = "out of host memory";
    fl_code code = FL_ENOMEM;
    if (N / (GEMV_THREADS * GEMV_COLS_PER_THREAD) >= GEMV_ARRIVAL_SLOTS) {
        code = FL_EUNSUPPORTED;
        why = "n_out must be below 512K";
        goto fail;
    }
    if (!m || !zb) goto fail;
    m->kind = MATRIX_GPTQ;
    m->n_in = K;
    m->n_out = N;
    m->n_groups = G;
    m->k_pad = l.k_pad;
    m->max_group_rows = l.max_group_rows;
    if (h->bias && upload(c, &m->bias, h->bias, (size_t)N, "gptq bias")) goto cuda_fail;
    if (!l.perm) {
        if (upload(c, &m->qweight, h->qweight, (size_t)K / 8 * N, "gptq qweight")) goto cuda_fail;
    } else if (upload(c, &m->qweight, l.qweight, (size_t)l.k_pad / 8 * N, "gptq qweight") ||
               upload(c, &m->perm, l.perm, (size_t)l.k_pad, "gptq perm")) {
        goto cuda_fail;
    }
    gptq_layout_zeros_u8(h, zb); // [G, N] bytes = [G, N/4] uint32 of four zero points
    if (upload(c, &m->zeros, zb, (size_t)G * (N / 4), "gptq zeros") ||
        upload(c, &m->scales, h->scales, (size_t)G * N, "gptq scales") ||
        upload(c, &m->group_row, l.group_row, (size_t)G + 1, "gptq groups"))
        goto cuda_fail;
    {   // the decode accumulator must exist (zeroed) before any graph captures a GEMV or mma
        // launch, and so must the act-order scratch of an mma-sized batch
        const size_t rows = c->gptq_mma ? GPTQ_MMA_MAX_ROWS : GPTQ_GEMV_MAX_ROWS;
        const size_t need = (GEMV_ARRIVAL_SLOTS + rows * N) * sizeof(float);
        if (c->gemv_acc.bytes < need) {
            float *acc = (float *)cuda_scratch_get(c, &c->gemv_acc, need, "gptq gemv accumulator");
            if (!acc || cuda_check(c, cudaMemset(acc, 0, c->gemv_acc.bytes), "gemv accumulator"))
                goto cuda_fail;
        }
        if (c->gptq_mma && m->perm &&
            !cuda_scratch_get(c, &c->x_perm, rows * (size_t)l.k_pad * sizeof(__half), "gptq act-order scratch"))
            goto cuda_fail;
    }
    gptq_layout_free(&l);
    free(zb);
    return m;
cuda_fail:
    code = c->err_code != FL_OK ? c->err_code : FL_EBACKEND;
    why = c->err_msg;
fail:
    fl_error_set(err, code, "kernels/cuda: GPTQ matrix %d x %d: %s", K, N, why);
    c->err_code = FL_OK;
    gptq_layout_free(&l);
    free(zb);
    cuda_matrix_free(b, m);
    return NULL;
}
