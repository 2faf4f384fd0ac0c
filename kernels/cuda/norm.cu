// LayerNorm and RMSNorm over rows of f16 activations: one block per row, statistics in f32
// (two passes for LayerNorm: mean, then variance of the centred values, as torch computes it).
#include "kernels/cuda/cuda_backend.cuh"

#define NORM_THREADS 256

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

__global__ void __launch_bounds__(NORM_THREADS)
    k_layernorm(__half *out, const __half *x, const float *w, const float *bias, int d, float eps) {
    __shared__ float red[32];
    const __half *xr = x + (size_t)blockIdx.x * d;
    __half *orow = out + (size_t)blockIdx.x * d;
    float s = 0.0f;
    for (int i = threadIdx.x; i < d; i += blockDim.x) s += __half2float(xr[i]);
    const float mean = block_sum(s, red) / d;
    float v = 0.0f;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float c = __half2float(xr[i]) - mean;
        v += c * c;
    }
    const float rstd = rsqrtf(block_sum(v, red) / d + eps);
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float y = (__half2float(xr[i]) - mean) * rstd * w[i];
        if (bias) y += bias[i];
        orow[i] = __float2half_rn(y);
    }
}

__global__ void __launch_bounds__(NORM_THREADS)
    k_rmsnorm(__half *out, const __half *x, const float *w, int d, float eps) {
    __shared__ float red[32];
    const __half *xr = x + (size_t)blockIdx.x * d;
    __half *orow = out + (size_t)blockIdx.x * d;
    float s = 0.0f;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float v = __half2float(xr[i]);
        s += v * v;
    }
    const float rstd = rsqrtf(block_sum(s, red) / d + eps);
    for (int i = threadIdx.x; i < d; i += blockDim.x)
        orow[i] = __float2half_rn(__half2float(xr[i]) * rstd * w[i]);
}

void cuda_layernorm(backend *b, void *out, const void *x, const float *w, const float *bias,
                    int n_tok, int d, float eps) {
    cuda_ctx *c = cuda_ctx_of(b);
    if (n_tok <= 0) return;
    k_layernorm<<<n_tok, NORM_THREADS, 0, c->stream>>>((__half *)out, (const __half *)x, w, bias,
                                                       d, eps);
    CUDA_LAUNCHED(c, "layernorm");
}

void cuda_rmsnorm(backend *b, void *out, const void *x, const float *w, int n_tok, int d,
                  float eps) {
    cuda_ctx *c = cuda_ctx_of(b);
    if (n_tok <= 0) return;
    k_rmsnorm<<<n_tok, NORM_THREADS, 0, c->stream>>>((__half *)out, (const __half *)x, w, d, eps);
    CUDA_LAUNCHED(c, "rmsnorm");
}
