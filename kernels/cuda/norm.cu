// LayerNorm and RMSNorm over rows of f16 activations: one block per row, statistics in f32
// (LayerNorm: mean, then the variance of the centred values, as torch computes it). Rows of up to
// NORM_THREADS * NORM_VPT values are read once into registers (a decode step normalises one row,
// so latency is what counts); longer rows take the three-pass loop.
#include "kernels/cuda/cuda_backend.cuh"

#define NORM_THREADS 1024
#define NORM_VPT 8 // values per thread held in registers

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

// rms: RMSNorm (no mean, no bias); else LayerNorm.
template <bool RMS>
__global__ void __launch_bounds__(NORM_THREADS)
    k_norm_regs(__half *out, const __half *x, const float *w, const float *bias, int d, float eps) {
    __shared__ float red[32];
    const __half *xr = x + (size_t)blockIdx.x * d;
    __half *orow = out + (size_t)blockIdx.x * d;
    float v[NORM_VPT];
    float s = 0.0f;
#pragma unroll
    for (int e = 0; e < NORM_VPT; e++) {
        const int i = threadIdx.x + e * NORM_THREADS;
        v[e] = i < d ? __half2float(xr[i]) : 0.0f;
        s += RMS ? v[e] * v[e] : v[e];
    }
    s = block_sum(s, red);
    float mean = 0.0f, rstd;
    if (RMS) {
        rstd = rsqrtf(s / d + eps);
    } else {
        mean = s / d;
        float var = 0.0f;
#pragma unroll
        for (int e = 0; e < NORM_VPT; e++) {
            const int i = threadIdx.x + e * NORM_THREADS;
            const float c = v[e] - mean;
            var += i < d ? c * c : 0.0f;
        }
        rstd = rsqrtf(block_sum(var, red) / d + eps);
    }
#pragma unroll
    for (int e = 0; e < NORM_VPT; e++) {
        const int i = threadIdx.x + e * NORM_THREADS;
        if (i < d) {
            float y = (v[e] - mean) * rstd * w[i];
            if (!RMS && bias) y += bias[i];
            orow[i] = __float2half_rn(y);
        }
    }
}

template <bool RMS>
__global__ void __launch_bounds__(NORM_THREADS)
    k_norm_loop(__half *out, const __half *x, const float *w, const float *bias, int d, float eps) {
    __shared__ float red[32];
    const __half *xr = x + (size_t)blockIdx.x * d;
    __half *orow = out + (size_t)blockIdx.x * d;
    float mean = 0.0f, s = 0.0f;
    if (!RMS) {
        for (int i = threadIdx.x; i < d; i += blockDim.x) s += __half2float(xr[i]);
        mean = block_sum(s, red) / d;
        s = 0.0f;
    }
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        const float c = __half2float(xr[i]) - mean;
        s += c * c;
    }
    const float rstd = rsqrtf(block_sum(s, red) / d + eps);
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float y = (__half2float(xr[i]) - mean) * rstd * w[i];
        if (!RMS && bias) y += bias[i];
        orow[i] = __float2half_rn(y);
    }
}

template <bool RMS>
static void norm_launch(backend *b, void *out, const void *x, const float *w, const float *bias,
                        int n_tok, int d, float eps, const char *what) {
    cuda_ctx *c = cuda_ctx_of(b);
    if (n_tok <= 0) return;
    if (d <= NORM_THREADS * NORM_VPT)
        k_norm_regs<RMS><<<n_tok, NORM_THREADS, 0, c->stream>>>((__half *)out, (const __half *)x,
                                                                 w, bias, d, eps);
    else
        k_norm_loop<RMS><<<n_tok, NORM_THREADS, 0, c->stream>>>((__half *)out, (const __half *)x,
                                                                 w, bias, d, eps);
    CUDA_LAUNCHED(c, what);
}

void cuda_layernorm(backend *b, void *out, const void *x, const float *w, const float *bias,
                    int n_tok, int d, float eps) {
    norm_launch<false>(b, out, x, w, bias, n_tok, d, eps, "layernorm");
}

void cuda_rmsnorm(backend *b, void *out, const void *x, const float *w, int n_tok, int d,
                  float eps) {
    norm_launch<true>(b, out, x, w, NULL, n_tok, d, eps, "rmsnorm");
}
