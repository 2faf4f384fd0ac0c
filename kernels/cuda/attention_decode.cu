// Paged attention for few query rows per sequence (decode), flash-decoding style, and the general
// fallback for any ragged batch and head_dim.
//
// Generic kernel: one block per (query token, KV head, context split): it streams its split of the paged cache
// [n_blocks, n_head_kv, KV_BLOCK_SIZE, head_dim] once through shared memory in tiles of 64 keys
// and scores them against ALL query heads of the KV head's group (GQA: each KV head is read once
// per token, not once per query head), keeping an online softmax per head. A reduce kernel then
// combines the splits with their max / sum statistics. Split counts come from max_ctx rounded up
// to GRAPH_CTX_BUCKET, so a captured decode graph stays valid for every context in its bucket.
#include <float.h>

#include "kernels/cuda/cuda_backend.cuh"

#define DEC_THREADS 128
#define DEC_TILE 64     // keys per shared-memory tile
#define DEC_CHUNK 256   // keys per split

struct dec_smem_layout {
    size_t k, v, q, o, s, stat, total;
};

__host__ __device__ static dec_smem_layout dec_layout(int group, int head_dim) {
    dec_smem_layout l;
    size_t off = 0;
    l.k = off;
    off += (size_t)DEC_TILE * (head_dim + 2) * sizeof(__half); // +2: conflict-free row reads
    l.v = off = (off + 15) & ~(size_t)15;
    off += (size_t)DEC_TILE * head_dim * sizeof(__half);
    l.q = off = (off + 15) & ~(size_t)15;
    off += (size_t)group * head_dim * sizeof(float);
    l.o = off;
    off += (size_t)group * head_dim * sizeof(float);
    l.s = off;
    off += (size_t)group * DEC_TILE * sizeof(float);
    l.stat = off; // m, l, alpha per head
    off += (size_t)3 * group * sizeof(float);
    l.total = off;
    return l;
}

// Finds the sequence holding batch row t (few sequences: a scan is cheap next to the keys).
__device__ static int seq_of_row(const attn_seq *seqs, int n_seq, int t) {
    for (int s = 0; s < n_seq; s++)
        if (t >= seqs[s].q_start && t < seqs[s].q_start + seqs[s].n_q) return s;
    return -1;
}

__global__ void __launch_bounds__(DEC_THREADS)
    k_attn_decode(float *part, const __half *q, const __half *kc, const __half *vc,
                  const attn_seq *seqs, const int32_t *tables, int n_seq, int n_head,
                  int n_head_kv, int head_dim, float scale, int n_splits) {
    extern __shared__ __align__(16) unsigned char smem[];
    const int t = blockIdx.x, kvh = blockIdx.y, split = blockIdx.z;
    const int group = n_head / n_head_kv;
    const dec_smem_layout L = dec_layout(group, head_dim);
    __half *Ks = (__half *)(smem + L.k);
    __half *Vs = (__half *)(smem + L.v);
    float *Qs = (float *)(smem + L.q), *Os = (float *)(smem + L.o), *S = (float *)(smem + L.s);
    float *Ms = (float *)(smem + L.stat), *Ls = Ms + group, *As = Ls + group;
    __shared__ int sh_seq;
    if (threadIdx.x == 0) sh_seq = seq_of_row(seqs, n_seq, t);
    __syncthreads();
    if (sh_seq < 0) return;
    const attn_seq sq = seqs[sh_seq];
    const int qpos = sq.n_past + (t - sq.q_start); // attends to keys [0, qpos]
    const int k0 = split * DEC_CHUNK;
    const int k1 = min(k0 + DEC_CHUNK, qpos + 1);
    if (k0 >= k1) return; // the reduce kernel ignores splits past the context
    const int32_t *table = tables + sq.block_table_offset;
    const int gd = group * head_dim;
    for (int i = threadIdx.x; i < gd; i += blockDim.x) {
        Qs[i] = __half2float(q[((size_t)t * n_head + (size_t)kvh * group) * head_dim + i]) * scale;
        Os[i] = 0.0f;
    }
    for (int g = threadIdx.x; g < group; g += blockDim.x) {
        Ms[g] = -FLT_MAX;
        Ls[g] = 0.0f;
    }
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, n_warps = blockDim.x / 32;
    for (int kt = k0; kt < k1; kt += DEC_TILE) {
        const int nk = min(DEC_TILE, k1 - kt);
        __syncthreads(); // previous tile fully consumed
        for (int i = threadIdx.x; i < nk * head_dim; i += blockDim.x) {
            const int j = i / head_dim, d = i - j * head_dim, p = kt + j;
            const size_t src = (((size_t)table[p / KV_BLOCK_SIZE] * n_head_kv + kvh) * KV_BLOCK_SIZE +
                                p % KV_BLOCK_SIZE) * head_dim + d;
            Ks[j * (head_dim + 2) + d] = kc[src];
            Vs[j * head_dim + d] = vc[src];
        }
        __syncthreads();
        for (int i = threadIdx.x; i < group * DEC_TILE; i += blockDim.x) {
            const int g = i / DEC_TILE, j = i - g * DEC_TILE;
            float acc = -FLT_MAX;
            if (j < nk) {
                acc = 0.0f;
                const float *qg = Qs + g * head_dim;
                const __half *kj = Ks + j * (head_dim + 2);
                for (int d = 0; d < head_dim; d++) acc += qg[d] * __half2float(kj[d]);
            }
            S[i] = acc;
        }
        __syncthreads();
        for (int g = warp; g < group; g += n_warps) { // online softmax, one warp per head
            float mx = -FLT_MAX;
            for (int j = lane; j < nk; j += 32) mx = fmaxf(mx, S[g * DEC_TILE + j]);
            for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
            const float m_new = fmaxf(Ms[g], mx);
            float sum = 0.0f;
            for (int j = lane; j < DEC_TILE; j += 32) {
                const float pj = j < nk ? __expf(S[g * DEC_TILE + j] - m_new) : 0.0f;
                S[g * DEC_TILE + j] = pj;
                sum += pj;
            }
            for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
            __syncwarp();
            if (lane == 0) {
                const float alpha = __expf(Ms[g] - m_new);
                As[g] = alpha;
                Ls[g] = Ls[g] * alpha + sum;
                Ms[g] = m_new;
            }
        }
        __syncthreads();
        for (int i = threadIdx.x; i < gd; i += blockDim.x) {
            const int g = i / head_dim, d = i - g * head_dim;
            const float *pg = S + g * DEC_TILE;
            float acc = Os[i] * As[g];
            for (int j = 0; j < nk; j++) acc += pg[j] * __half2float(Vs[j * head_dim + d]);
            Os[i] = acc;
        }
    }
    __syncthreads();
    // part layout per (row, head, split): [head_dim] unnormalised output, then m, l
    for (int i = threadIdx.x; i < gd; i += blockDim.x) {
        const int g = i / head_dim, d = i - g * head_dim;
        const int h = kvh * group + g;
        float *dst = part + (((size_t)t * n_head + h) * n_splits + split) * (head_dim + 2);
        dst[d] = Os[i];
        if (d == 0) {
            dst[head_dim] = Ms[g];
            dst[head_dim + 1] = Ls[g];
        }
    }
}

#define RED_THREADS 256

// Block-wide max / sum (all threads get the result); red holds 32 floats.
__device__ static float red_block(float v, float *red, bool is_max) {
    for (int o = 16; o > 0; o >>= 1) {
        const float u = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? fmaxf(v, u) : v + u;
    }
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads(); // red may still be read by a previous call
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < (int)(blockDim.x / 32) ? red[lane] : (is_max ? -FLT_MAX : 0.0f);
    for (int o = 16; o > 0; o >>= 1) {
        const float u = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? fmaxf(v, u) : v + u;
    }
    return v;
}

// Combines the splits of one (row, head): all loads are spread over the block (a 10K context
// has ~80 splits; walking them in one thread would cost more than the attention itself).
__global__ void __launch_bounds__(RED_THREADS)
    k_attn_reduce(__half *out, const float *part, const attn_seq *seqs, int n_seq, int n_head,
                  int head_dim, int n_splits, int chunk) {
    extern __shared__ float wsplit[]; // [n_splits] exp(m_s - max)
    __shared__ float red[32], acc[RED_THREADS];
    __shared__ int sh_valid;
    const int t = blockIdx.x, h = blockIdx.y;
    if (threadIdx.x == 0) {
        const int s = seq_of_row(seqs, n_seq, t);
        sh_valid = s < 0 ? 0 : (seqs[s].n_past + (t - seqs[s].q_start)) / chunk + 1;
    }
    __syncthreads();
    const int n_valid = sh_valid, stride = head_dim + 2;
    if (n_valid == 0) return;
    const float *p = part + ((size_t)t * n_head + h) * n_splits * stride;
    float mx = -FLT_MAX;
    for (int s = threadIdx.x; s < n_valid; s += blockDim.x) mx = fmaxf(mx, p[s * stride + head_dim]);
    mx = red_block(mx, red, true);
    float den = 0.0f;
    for (int s = threadIdx.x; s < n_valid; s += blockDim.x) {
        const float w = __expf(p[s * stride + head_dim] - mx);
        wsplit[s] = w;
        den += w * p[s * stride + head_dim + 1];
    }
    den = red_block(den, red, false); // its barriers also publish wsplit
    __half *o = out + ((size_t)t * n_head + h) * head_dim;
    if (head_dim < RED_THREADS) { // parts of the block take interleaved splits, then add up
        const int parts = RED_THREADS / head_dim, prt = threadIdx.x / head_dim;
        const int d = threadIdx.x - prt * head_dim;
        float num = 0.0f;
        if (prt < parts)
            for (int s = prt; s < n_valid; s += parts) num += wsplit[s] * p[s * stride + d];
        acc[threadIdx.x] = num;
        __syncthreads();
        if (threadIdx.x < head_dim) {
            float v = 0.0f;
            for (int q = 0; q < parts; q++) v += acc[q * head_dim + threadIdx.x];
            o[threadIdx.x] = __float2half_rn(v / den);
        }
    } else {
        for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
            float num = 0.0f;
            for (int s = 0; s < n_valid; s++) num += wsplit[s] * p[s * stride + d];
            o[d] = __float2half_rn(num / den);
        }
    }
}

// The fast path for head_dim 64/128 and up to 16 query heads per KV head. Each warp takes 32
// keys of the block's split, one key per lane: the lane issues the loads of its whole K and V rows
// at once (16-byte loads, so a split's bytes are all in flight together), scores its key against
// every query head of the group, and parks its V row in shared memory; the warp's softmax
// statistics come from shuffles; then each lane accumulates P V for its slice of head_dim from
// shared memory. The block's warps are merged in shared memory into one partial per head.
#define GQA_WARPS 4
#define GQA_CHUNK (GQA_WARPS * 32)

template <int D, int G>
struct gqa_smem {
    float q[G][D];
    union { // V rows and probabilities while P V runs, then the warps' outputs for the merge
        struct {
            __half v[GQA_WARPS][32][D];
            float p[GQA_WARPS][G][32];
        } pv;
        float o[GQA_WARPS][G][D];
    } u;
    float m[GQA_WARPS][G], l[GQA_WARPS][G];
    int seq, last;
};

// Fused reduce (short contexts): the block that finishes a (row, KV head) last combines its
// splits, found by a per-(row, KV head) arrival counter that it resets to 0 for the next launch,
// and a row whose context fits one split is written out directly. One launch instead of two.
// The counters are module-global: one stream per device runs attention at a time.
#define ATTN_FUSE_MAX_SPLITS 8 // bucketed context <= 1024 keys
#define ATTN_FUSE_CTRS 8192    // n_tok * n_head_kv
__device__ unsigned attn_arrivals[ATTN_FUSE_CTRS];

// head_dim 64: 5 blocks per SM (<= 102 registers) so a 10K context's 640 blocks fit one wave.
template <int D, int G>
__global__ void __launch_bounds__(GQA_WARPS * 32, D == 64 ? 5 : 1)
    k_attn_decode_gqa(float *part, const __half *q, const __half *kc, const __half *vc,
                      const attn_seq *seqs, const int32_t *tables, int n_seq, int n_head,
                      int n_head_kv, float scale, int n_splits, __half *out, int fused) {
    constexpr int DPL = D / 32; // head_dim values per lane in P V
    constexpr int R16 = D / 8;  // 16-byte vectors per K or V row
    extern __shared__ __align__(16) unsigned char smem_raw[];
    gqa_smem<D, G> &sm = *reinterpret_cast<gqa_smem<D, G> *>(smem_raw);
    const int t = blockIdx.x, kvh = blockIdx.y, split = blockIdx.z;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (threadIdx.x == 0) sm.seq = seq_of_row(seqs, n_seq, t);
    __syncthreads();
    if (sm.seq < 0) return;
    const attn_seq sq = seqs[sm.seq];
    const int qpos = sq.n_past + (t - sq.q_start);
    const int k0 = split * GQA_CHUNK;
    if (k0 > qpos) return;
    const int32_t *table = tables + sq.block_table_offset;

    // ---- issue this lane's K and V row loads before anything else
    const int p = k0 + warp * 32 + lane;
    const bool valid = p <= qpos;
    uint4 kraw[R16], vraw[R16];
    if (valid) {
        const size_t row = (((size_t)table[p / KV_BLOCK_SIZE] * n_head_kv + kvh) * KV_BLOCK_SIZE +
                            p % KV_BLOCK_SIZE) * D;
        const uint4 *krow = reinterpret_cast<const uint4 *>(kc + row);
        const uint4 *vrow = reinterpret_cast<const uint4 *>(vc + row);
#pragma unroll
        for (int i = 0; i < R16; i++) {
            kraw[i] = krow[i];
            vraw[i] = vrow[i];
        }
    } else {
#pragma unroll
        for (int i = 0; i < R16; i++) kraw[i] = vraw[i] = make_uint4(0, 0, 0, 0); // 0 * V, not NaN
    }
    for (int i = threadIdx.x; i < G * D; i += blockDim.x)
        sm.q[i / D][i % D] =
            __half2float(q[((size_t)t * n_head + (size_t)kvh * G) * D + i]) * scale;
#pragma unroll
    for (int i = 0; i < R16; i++)
        *reinterpret_cast<uint4 *>(&sm.u.pv.v[warp][lane][i * 8]) = vraw[i];
    __syncthreads();

    // ---- scores: lane owns key p
    float s[G];
#pragma unroll
    for (int g = 0; g < G; g++) s[g] = 0.0f;
#pragma unroll
    for (int i = 0; i < R16; i++) {
        const __half2 *h2 = reinterpret_cast<const __half2 *>(&kraw[i]);
        float kf[8];
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const float2 f = __half22float2(h2[e]);
            kf[2 * e] = f.x;
            kf[2 * e + 1] = f.y;
        }
#pragma unroll
        for (int g = 0; g < G; g++) {
            const float4 qa = *reinterpret_cast<const float4 *>(&sm.q[g][i * 8]);
            const float4 qb = *reinterpret_cast<const float4 *>(&sm.q[g][i * 8 + 4]);
            s[g] += qa.x * kf[0] + qa.y * kf[1] + qa.z * kf[2] + qa.w * kf[3] + qb.x * kf[4] +
                    qb.y * kf[5] + qb.z * kf[6] + qb.w * kf[7];
        }
    }
    // ---- warp softmax per head
    float m[G], l[G];
#pragma unroll
    for (int g = 0; g < G; g++) {
        float mx = valid ? s[g] : -FLT_MAX;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
        const float pg = valid ? __expf(s[g] - mx) : 0.0f;
        float sum = pg;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        m[g] = mx;
        l[g] = sum;
        sm.u.pv.p[warp][g][lane] = pg;
    }
    __syncwarp();
    // ---- P V: lane owns dims [lane * DPL, lane * DPL + DPL); invalid keys have p = 0, V = 0
    float acc[G][DPL];
#pragma unroll
    for (int g = 0; g < G; g++)
#pragma unroll
        for (int e = 0; e < DPL; e++) acc[g][e] = 0.0f;
#pragma unroll 2
    for (int j4 = 0; j4 < 32; j4 += 4) {
        float vf[4][DPL];
#pragma unroll
        for (int jj = 0; jj < 4; jj++) {
            const __half *vr = &sm.u.pv.v[warp][j4 + jj][lane * DPL];
#pragma unroll
            for (int e = 0; e < DPL; e += 2) {
                const float2 f = __half22float2(*reinterpret_cast<const __half2 *>(vr + e));
                vf[jj][e] = f.x;
                vf[jj][e + 1] = f.y;
            }
        }
#pragma unroll
        for (int g = 0; g < G; g++) {
            const float4 pg = *reinterpret_cast<const float4 *>(&sm.u.pv.p[warp][g][j4]);
#pragma unroll
            for (int e = 0; e < DPL; e++)
                acc[g][e] += pg.x * vf[0][e] + pg.y * vf[1][e] + pg.z * vf[2][e] + pg.w * vf[3][e];
        }
    }
    // ---- merge the warps
    const bool any = k0 + warp * 32 <= qpos;
    __syncthreads(); // every warp is done with V and P
#pragma unroll
    for (int g = 0; g < G; g++) {
#pragma unroll
        for (int e = 0; e < DPL; e++) sm.u.o[warp][g][lane * DPL + e] = acc[g][e];
        if (lane == 0) {
            sm.m[warp][g] = any ? m[g] : -FLT_MAX;
            sm.l[warp][g] = any ? l[g] : 0.0f;
        }
    }
    __syncthreads();
    const int n_valid = qpos / GQA_CHUNK + 1;
    for (int i = threadIdx.x; i < G * D; i += blockDim.x) {
        const int g = i / D, d = i % D;
        float mx = -FLT_MAX;
#pragma unroll
        for (int w = 0; w < GQA_WARPS; w++) mx = fmaxf(mx, sm.m[w][g]);
        float o = 0.0f, lsum = 0.0f;
#pragma unroll
        for (int w = 0; w < GQA_WARPS; w++) {
            const float f = __expf(sm.m[w][g] - mx);
            o += sm.u.o[w][g][d] * f;
            lsum += sm.l[w][g] * f;
        }
        if (fused && n_valid == 1) {
            out[((size_t)t * n_head + kvh * G + g) * D + d] = __float2half_rn(o / lsum);
            continue;
        }
        float *dst = part + (((size_t)t * n_head + kvh * G + g) * n_splits + split) * (D + 2);
        dst[d] = o;
        if (d == 0) {
            dst[D] = mx;
            dst[D + 1] = lsum;
        }
    }
    if (!fused || n_valid == 1) return;
    __threadfence(); // this block's partials are visible before its arrival counts
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned *ctr = &attn_arrivals[t * n_head_kv + kvh];
        sm.last = atomicAdd(ctr, 1u) == (unsigned)n_valid - 1;
        if (sm.last) *ctr = 0;
    }
    __syncthreads();
    if (!sm.last) return;
    __threadfence();
    // the splits' weights exp(m_s - max) / sum, per head, in the (now free) merge area
    float(*wt)[ATTN_FUSE_MAX_SPLITS] =
        reinterpret_cast<float(*)[ATTN_FUSE_MAX_SPLITS]>(&sm.u.o[0][0][0]);
    float(*ls)[ATTN_FUSE_MAX_SPLITS] = wt + G;
    const float *pt = part + ((size_t)t * n_head + kvh * G) * n_splits * (D + 2); // head g, split s
    for (int i = threadIdx.x; i < G * n_valid; i += blockDim.x) {
        const int g = i / n_valid, sp = i % n_valid;
        wt[g][sp] = __ldcg(pt + ((size_t)g * n_splits + sp) * (D + 2) + D);
        ls[g][sp] = __ldcg(pt + ((size_t)g * n_splits + sp) * (D + 2) + D + 1);
    }
    __syncthreads();
    for (int g = threadIdx.x; g < G; g += blockDim.x) {
        float mx = -FLT_MAX, den = 0.0f;
        for (int sp = 0; sp < n_valid; sp++) mx = fmaxf(mx, wt[g][sp]);
        for (int sp = 0; sp < n_valid; sp++) {
            wt[g][sp] = __expf(wt[g][sp] - mx);
            den += wt[g][sp] * ls[g][sp];
        }
        for (int sp = 0; sp < n_valid; sp++) wt[g][sp] /= den;
    }
    __syncthreads();
    constexpr int PER = (G * D + GQA_WARPS * 32 - 1) / (GQA_WARPS * 32); // outputs per thread
    float red_acc[PER];
#pragma unroll
    for (int k = 0; k < PER; k++) red_acc[k] = 0.0f;
    for (int sp = 0; sp < n_valid; sp++) // a thread's loads of one split are all in flight
#pragma unroll
        for (int k = 0; k < PER; k++) {
            const int i = threadIdx.x + k * GQA_WARPS * 32, g = i / D, d = i % D;
            if (i < G * D)
                red_acc[k] += wt[g][sp] * __ldcg(pt + ((size_t)g * n_splits + sp) * (D + 2) + d);
        }
#pragma unroll
    for (int k = 0; k < PER; k++) {
        const int i = threadIdx.x + k * GQA_WARPS * 32;
        if (i < G * D)
            out[((size_t)t * n_head + kvh * G) * D + i] = __float2half_rn(red_acc[k]);
    }
}

template <int D, int G>
static void launch_gqa(cuda_ctx *c, float *part, const __half *q, const __half *kc,
                       const __half *vc, const attn_batch *ab, int n_head, int n_head_kv,
                       float scale, int n_splits, __half *out, int fused) {
    const size_t smem = sizeof(gqa_smem<D, G>);
    if (smem > (48 << 10) &&
        cuda_check(c, cudaFuncSetAttribute(k_attn_decode_gqa<D, G>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
                   "attention decode smem attribute"))
        return;
    dim3 grid(ab->n_tok, n_head_kv, n_splits);
    k_attn_decode_gqa<D, G><<<grid, GQA_WARPS * 32, smem, c->stream>>>(
        part, q, kc, vc, ab->seqs_dev, ab->block_tables_dev, ab->n_seq, n_head, n_head_kv, scale,
        n_splits, out, fused);
}

// Launches the GQA kernel when it has an instance for the shape; 0 otherwise.
static int try_gqa(cuda_ctx *c, float *part, const __half *q, const __half *kc, const __half *vc,
                   const attn_batch *ab, int n_head, int n_head_kv, int head_dim, float scale,
                   int n_splits, __half *out, int fused) {
    const int group = n_head / n_head_kv;
#define GQA_CASE(D_, G_)                                                                           \
    if (head_dim == D_ && group == G_) {                                                           \
        launch_gqa<D_, G_>(c, part, q, kc, vc, ab, n_head, n_head_kv, scale, n_splits, out,       \
                           fused);                                                                 \
        return 1;                                                                                  \
    }
    GQA_CASE(64, 1) GQA_CASE(64, 2) GQA_CASE(64, 4) GQA_CASE(64, 8) GQA_CASE(64, 16)
    GQA_CASE(128, 1) GQA_CASE(128, 2) GQA_CASE(128, 4) GQA_CASE(128, 8) GQA_CASE(128, 16)
#undef GQA_CASE
    return 0;
}

void cuda_attention_decode(cuda_ctx *c, __half *out, const __half *q, const __half *k_cache,
                           const __half *v_cache, const attn_batch *ab, int n_head, int n_head_kv,
                           int head_dim, float scale) {
    const int group = n_head / n_head_kv;
    const size_t ctx = ((size_t)ab->max_ctx + GRAPH_CTX_BUCKET - 1) / GRAPH_CTX_BUCKET * GRAPH_CTX_BUCKET;
    const int gqa = (head_dim == 64 || head_dim == 128) && (group & (group - 1)) == 0 && group <= 16;
    const int chunk = gqa ? GQA_CHUNK : DEC_CHUNK;
    const int n_splits = (int)(ctx / chunk);
    const size_t part_bytes = (size_t)ab->n_tok * n_head * n_splits * (head_dim + 2) * sizeof(float);
    float *part = (float *)cuda_scratch_get(c, &c->attn_part, part_bytes, "attention partials");
    if (!part) return;
    // Launch shape from n_tok and the bucketed context only (graph-safe).
    const int fused = gqa && n_splits <= ATTN_FUSE_MAX_SPLITS &&
                      (size_t)ab->n_tok * n_head_kv <= ATTN_FUSE_CTRS;
    if (fused && try_gqa(c, part, q, k_cache, v_cache, ab, n_head, n_head_kv, head_dim, scale,
                         n_splits, out, 1)) {
        CUDA_LAUNCHED(c, "attention decode");
        return;
    }
    if (!gqa || !try_gqa(c, part, q, k_cache, v_cache, ab, n_head, n_head_kv, head_dim, scale,
                         n_splits, out, 0)) {
        const dec_smem_layout L = dec_layout(group, head_dim);
        if (L.total > c->smem_optin) {
            cuda_record(c, FL_EUNSUPPORTED,
                        "kernels/cuda: attention: %d query heads per KV head x head_dim %d needs "
                        "%zu bytes of shared memory (device allows %zu)", group, head_dim, L.total,
                        c->smem_optin);
            return;
        }
        if (L.total > (48 << 10) &&
            cuda_check(c, cudaFuncSetAttribute(k_attn_decode,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               (int)L.total), "attention smem attribute"))
            return;
        dim3 grid(ab->n_tok, n_head_kv, n_splits);
        k_attn_decode<<<grid, DEC_THREADS, L.total, c->stream>>>(
            part, q, k_cache, v_cache, ab->seqs_dev, ab->block_tables_dev, ab->n_seq, n_head,
            n_head_kv, head_dim, scale, n_splits);
    }
    if (CUDA_LAUNCHED(c, "attention decode")) return;
    dim3 rgrid(ab->n_tok, n_head);
    k_attn_reduce<<<rgrid, RED_THREADS, (size_t)n_splits * sizeof(float), c->stream>>>(
        out, part, ab->seqs_dev, ab->n_seq, n_head, head_dim, n_splits, chunk);
    CUDA_LAUNCHED(c, "attention reduce");
}

void cuda_attention(backend *b, void *out, const void *q, const void *k_cache, const void *v_cache,
                    const attn_batch *ab, int n_head, int n_head_kv, int head_dim, float scale) {
    cuda_ctx *c = cuda_ctx_of(b); // arguments checked by kernels/backend.c
    // Long query runs (prefill) go to the tiled tensor-core kernel when it supports the shape.
    if (ab->max_n_q > 4 &&
        cuda_attention_prefill(c, (__half *)out, (const __half *)q, (const __half *)k_cache,
                               (const __half *)v_cache, ab, n_head, n_head_kv, head_dim, scale))
        return;
    cuda_attention_decode(c, (__half *)out, (const __half *)q, (const __half *)k_cache,
                          (const __half *)v_cache, ab, n_head, n_head_kv, head_dim, scale);
}
