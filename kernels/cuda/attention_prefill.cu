// Causal flash attention for prefill (many query rows per sequence) over the paged KV cache, on
// tensor cores (mma.sync m16n8k16, f16 operands, f32 accumulation), FlashAttention-2 style: no
// L x L matrix, and scores, probabilities and the output accumulator stay in registers. A block
// owns 64 query rows of one head (16 per warp) and walks 64-key tiles of K/V staged in shared
// memory up to its causal limit with an online softmax. The S accumulator layout of m16n8 tiles
// is exactly the A-operand layout of the next m16n8k16, so P never leaves registers; V fragments
// come from ldmatrix.trans. Blocks of one query tile are ordered head-fastest, so the query heads
// of a KV group run together and re-read the same K/V tiles from L2.
#include <math.h>

#include "kernels/cuda/cuda_backend.cuh"

#define PF_ROWS 64 // query rows per block (4 warps x 16)
#define PF_KEYS 64 // keys per tile
#define PF_THREADS 128

__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                          uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, "
                 "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void *smem_ptr) {
    const uint32_t addr = (uint32_t)__cvta_generic_to_shared(smem_ptr);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// 16-byte global -> shared copy that bypasses registers; src_bytes 0 writes zeros.
__device__ __forceinline__ void cp_async16(void *smem_dst, const void *src, int src_bytes) {
    const uint32_t dst = (uint32_t)__cvta_generic_to_shared(smem_dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(src_bytes));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n"); }

template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&h);
}

template <int D>
__global__ void __launch_bounds__(PF_THREADS)
    k_attn_prefill(__half *out, const __half *q, const __half *kc, const __half *vc,
                   const attn_seq *seqs, const int32_t *tables, int n_head, int n_head_kv,
                   float scale) {
    constexpr int LDH = D + 8; // padded row: conflict-free fragment loads and ldmatrix
    extern __shared__ __align__(16) __half pf_smem[]; // K[2][PF_KEYS][LDH], V[2][PF_KEYS][LDH]
    const int h = blockIdx.x, tile = blockIdx.y;
    const attn_seq sq = seqs[blockIdx.z];
    const int row0 = tile * PF_ROWS;
    if (row0 >= sq.n_q) return;
    const int kvh = h / (n_head / n_head_kv);
    const int32_t *table = tables + sq.block_table_offset;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
    const int r_lo = row0 + warp * 16 + g, r_hi = r_lo + 8; // this thread's rows (in the seq)
    const int qpos_lo = sq.n_past + r_lo, qpos_hi = sq.n_past + r_hi;
    const int warp_last = sq.n_past + row0 + warp * 16 + 15; // largest position of the warp

    // Q fragments for all of head_dim, kept in registers for the whole key walk.
    uint32_t qf[D / 16][4];
    {
        const __half *q_lo = q + ((size_t)(sq.q_start + r_lo) * n_head + h) * D;
        const __half *q_hi = q + ((size_t)(sq.q_start + r_hi) * n_head + h) * D;
        const bool ok_lo = r_lo < sq.n_q, ok_hi = r_hi < sq.n_q;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            const int c = kk * 16 + 2 * t;
            qf[kk][0] = ok_lo ? *reinterpret_cast<const uint32_t *>(q_lo + c) : 0u;
            qf[kk][1] = ok_hi ? *reinterpret_cast<const uint32_t *>(q_hi + c) : 0u;
            qf[kk][2] = ok_lo ? *reinterpret_cast<const uint32_t *>(q_lo + c + 8) : 0u;
            qf[kk][3] = ok_hi ? *reinterpret_cast<const uint32_t *>(q_hi + c + 8) : 0u;
        }
    }
    float o[D / 8][4];
#pragma unroll
    for (int n = 0; n < D / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m_lo = -INFINITY, m_hi = -INFINITY, l_lo = 0.0f, l_hi = 0.0f;
    const float sl2 = scale * 1.4426950408889634f; // softmax in base 2

    const int last_row = min(sq.n_q, row0 + PF_ROWS) - 1;
    const int n_keys = sq.n_past + last_row + 1; // keys any row of this block can see
    constexpr int V8 = D / 8;                    // 16-byte vectors per row
    // K/V tiles are double-buffered with cp.async: tile i+1 loads while tile i is computed.
    auto load_tile = [&](int kt, int buf) {
        __half *Kb = pf_smem + (size_t)buf * 2 * PF_KEYS * LDH, *Vb = Kb + PF_KEYS * LDH;
        for (int i = threadIdx.x; i < PF_KEYS * V8; i += PF_THREADS) {
            const int j = i / V8, c8 = i - j * V8, p = kt + j;
            const bool ok = p < n_keys;
            const size_t src = ok ? (((size_t)table[p / KV_BLOCK_SIZE] * n_head_kv + kvh) * KV_BLOCK_SIZE +
                                     p % KV_BLOCK_SIZE) * D + c8 * 8
                                  : 0;
            cp_async16(&Kb[j * LDH + c8 * 8], kc + src, ok ? 16 : 0);
            cp_async16(&Vb[j * LDH + c8 * 8], vc + src, ok ? 16 : 0);
        }
        cp_async_commit();
    };
    load_tile(0, 0);
    for (int kt = 0, buf = 0; kt < n_keys; kt += PF_KEYS, buf ^= 1) {
        if (kt + PF_KEYS < n_keys) {
            load_tile(kt + PF_KEYS, buf ^ 1);
            cp_async_wait<1>(); // this tile has landed; the next may still be in flight
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const __half *Ks = pf_smem + (size_t)buf * 2 * PF_KEYS * LDH, *Vs = Ks + PF_KEYS * LDH;
        if (kt > warp_last) { // the whole tile is in this warp's causal future
            __syncthreads();
            continue;
        }

        // S[16 rows, 64 keys] = Q K^T, as 8 m16n8 tiles
        float s[8][4];
#pragma unroll
        for (int j = 0; j < 8; j++) {
            s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
            const __half *krow = Ks + (j * 8 + g) * LDH + 2 * t;
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                const uint32_t b0 = *reinterpret_cast<const uint32_t *>(krow + kk * 16);
                const uint32_t b1 = *reinterpret_cast<const uint32_t *>(krow + kk * 16 + 8);
                mma_16816(s[j], qf[kk], b0, b1);
            }
        }
        // causal mask, running max (rows are shared by the 4 lanes of a quad)
        float mx_lo = m_lo, mx_hi = m_hi;
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int kp = kt + j * 8 + 2 * t + e;
                s[j][e] = kp <= qpos_lo && kp < n_keys ? s[j][e] * sl2 : -INFINITY;
                s[j][2 + e] = kp <= qpos_hi && kp < n_keys ? s[j][2 + e] * sl2 : -INFINITY;
                mx_lo = fmaxf(mx_lo, s[j][e]);
                mx_hi = fmaxf(mx_hi, s[j][2 + e]);
            }
        mx_lo = fmaxf(mx_lo, __shfl_xor_sync(0xffffffffu, mx_lo, 1));
        mx_lo = fmaxf(mx_lo, __shfl_xor_sync(0xffffffffu, mx_lo, 2));
        mx_hi = fmaxf(mx_hi, __shfl_xor_sync(0xffffffffu, mx_hi, 1));
        mx_hi = fmaxf(mx_hi, __shfl_xor_sync(0xffffffffu, mx_hi, 2));
        // Every row sees key 0 in the first tile, so the maxima are finite from here on.
        const float a_lo = exp2f(m_lo - mx_lo), a_hi = exp2f(m_hi - mx_hi);
        m_lo = mx_lo;
        m_hi = mx_hi;
        float sum_lo = 0.0f, sum_hi = 0.0f;
#pragma unroll
        for (int j = 0; j < 8; j++) {
            s[j][0] = exp2f(s[j][0] - m_lo);
            s[j][1] = exp2f(s[j][1] - m_lo);
            s[j][2] = exp2f(s[j][2] - m_hi);
            s[j][3] = exp2f(s[j][3] - m_hi);
            sum_lo += s[j][0] + s[j][1];
            sum_hi += s[j][2] + s[j][3];
        }
        l_lo = l_lo * a_lo + sum_lo; // per-lane partial sums; the quad is summed at the end
        l_hi = l_hi * a_hi + sum_hi;
#pragma unroll
        for (int n = 0; n < D / 8; n++) {
            o[n][0] *= a_lo;
            o[n][1] *= a_lo;
            o[n][2] *= a_hi;
            o[n][3] *= a_hi;
        }
        // O[16, D] += P[16, 64] V[64, D]
#pragma unroll
        for (int kk = 0; kk < PF_KEYS / 16; kk++) {
            const uint32_t a[4] = {pack_half2(s[2 * kk][0], s[2 * kk][1]),
                                   pack_half2(s[2 * kk][2], s[2 * kk][3]),
                                   pack_half2(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                   pack_half2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
            const int mi = lane >> 3, r = lane & 7;
            const __half *vbase = Vs + (kk * 16 + (mi & 1) * 8 + r) * LDH + (mi >> 1) * 8;
#pragma unroll
            for (int nd = 0; nd < D / 16; nd++) {
                uint32_t b[4];
                ldmatrix_x4_trans(b, vbase + nd * 16);
                mma_16816(o[2 * nd], a, b[0], b[1]);
                mma_16816(o[2 * nd + 1], a, b[2], b[3]);
            }
        }
        __syncthreads(); // the next iteration's load overwrites the other buffer's last reader
    }
    l_lo += __shfl_xor_sync(0xffffffffu, l_lo, 1);
    l_lo += __shfl_xor_sync(0xffffffffu, l_lo, 2);
    l_hi += __shfl_xor_sync(0xffffffffu, l_hi, 1);
    l_hi += __shfl_xor_sync(0xffffffffu, l_hi, 2);
    const float inv_lo = 1.0f / l_lo, inv_hi = 1.0f / l_hi;
    __half *o_lo = out + ((size_t)(sq.q_start + r_lo) * n_head + h) * D + 2 * t;
    __half *o_hi = out + ((size_t)(sq.q_start + r_hi) * n_head + h) * D + 2 * t;
#pragma unroll
    for (int n = 0; n < D / 8; n++) {
        if (r_lo < sq.n_q)
            *reinterpret_cast<__half2 *>(o_lo + n * 8) =
                __floats2half2_rn(o[n][0] * inv_lo, o[n][1] * inv_lo);
        if (r_hi < sq.n_q)
            *reinterpret_cast<__half2 *>(o_hi + n * 8) =
                __floats2half2_rn(o[n][2] * inv_hi, o[n][3] * inv_hi);
    }
}

template <int D>
static void launch_prefill(cuda_ctx *c, __half *out, const __half *q, const __half *k_cache,
                           const __half *v_cache, const attn_batch *ab, int n_head, int n_head_kv,
                           float scale) {
    const size_t smem = (size_t)2 * 2 * PF_KEYS * (D + 8) * sizeof(__half);
    if (smem > (48 << 10) &&
        cuda_check(c, cudaFuncSetAttribute(k_attn_prefill<D>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
                   "attention prefill smem attribute"))
        return;
    dim3 grid(n_head, (ab->max_n_q + PF_ROWS - 1) / PF_ROWS, ab->n_seq);
    k_attn_prefill<D><<<grid, PF_THREADS, smem, c->stream>>>(
        out, q, k_cache, v_cache, ab->seqs_dev, ab->block_tables_dev, n_head, n_head_kv, scale);
    CUDA_LAUNCHED(c, "attention prefill");
}

int cuda_attention_prefill(cuda_ctx *c, __half *out, const __half *q, const __half *k_cache,
                           const __half *v_cache, const attn_batch *ab, int n_head, int n_head_kv,
                           int head_dim, float scale) {
    switch (head_dim) {
    case 64: launch_prefill<64>(c, out, q, k_cache, v_cache, ab, n_head, n_head_kv, scale); return 1;
    case 128: launch_prefill<128>(c, out, q, k_cache, v_cache, ab, n_head, n_head_kv, scale); return 1;
    default: return 0;
    }
}
