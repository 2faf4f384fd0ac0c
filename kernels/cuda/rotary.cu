// NeoX half rotation with a per-token base. The angle is computed in f32 exactly as HF does
// (inv_freq = 1 / base^(2i/rot_dim) rounded to f32, then pos * inv_freq as an f32 product);
// cos/sin of that f32 angle are taken in double because --use_fast_math would otherwise turn
// sinf/cosf into approximations that are wrong for the large angles of 12K-token positions.
#include "kernels/cuda/cuda_backend.cuh"

__global__ void k_rotary(__half *x, const int32_t *pos, const float *base, int n_tok, int n_heads,
                         int head_dim, int rot_dim, float pos_scale) {
    const int half_rot = rot_dim / 2;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)n_tok * n_heads * half_rot) return;
    const int r = (int)(i % half_rot);
    const size_t th = i / half_rot; // token * n_heads + head
    const size_t t = th / n_heads;
    const float expo = (float)(2 * r) / (float)rot_dim;
    const float inv_freq = (float)(1.0 / pow((double)base[t], (double)expo));
    const float p = __fmul_rn((float)pos[t], pos_scale);
    const float angle = __fmul_rn(p, inv_freq);
    double sd, cd;
    sincos((double)angle, &sd, &cd);
    const float cs = (float)cd, sn = (float)sd;
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
