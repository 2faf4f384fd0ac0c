// LayerNorm and RMSNorm over rows of f16 activations: one block per row, statistics in f32
// (LayerNorm: mean, then the variance of the centred values, as torch computes it). Rows of up to
// NORM_THREADS * NORM_VPT values are read once into registers (a decode step normalises one row,
// so latency is what counts); longer rows take the three-pass loop.
// The same kernels serve residual_norm: the residual add (x += r1 + r2, summed in f32 and rounded
// once) and a second output sharing the row's statistics (ln_attn and ln_mlp of a parallel-
// attention block) are folded into the one pass.
#include "kernels/cuda/cuda_backend.cuh"

#define NORM_THREADS 1024
#define NORM_VPT 8 // values per thread held in registers

typedef struct norm_args {
    __half *x_out;         // residual_norm: the updated x (NULL: x is only read)
    const __half *x;       // [n_tok, d]
    const __half *r1, *r2; // residuals or NULL
    __half *out_a;         // [n_tok, d]
    const float *w_a, *b_a;
    __half *out_m; // second output or NULL
    const float *w_m, *b_m;
    int d;
    float eps;
} norm_args;

__device__ float block_sum(float v, float *red) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads(); // red may still be read by a previous call
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < (int)(blockDim.x / 32) ? red[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// The row's mean (0 for RMS) and 1 / std from the n values a thread holds in registers (v, with
// bit j of `valid` set for the ones inside the row) and their sum s (of squares for RMS).
template <bool RMS, int N>
__device__ __forceinline__ void norm_stats(const float *v, unsigned valid, float s, float *red,
                                           const norm_args &a, float &mean, float &rstd) {
    s = block_sum(s, red);
    mean = 0.0f;
    if (RMS) {
        rstd = rsqrtf(s / a.d + a.eps);
        return;
    }
    mean = s / a.d;
    float var = 0.0f;
#pragma unroll
    for (int j = 0; j < N; j++) {
        const float c = v[j] - mean;
        var += (valid >> j) & 1u ? c * c : 0.0f;
    }
    rstd = rsqrtf(block_sum(var, red) / a.d + a.eps);
}

// Element i of the row's input: x, or x + (r1 + r2) rounded to f16 and written back to x_out.
__device__ __forceinline__ float norm_input(const norm_args &a, size_t row, int i) {
    const size_t at = row + i;
    if (!a.r1) return __half2float(a.x[at]);
    float r = __half2float(a.r1[at]);
    if (a.r2) r += __half2float(a.r2[at]);
    const __half h = __float2half_rn(__half2float(a.x[at]) + r);
    a.x_out[at] = h;
    return __half2float(h);
}

template <bool RMS>
__device__ __forceinline__ void norm_output(const norm_args &a, size_t row, int i, float v,
                                            float mean, float rstd) {
    const float n = (v - mean) * rstd;
    float y = n * a.w_a[i];
    if (!RMS && a.b_a) y += a.b_a[i];
    a.out_a[row + i] = __float2half_rn(y);
    if (a.out_m) {
        float z = n * a.w_m[i];
        if (!RMS && a.b_m) z += a.b_m[i];
        a.out_m[row + i] = __float2half_rn(z);
    }
}

template <bool RMS>
__global__ void __launch_bounds__(NORM_THREADS) k_norm_regs(const norm_args a) {
    __shared__ float red[32];
    const size_t row = (size_t)blockIdx.x * a.d;
    float v[NORM_VPT];
    float s = 0.0f;
    unsigned valid = 0;
#pragma unroll
    for (int e = 0; e < NORM_VPT; e++) {
        const int i = threadIdx.x + e * NORM_THREADS;
        v[e] = i < a.d ? norm_input(a, row, i) : 0.0f;
        valid |= (i < a.d ? 1u : 0u) << e;
        s += RMS ? v[e] * v[e] : v[e];
    }
    float mean, rstd;
    norm_stats<RMS, NORM_VPT>(v, valid, s, red, a, mean, rstd);
#pragma unroll
    for (int e = 0; e < NORM_VPT; e++) {
        const int i = threadIdx.x + e * NORM_THREADS;
        if (i < a.d) norm_output<RMS>(a, row, i, v[e], mean, rstd);
    }
}

template <bool RMS>
__global__ void __launch_bounds__(NORM_THREADS) k_norm_loop(const norm_args a) {
    __shared__ float red[32];
    const size_t row = (size_t)blockIdx.x * a.d;
    const __half *xr = a.x + row;
    if (a.r1) { // each thread re-reads only the elements it wrote: no barrier needed
        for (int i = threadIdx.x; i < a.d; i += blockDim.x) norm_input(a, row, i);
        xr = a.x_out + row;
    }
    float mean = 0.0f, s = 0.0f;
    if (!RMS) {
        for (int i = threadIdx.x; i < a.d; i += blockDim.x) s += __half2float(xr[i]);
        mean = block_sum(s, red) / a.d;
        s = 0.0f;
    }
    for (int i = threadIdx.x; i < a.d; i += blockDim.x) {
        const float c = __half2float(xr[i]) - mean;
        s += c * c;
    }
    const float rstd = rsqrtf(block_sum(s, red) / a.d + a.eps);
    for (int i = threadIdx.x; i < a.d; i += blockDim.x)
        norm_output<RMS>(a, row, i, __half2float(xr[i]), mean, rstd);
}

// The latency path for rows of d % 8 == 0 values, d <= NORM_VEC_THREADS * 8 * NORM_VEC_N: each
// thread owns NORM_VEC_N runs of 8 values and issues every load it needs (x, residuals, and the
// weights, which do not depend on the statistics) with 16-byte vectors before its first store, so
// a row costs one memory round trip plus the reductions. (x_out aliases x: a store before a load
// would serialise the loads behind it.)
#define NORM_VEC_THREADS 512
#define NORM_VEC_N 2

__device__ __forceinline__ void half8_to_f32(uint4 u, float *f) {
    const __half2 *h = reinterpret_cast<const __half2 *>(&u);
#pragma unroll
    for (int e = 0; e < 4; e++) {
        const float2 t = __half22float2(h[e]);
        f[2 * e] = t.x;
        f[2 * e + 1] = t.y;
    }
}

__device__ __forceinline__ uint4 f32_to_half8(const float *f) {
    uint4 u;
    __half2 *h = reinterpret_cast<__half2 *>(&u);
#pragma unroll
    for (int e = 0; e < 4; e++) h[e] = __floats2half2_rn(f[2 * e], f[2 * e + 1]);
    return u;
}

__device__ __forceinline__ void load_f32x8(const float *p, float *f) {
    const float4 a = reinterpret_cast<const float4 *>(p)[0];
    const float4 b = reinterpret_cast<const float4 *>(p)[1];
    f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
}

template <bool RMS>
__global__ void __launch_bounds__(NORM_VEC_THREADS) k_norm_vec(const norm_args a) {
    __shared__ float red[32];
    const size_t row = (size_t)blockIdx.x * a.d;
    const bool has_b = !RMS && a.b_a, has_m = a.out_m != NULL, has_bm = has_m && !RMS && a.b_m;
    float v[NORM_VEC_N][8], wa[NORM_VEC_N][8], ba[NORM_VEC_N][8], wm[NORM_VEC_N][8],
        bm[NORM_VEC_N][8];
    bool ok[NORM_VEC_N];
    // ---- every load first
#pragma unroll
    for (int e = 0; e < NORM_VEC_N; e++) {
        const int i = (threadIdx.x + e * blockDim.x) * 8;
        ok[e] = i < a.d;
        float r[8];
#pragma unroll
        for (int k = 0; k < 8; k++)
            v[e][k] = r[k] = wa[e][k] = ba[e][k] = wm[e][k] = bm[e][k] = 0.0f;
        if (!ok[e]) continue;
        half8_to_f32(*reinterpret_cast<const uint4 *>(a.x + row + i), v[e]);
        if (a.r1) {
            half8_to_f32(*reinterpret_cast<const uint4 *>(a.r1 + row + i), r);
#pragma unroll
            for (int k = 0; k < 8; k++) ba[e][k] = r[k]; // ba doubles as r1's slot until stored
            if (a.r2) half8_to_f32(*reinterpret_cast<const uint4 *>(a.r2 + row + i), r);
            else
#pragma unroll
                for (int k = 0; k < 8; k++) r[k] = 0.0f;
#pragma unroll
            for (int k = 0; k < 8; k++) wm[e][k] = r[k]; // wm doubles as r2's slot
        }
    }
    // ---- residual add (rounded to f16 once) and its store
    float s = 0.0f;
#pragma unroll
    for (int e = 0; e < NORM_VEC_N; e++) {
        if (a.r1 && ok[e]) {
#pragma unroll
            for (int k = 0; k < 8; k++)
                v[e][k] = __half2float(__float2half_rn(v[e][k] + (ba[e][k] + wm[e][k])));
            *reinterpret_cast<uint4 *>(a.x_out + row + (threadIdx.x + e * blockDim.x) * 8) =
                f32_to_half8(v[e]);
        }
#pragma unroll
        for (int k = 0; k < 8; k++) s += RMS ? v[e][k] * v[e][k] : v[e][k];
    }
    // ---- the weights (independent of the statistics: in flight during the reductions)
#pragma unroll
    for (int e = 0; e < NORM_VEC_N; e++) {
        const int i = (threadIdx.x + e * blockDim.x) * 8;
        if (!ok[e]) continue;
        load_f32x8(a.w_a + i, wa[e]);
        if (has_b) load_f32x8(a.b_a + i, ba[e]);
        if (has_m) load_f32x8(a.w_m + i, wm[e]);
        if (has_bm) load_f32x8(a.b_m + i, bm[e]);
    }
    unsigned valid = 0;
#pragma unroll
    for (int e = 0; e < NORM_VEC_N; e++) valid |= (ok[e] ? 0xffu : 0u) << (8 * e);
    float mean, rstd;
    norm_stats<RMS, NORM_VEC_N * 8>(&v[0][0], valid, s, red, a, mean, rstd);
#pragma unroll
    for (int e = 0; e < NORM_VEC_N; e++) {
        if (!ok[e]) continue;
        const size_t at = row + (threadIdx.x + e * blockDim.x) * 8;
        float y[8], z[8];
#pragma unroll
        for (int k = 0; k < 8; k++) {
            const float n = (v[e][k] - mean) * rstd;
            y[k] = n * wa[e][k] + (has_b ? ba[e][k] : 0.0f);
            z[k] = n * wm[e][k] + (has_bm ? bm[e][k] : 0.0f);
        }
        *reinterpret_cast<uint4 *>(a.out_a + at) = f32_to_half8(y);
        if (has_m) *reinterpret_cast<uint4 *>(a.out_m + at) = f32_to_half8(z);
    }
}

static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

static void norm_launch(backend *b, const norm_args &a, int rms, int n_tok, const char *what) {
    cuda_ctx *c = cuda_ctx_of(b);
    if (n_tok <= 0) return;
    const bool vec = a.d % 8 == 0 && a.d <= NORM_VEC_THREADS * 8 * NORM_VEC_N && aligned16(a.x) &&
                     aligned16(a.x_out) && aligned16(a.r1) && aligned16(a.r2) &&
                     aligned16(a.out_a) && aligned16(a.out_m) && aligned16(a.w_a) &&
                     aligned16(a.b_a) && aligned16(a.w_m) && aligned16(a.b_m);
    if (vec) {
        const int runs = a.d / 8, per = (runs + NORM_VEC_N - 1) / NORM_VEC_N;
        const int threads = (per + 31) / 32 * 32;
        if (rms)
            k_norm_vec<true><<<n_tok, threads, 0, c->stream>>>(a);
        else
            k_norm_vec<false><<<n_tok, threads, 0, c->stream>>>(a);
        CUDA_LAUNCHED(c, what);
        return;
    }
    const bool regs = a.d <= NORM_THREADS * NORM_VPT;
    if (rms && regs)
        k_norm_regs<true><<<n_tok, NORM_THREADS, 0, c->stream>>>(a);
    else if (rms)
        k_norm_loop<true><<<n_tok, NORM_THREADS, 0, c->stream>>>(a);
    else if (regs)
        k_norm_regs<false><<<n_tok, NORM_THREADS, 0, c->stream>>>(a);
    else
        k_norm_loop<false><<<n_tok, NORM_THREADS, 0, c->stream>>>(a);
    CUDA_LAUNCHED(c, what);
}

void cuda_layernorm(backend *b, void *out, const void *x, const float *w, const float *bias,
                    int n_tok, int d, float eps) {
    norm_args a = {NULL, (const __half *)x, NULL, NULL, (__half *)out, w, bias, NULL, NULL, NULL,
                   d, eps};
    norm_launch(b, a, 0, n_tok, "layernorm");
}

void cuda_rmsnorm(backend *b, void *out, const void *x, const float *w, int n_tok, int d,
                  float eps) {
    norm_args a = {NULL, (const __half *)x, NULL, NULL, (__half *)out, w, NULL, NULL, NULL, NULL,
                   d, eps};
    norm_launch(b, a, 1, n_tok, "rmsnorm");
}

void cuda_residual_norm(backend *b, void *x, const void *r1, const void *r2, void *out_a,
                        bk_norm na, void *out_m, bk_norm nm, int rms, int n_tok, int d,
                        float eps) {
    norm_args a = {(__half *)x,     (const __half *)x, (const __half *)r1,
                   r1 ? (const __half *)r2 : NULL,      (__half *)out_a,
                   na.w,            rms ? NULL : na.bias, (__half *)out_m,
                   nm.w,            rms ? NULL : nm.bias, d,
                   eps};
    norm_launch(b, a, rms, n_tok, "residual_norm");
}
