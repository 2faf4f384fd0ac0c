// NeoX half rotation with a per-token base, and the fused QKV split + rotary + KV-cache store.
// The angle is computed in f32 exactly as HF does (inv_freq = 1 / base^(2i/rot_dim) rounded to
// f32, then pos * inv_freq as an f32 product); cos/sin of that f32 angle are taken in double
// because --use_fast_math would otherwise turn sinf/cosf into approximations that are wrong for
// the large angles of 12K-token positions.
#include "kernels/cuda/cuda_backend.cuh"

// cos and sin of rotary pair r of a token at position pos with base `base`.
__device__ __forceinline__ void rotary_cos_sin(int32_t pos, float base, int r, int rot_dim,
                                               float pos_scale, float *cs, float *sn) {
    const float expo = (float)(2 * r) / (float)rot_dim;
    const float inv_freq = (float)(1.0 / pow((double)base, (double)expo));
    const float p = __fmul_rn((float)pos, pos_scale);
    const float angle = __fmul_rn(p, inv_freq);
    double sd, cd;
    sincos((double)angle, &sd, &cd);
    *cs = (float)cd;
    *sn = (float)sd;
}

__global__ void k_rotary(__half *x, const int32_t *pos, const float *base, int n_tok, int n_heads,
                         int head_dim, int rot_dim, float pos_scale) {
    const int half_rot = rot_dim / 2;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)n_tok * n_heads * half_rot) return;
    const int r = (int)(i % half_rot);
    const size_t th = i / half_rot; // token * n_heads + head
    const size_t t = th / n_heads;
    float cs, sn;
    rotary_cos_sin(pos[t], base[t], r, rot_dim, pos_scale, &cs, &sn);
    __half *row = x + th * head_dim;
    const float x1 = __half2float(row[r]), x2 = __half2float(row[r + half_rot]);
    row[r] = __float2half_rn(x1 * cs - x2 * sn);
    row[r + half_rot] = __float2half_rn(x2 * cs + x1 * sn);
}

void cuda_rotary(backend *b, void *x, const int32_t *pos_dev, const float *base_dev, int n_tok,
                 int n_heads, int head_dim, int rot_dim, float pos_scale) {
    cuda_ctx *c = cuda_ctx_of(b);
    size_t n = (size_t)n_tok * n_heads * (rot_dim / 2);
    if (n == 0) return;
    k_rotary<<<cuda_blocks(n, 256), 256, 0, c->stream>>>((__half *)x, pos_dev, base_dev, n_tok,
                                                         n_heads, head_dim, rot_dim, pos_scale);
    CUDA_LAUNCHED(c, "rotary");
}

#define QRS_THREADS 128

// One block per (token, KV head): the block's cos/sin table is computed once into shared memory,
// then its group + 2 heads (queries, key, value) are moved, a thread per rotary pair (dims i and
// i + rot_dim/2) or per unrotated dim past rot_dim. Cache layout as in kv_store.
__global__ void __launch_bounds__(QRS_THREADS)
    k_qkv_rotary_store(__half *q, __half *kc, __half *vc, const __half *qkv, const int32_t *pos,
                       const float *base, const int32_t *slots, int n_head, int n_head_kv,
                       int head_dim, int rot_dim, float pos_scale) {
    extern __shared__ float tab[]; // cos [half], sin [half]
    const int kvh = blockIdx.y, half = rot_dim / 2, group = n_head / n_head_kv;
    const size_t t = blockIdx.x;
    for (int r = threadIdx.x; r < half; r += blockDim.x)
        rotary_cos_sin(pos[t], base[t], r, rot_dim, pos_scale, &tab[r], &tab[half + r]);
    __syncthreads();
    const int slot = slots[t], per_head = head_dim - half;
    const __half *src = qkv + ((t * n_head_kv + kvh) * (group + 2)) * (size_t)head_dim;
    const size_t cache_at = slot < 0 ? 0
                                     : (((size_t)(slot / KV_BLOCK_SIZE) * n_head_kv + kvh) *
                                            KV_BLOCK_SIZE + slot % KV_BLOCK_SIZE) * head_dim;
    for (int it = threadIdx.x; it < (group + 2) * per_head; it += blockDim.x) {
        const int h = it / per_head, j = it - h * per_head;
        const __half *in = src + (size_t)h * head_dim;
        __half *dst;
        if (h < group)
            dst = q + (t * n_head + (size_t)kvh * group + h) * head_dim;
        else if (slot < 0)
            continue;
        else
            dst = (h == group ? kc : vc) + cache_at;
        if (j >= half) { // past the rotated dims
            dst[j + half] = in[j + half];
        } else if (h > group) { // values are not rotated
            dst[j] = in[j];
            dst[j + half] = in[j + half];
        } else {
            const float x1 = __half2float(in[j]), x2 = __half2float(in[j + half]);
            const float cs = tab[j], sn = tab[half + j];
            dst[j] = __float2half_rn(x1 * cs - x2 * sn);
            dst[j + half] = __float2half_rn(x2 * cs + x1 * sn);
        }
    }
}

void cuda_qkv_rotary_store(backend *b, void *q, void *k_cache, void *v_cache, const void *qkv,
                           const int32_t *pos_dev, const float *base_dev, const int32_t *slots_dev,
                           int n_tok, int n_head, int n_head_kv, int head_dim, int rot_dim,
                           float pos_scale) {
    cuda_ctx *c = cuda_ctx_of(b);
    dim3 grid(n_tok, n_head_kv);
    k_qkv_rotary_store<<<grid, QRS_THREADS, (size_t)rot_dim * sizeof(float), c->stream>>>(
        (__half *)q, (__half *)k_cache, (__half *)v_cache, (const __half *)qkv, pos_dev, base_dev,
        slots_dev, n_head, n_head_kv, head_dim, rot_dim, pos_scale);
    CUDA_LAUNCHED(c, "qkv_rotary_store");
}
