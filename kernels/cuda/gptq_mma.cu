// GPTQ 4-bit matmul on tensor cores for small batches (1..GPTQ_MMA_MAX_ROWS rows): y[n_tok, N] =
// x[n_tok, K] W + bias, reading the repacked layout of bk_matrix as it is (no second copy).
//
// Tiles: a block of 8 warps owns 256 output columns (32 per warp, four m16n8k16 n-tiles) and
// walks K in units of RS = 8 or 16 packed rows (64 / 128 inputs; FALCONLITE_GPTQ_MMA_RS, the
// default per tile count in MMA_DEFAULT_RS). Per unit, cp.async stages into shared memory the
// [RS, 256] qweight words (16-byte pieces, L2 evict-first: weights are streamed once), the
// activations [16*MT, 8 RS] (MT = ceil(n_tok / 16) m16 tiles; rows past n_tok and inputs past the
// unit are zero-filled), and the scales and zero points of every distinct group among the RS rows
// (one slot per group change, a row -> slot table next to them), through a 4-stage (RS 8) or
// 3-stage (RS 16) pipeline. 16-row units halve the barriers, cp.async groups and bookkeeping per
// byte.
//
// Fragments without a repack: thread (gid = lane / 4, tq = lane % 4) of warp w reads, for each
// k32 chunk (4 packed rows), the 16 bytes at packed row 4c + tq, columns 32w + 4gid .. +3: one
// word per n-tile j, word j feeding mma column gid of n-tile j (so output column 32w + 4n + j
// sits in mma column n of n-tile j). Its 8 nibbles are the inputs 8tq .. 8tq + 7 of the chunk;
// the fp16 exponent trick extracts them in pairs (e, e + 4), which become the B registers of two
// k16 steps: step 0 = {(0,4), (1,5)}, step 1 = {(2,6), (3,7)}. The mma k order inside a chunk is
// therefore a permutation of the inputs; the A fragment follows the same one: each thread loads
// its own 16 bytes (inputs 8tq .. 8tq + 7 of rows gid and gid + 8) and regroups the halves with
// byte_perm. Every packed row lies in exactly one group, so each thread dequantises its word with
// its own row's scale and zero point: k steps that straddle two groups need no special case.
// B = (q - z) * s is formed in fp16 ((1024 + q) - (1024 + z) is exact), accumulation is f32.
//
// Split-K: Marlin-style stripes. The (column tile, K unit) space is laid out tile-major and cut
// into one equal contiguous range per block (blocks = SMs x resident blocks per SM, so every SM
// streams the same number of bytes whatever the shape). A block flushes its f32 partial sums for
// a tile with 16-byte atomics into the shared accumulator when its range leaves the tile; the
// block whose arrival completes the tile's unit count writes f16 (+ bias) and re-zeroes the
// accumulator and the counter, as the GEMV does (one launch per matmul, graph-capturable).
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_backend.cuh"

#define MMA_THREADS 256
#define MMA_NB 256     // output columns per tile: 8 warps x 32
#define MMA_WSTRIDE (MMA_NB + 8)     // words per staged weight row: conflict-free 16-byte reads
#define MMA_SSTRIDE (MMA_NB + 8)     // halves per scale slot
#define MMA_ZSTRIDE (MMA_NB / 4 + 8) // words per zero-point slot
#define MMA_SLOT_BYTES 32            // row -> slot table (RS entries) + the one-group flag
#define MMA_DEFAULT_RS {16, 16, 16, 16} // packed rows per K unit for 1..4 m16 tiles (measured: 16 wins at every row count, kernels/PERFORMANCE.md v7)
#define MMA_AUTO_MIN_ROWS 4 // FALCONLITE_GPTQ_MMA=auto: the GEMV below this (H200 crossover)

// RS = packed rows (8 inputs each) per K unit / pipeline stage: 8 (two k32 chunks) or 16 (four).
// One stage in shared memory: weights, scale slots, zero-point slots, row -> slot, activations.
__host__ __device__ constexpr int mma_w_bytes(int rs) { return rs * MMA_WSTRIDE * 4; }
__host__ __device__ constexpr int mma_s_bytes(int rs) { return rs * MMA_SSTRIDE * 2; }
__host__ __device__ constexpr int mma_z_bytes(int rs) { return rs * MMA_ZSTRIDE * 4; }
__host__ __device__ constexpr int mma_fixed_bytes(int rs) {
    return mma_w_bytes(rs) + mma_s_bytes(rs) + mma_z_bytes(rs) + MMA_SLOT_BYTES;
}
__host__ __device__ constexpr int mma_stage_bytes(int mt, int rs) {
    return mma_fixed_bytes(rs) + 16 * mt * rs * 8 * 2;
}
// Pipeline depth: 4 stages of 8 rows, 3 of 16 (fewer bytes of shared memory per block).
__host__ __device__ constexpr int mma_stages(int rs) { return rs == 8 ? 4 : 3; }

// ---- PTX wrappers (cp.async, mma.sync and createpolicy exist from sm_80 on)
__device__ __forceinline__ uint32_t smem_u32(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

// 16 bytes global -> shared, L2 only; zero-filled (nothing read) when !ok.
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool ok) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
                 "r"(ok ? 16 : 0)
                 : "memory");
}

// Same, for data read once: marked first to evict from L2.
__device__ __forceinline__ void cp_async16_stream(void *dst, const void *src, bool ok,
                                                  uint64_t policy) {
    asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2, %3;\n" ::"r"(
                     smem_u32(dst)),
                 "l"(src), "r"(ok ? 16 : 0), "l"(policy)
                 : "memory");
}

__device__ __forceinline__ void cp_async4(void *dst, const void *src, bool ok) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
                 "r"(ok ? 4 : 0)
                 : "memory");
}

__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ uint64_t evict_first_policy() {
    uint64_t p;
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(p));
    return p;
}

// d += a (16x16, row) * b (16x8, col), f16 inputs, f32 accumulators.
__device__ __forceinline__ void mma_16816(float *d, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t half2_as_u32(__half2 h) {
    return *reinterpret_cast<uint32_t *>(&h);
}

// ---- the kernel
struct mma_args {
    const __half *x;        // [n_tok, 8R] activations in sorted input order
    const uint32_t *qw;     // [R, N]
    const __half *scales;   // [G, N]
    const uint32_t *zeros;  // [G, N/4]
    const int32_t *group_row; // [G + 1]
    float *acc;             // [n_tok, N] f32, zero on entry and on exit
    unsigned *arrivals;     // [n_tiles] units finished per tile, zero on entry and on exit
    __half *y;              // [n_tok, N]
    const float *bias;      // [N] or NULL
    int n_tok, R, N, max_group_rows, n_kst, n_tiles;
};

template <int MT, int RS>
__global__ void __launch_bounds__(MMA_THREADS, MT == 1 && RS == 8 ? 3 : 2) k_gptq_mma(const mma_args p) {
    extern __shared__ __align__(16) unsigned char smem[];
    __shared__ bool last;
    constexpr int STAGE = mma_stage_bytes(MT, RS), MMA_STAGES = mma_stages(RS);
    constexpr int MMA_RS = RS, MMA_AROW = RS * 8; // halves per staged activation row
    constexpr int MMA_W_BYTES = mma_w_bytes(RS), MMA_S_BYTES = mma_s_bytes(RS);
    constexpr int MMA_Z_BYTES = mma_z_bytes(RS), MMA_FIXED_BYTES = mma_fixed_bytes(RS);
    const int tid = threadIdx.x, warp = tid >> 5, gid = (tid & 31) >> 2, tq = tid & 3;
    const int N = p.N, R = p.R, lda = 8 * R;
    const long long n_units = (long long)p.n_tiles * p.n_kst;
    const int u_begin = (int)(n_units * blockIdx.x / gridDim.x);
    const int u_end = (int)(n_units * (blockIdx.x + 1) / gridDim.x);
    const uint64_t policy = evict_first_policy();

    // Producer state: the next unit to load is (tile lt, K unit lk); group pg holds the rows up
    // to pg_end (exclusive) of that tile.
    int lt = u_begin / p.n_kst, lk = u_begin - lt * p.n_kst, pg = 0, pg_end = 0;
    // Issues the copies of the next unit into stage buffer buf (every thread runs this
    // uniformly), then advances (lt, lk).
    auto load = [&](int buf, bool first) {
        const int kst = lk, r0 = kst * MMA_RS, nrows = min(MMA_RS, R - r0), n0 = lt * MMA_NB;
        if (++lk == p.n_kst) {
            lk = 0;
            lt++;
        }
        unsigned char *st = smem + buf * STAGE;
        uint32_t *ws = reinterpret_cast<uint32_t *>(st);
        __half *ss = reinterpret_cast<__half *>(st + MMA_W_BYTES);
        uint32_t *zs = reinterpret_cast<uint32_t *>(st + MMA_W_BYTES + MMA_S_BYTES);
        uint8_t *slot = st + MMA_W_BYTES + MMA_S_BYTES + MMA_Z_BYTES;
        __half *as = reinterpret_cast<__half *>(st + MMA_FIXED_BYTES);
        for (int i = tid; i < MMA_RS * (MMA_NB / 4); i += MMA_THREADS) {
            const int row = i / (MMA_NB / 4), q = i % (MMA_NB / 4), n = n0 + 4 * q;
            const bool ok = row < nrows && n < N;
            cp_async16_stream(ws + row * MMA_WSTRIDE + 4 * q,
                              ok ? p.qw + (size_t)(r0 + row) * N + n : p.qw, ok, policy);
        }
        // activation piece q of row m = the 8 inputs of packed row r0 + q; pieces of odd rows
        // swap halves (q ^ 4) so the consumers' 16-byte reads are conflict-free
        for (int i = tid; i < 16 * MT * RS; i += MMA_THREADS) {
            const int m = i / RS, q = i % RS;
            const bool ok = m < p.n_tok && q < nrows;
            cp_async16(as + m * MMA_AROW + 8 * (q ^ ((m & 1) << 2)),
                       ok ? p.x + (size_t)m * lda + 8 * (r0 + q) : p.x, ok);
        }
        // Groups of the unit's rows: a scale / zero slot per group change. Every group has at
        // most max_group_rows rows, so r0 / max_group_rows is at or before the group of r0.
        if (first || kst == 0) {
            pg = r0 / p.max_group_rows;
            pg_end = p.group_row[pg + 1];
        }
        auto load_group = [&](int i) { // scales and zero points of group pg into slot i
            if (tid < MMA_NB / 8) { // 32 pieces of 8 scales
                const int n = n0 + 8 * tid;
                const bool ok = n < N;
                cp_async16(ss + i * MMA_SSTRIDE + 8 * tid,
                           ok ? p.scales + (size_t)pg * N + n : p.scales, ok);
            } else if (tid < MMA_NB / 8 + MMA_NB / 4) { // 64 words of 4 zero points
                const int q = tid - MMA_NB / 8, n = n0 + 4 * q;
                const bool ok = n < N;
                cp_async4(zs + i * MMA_ZSTRIDE + q,
                          ok ? p.zeros + (size_t)pg * (N / 4) + n / 4 : p.zeros, ok);
            }
        };
        while (r0 >= pg_end) pg_end = p.group_row[++pg + 1];
        if (r0 + nrows <= pg_end) { // the common case: one group holds the whole unit
            load_group(0);
            if (tid <= MMA_RS) slot[tid] = tid == MMA_RS; // rows past R too: their inputs are 0
            return;
        }
        int cur = -1, s = 0;
        for (int i = 0; i < nrows; i++) {
            while (r0 + i >= pg_end) pg_end = p.group_row[++pg + 1];
            if (pg != cur) {
                cur = pg;
                s = i;
                load_group(i);
            }
            if (tid == 0) slot[i] = (uint8_t)s;
        }
        if (tid == 0)
            for (int i = nrows; i <= MMA_RS; i++) slot[i] = 0;
    };

    float acc[MT][4][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[mt][j][e] = 0.0f;

    const int count = u_end - u_begin;
#pragma unroll
    for (int s = 0; s < MMA_STAGES - 1; s++) {
        if (s < count) load(s, s == 0);
        cp_async_commit();
    }
    int seg = 0;                                          // units of tile t done by this block
    int t = u_begin / p.n_kst, kst = u_begin - t * p.n_kst; // the unit being computed
    for (int i = 0; i < count; i++, kst++) {
        if (kst == p.n_kst) {
            kst = 0;
            t++;
        }
        cp_async_wait<MMA_STAGES - 2>();
        __syncthreads(); // unit i landed for all threads; everyone is done with unit i - 1
        if (i + MMA_STAGES - 1 < count) load((i + MMA_STAGES - 1) % MMA_STAGES, false);
        cp_async_commit();

        const int nrows = min(MMA_RS, R - kst * MMA_RS);
        const unsigned char *st = smem + (i % MMA_STAGES) * STAGE;
        const uint32_t *ws = reinterpret_cast<const uint32_t *>(st);
        const __half *ss = reinterpret_cast<const __half *>(st + MMA_W_BYTES);
        const uint32_t *zs = reinterpret_cast<const uint32_t *>(st + MMA_W_BYTES + MMA_S_BYTES);
        const uint8_t *slot = st + MMA_W_BYTES + MMA_S_BYTES + MMA_Z_BYTES;
        const __half *as = reinterpret_cast<const __half *>(st + MMA_FIXED_BYTES);
        // Per n-tile j, as half2 pairs: zz = 1024 + z, zh = -(64 + z), sv = s (duplicated).
        // Computed once per unit when one group holds it (slot[MMA_RS] set), else per chunk
        // from the thread's own row's slot.
        uint32_t zz[4], zh[4], sv[4];
        auto group_consts = [&](int s) {
            const uint2 sc = *reinterpret_cast<const uint2 *>(ss + s * MMA_SSTRIDE + 32 * warp +
                                                              4 * gid);
            const uint32_t zw = zs[s * MMA_ZSTRIDE + 8 * warp + gid];
            sv[0] = __byte_perm(sc.x, 0, 0x1010);
            sv[1] = __byte_perm(sc.x, 0, 0x3232);
            sv[2] = __byte_perm(sc.y, 0, 0x1010);
            sv[3] = __byte_perm(sc.y, 0, 0x3232);
#pragma unroll
            for (int j = 0; j < 4; j++) {
                // zero-point byte j under the 0x64 exponent byte; 960 - (1024 + z) is exact
                zz[j] = __byte_perm(zw, 0x64, 0x4040 + 0x0101 * j);
                zh[j] = half2_as_u32(__hsub2(__float2half2_rn(960.0f), u32_as_half2(zz[j])));
            }
        };
        const bool one_group = MT <= 2 && slot[MMA_RS] != 0; // (hoisting spills at 3-4 tiles)
        if (one_group) group_consts(0);
#pragma unroll
        for (int c = 0; c < MMA_RS / 4; c++) {
            if (4 * c >= nrows) break;
            const int row = 4 * c + tq;
            if (!one_group) group_consts(slot[row]);
            const uint4 wq = *reinterpret_cast<const uint4 *>(ws + row * MMA_WSTRIDE + 32 * warp +
                                                              4 * gid);
            const uint32_t wj[4] = {wq.x, wq.y, wq.z, wq.w};
            const __half2 sixteenth = __float2half2_rn(1.0f / 16.0f);
            uint32_t b[4][4]; // [n-tile j][nibble pair (e, e + 4)] = (q - z) * s as half2
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const __half2 z0 = u32_as_half2(zz[j]), z1 = u32_as_half2(zh[j]);
                const __half2 s2 = u32_as_half2(sv[j]);
#pragma unroll
                for (int h = 0; h < 2; h++) { // pairs (2h, 2h + 4) and (2h + 1, 2h + 5)
                    const uint32_t w = wj[j] >> (8 * h);
                    // 1024 + q and 1024 + 16 q: (1024 + 16 q) / 16 - (64 + z) = q - z, exact
                    const uint32_t q0 = (w & 0x000f000fu) | 0x64006400u;
                    const uint32_t q1 = (w & 0x00f000f0u) | 0x64006400u;
                    b[j][2 * h] = half2_as_u32(__hmul2(__hsub2(u32_as_half2(q0), z0), s2));
                    b[j][2 * h + 1] =
                        half2_as_u32(__hmul2(__hfma2(u32_as_half2(q1), sixteenth, z1), s2));
                }
            }
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                const int m = 16 * mt + gid, q = (4 * c + tq) ^ ((gid & 1) << 2);
                const uint4 lo = *reinterpret_cast<const uint4 *>(as + m * MMA_AROW + 8 * q);
                const uint4 hi = *reinterpret_cast<const uint4 *>(as + (m + 8) * MMA_AROW + 8 * q);
                // lo / hi hold inputs e = 0..7 of rows m / m + 8 as half pairs (0,1) .. (6,7)
                const uint32_t a0[4] = {__byte_perm(lo.x, lo.z, 0x5410), __byte_perm(hi.x, hi.z, 0x5410),
                                        __byte_perm(lo.x, lo.z, 0x7632), __byte_perm(hi.x, hi.z, 0x7632)};
                const uint32_t a1[4] = {__byte_perm(lo.y, lo.w, 0x5410), __byte_perm(hi.y, hi.w, 0x5410),
                                        __byte_perm(lo.y, lo.w, 0x7632), __byte_perm(hi.y, hi.w, 0x7632)};
#pragma unroll
                for (int j = 0; j < 4; j++) mma_16816(acc[mt][j], a0, b[j][0], b[j][1]);
#pragma unroll
                for (int j = 0; j < 4; j++) mma_16816(acc[mt][j], a1, b[j][2], b[j][3]);
            }
        }
        seg++;
        if (i + 1 != count && kst + 1 != p.n_kst) continue;

        // ---- the block leaves tile t: add its partial sums, the last arrival finalizes
        const int n0 = t * MMA_NB;
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int h8 = 0; h8 < 2; h8++) { // accumulator rows gid and gid + 8
                const int m = 16 * mt + gid + 8 * h8;
#pragma unroll
                for (int h = 0; h < 2; h++) { // mma columns 2tq (-> +0..3) and 2tq + 1 (-> +4..7)
                    const int n = n0 + 32 * warp + 8 * tq + 4 * h;
                    const int e = 2 * h8 + h;
                    if (m < p.n_tok && n < N)
                        atomic_add4(p.acc + (size_t)m * N + n,
                                    make_float4(acc[mt][0][e], acc[mt][1][e], acc[mt][2][e],
                                                acc[mt][3][e]));
#pragma unroll
                    for (int j = 0; j < 4; j++) acc[mt][j][e] = 0.0f;
                }
            }
        __threadfence();
        __syncthreads();
        if (tid == 0) last = atomicAdd(&p.arrivals[t], (unsigned)seg) + seg == (unsigned)p.n_kst;
        seg = 0;
        __syncthreads();
        if (!last) continue;
        for (int k = tid; k < p.n_tok * (MMA_NB / 4); k += MMA_THREADS) {
            const int m = k / (MMA_NB / 4), n = n0 + 4 * (k % (MMA_NB / 4));
            if (n < N)
                gptq_finalize4(p.acc + (size_t)m * N + n, p.y + (size_t)m * N + n,
                               p.bias ? p.bias + n : NULL);
        }
        if (tid == 0) p.arrivals[t] = 0;
    }
}

// ---- host side
template <int MT, int RS> static int mma_occupancy(cuda_ctx *c, int cap) {
    const size_t smem = (size_t)mma_stages(RS) * mma_stage_bytes(MT, RS);
    int n = 0;
    if (smem > c->smem_optin ||
        cudaFuncSetAttribute(k_gptq_mma<MT, RS>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             (int)smem) != cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, k_gptq_mma<MT, RS>, MMA_THREADS, smem) !=
            cudaSuccess) {
        cudaGetLastError(); // not sticky: the kernel is simply not used
        return 0;
    }
    return cap > 0 && n > cap ? cap : n;
}

template <int MT> static void mma_setup_tiles(cuda_ctx *c, int cap, int rs) {
    c->mma_rs[MT - 1] = rs;
    c->mma_blocks_per_sm[MT - 1] =
        rs == 16 ? mma_occupancy<MT, 16>(c, cap) : mma_occupancy<MT, 8>(c, cap);
}

void cuda_gptq_mma_setup(cuda_ctx *c) {
    // A/B switch for benchmarks: auto (default), 0 = never, 1 = wherever the kernel applies.
    const char *mode = getenv("FALCONLITE_GPTQ_MMA");
    c->gptq_mma = mode && !strcmp(mode, "0") ? 0 : mode && !strcmp(mode, "1") ? 1 : -1;
    // Tuning knob for sweeps: at most this many resident blocks per SM (default: all that fit).
    const char *bps = getenv("FALCONLITE_GPTQ_MMA_BLOCKS_PER_SM");
    const int cap = bps ? atoi(bps) : 0;
    // Packed rows per K unit (8 or 16) for all tile counts (default: MMA_DEFAULT_RS per count).
    const char *rs_env = getenv("FALCONLITE_GPTQ_MMA_RS");
    const int rs = rs_env ? atoi(rs_env) : 0;
    static const int default_rs[4] = MMA_DEFAULT_RS;
    mma_setup_tiles<1>(c, cap, rs == 8 || rs == 16 ? rs : default_rs[0]);
    mma_setup_tiles<2>(c, cap, rs == 8 || rs == 16 ? rs : default_rs[1]);
    mma_setup_tiles<3>(c, cap, rs == 8 || rs == 16 ? rs : default_rs[2]);
    mma_setup_tiles<4>(c, cap, rs == 8 || rs == 16 ? rs : default_rs[3]);
}

int cuda_gptq_mma_wanted(const cuda_ctx *c, const bk_matrix *w, const void *x, const void *out,
                         int n_tok) {
    if (c->gptq_mma == 0 || n_tok < 1 || n_tok > GPTQ_MMA_MAX_ROWS) return 0;
    if (c->gptq_mma < 0 && n_tok < MMA_AUTO_MIN_ROWS) return 0;
    const size_t acc_need = (GEMV_ARRIVAL_SLOTS + (size_t)n_tok * w->n_out) * sizeof(float);
    return c->mma_blocks_per_sm[(n_tok - 1) / 16] > 0 &&
           (w->n_out + MMA_NB - 1) / MMA_NB <= GEMV_ARRIVAL_SLOTS && c->gemv_acc.bytes >= acc_need &&
           (((uintptr_t)x | (uintptr_t)out) & 15) == 0;
}

void cuda_gptq_mma(cuda_ctx *c, __half *out, const __half *xs, const bk_matrix *w, int n_tok) {
    const int mt = (n_tok + 15) / 16;
    mma_args a;
    a.x = xs;
    a.qw = w->qweight;
    a.scales = w->scales;
    a.zeros = w->zeros;
    a.group_row = w->group_row;
    a.acc = (float *)c->gemv_acc.p + GEMV_ARRIVAL_SLOTS;
    a.arrivals = (unsigned *)c->gemv_acc.p;
    a.y = out;
    a.bias = w->bias;
    a.n_tok = n_tok;
    a.R = w->k_pad / 8;
    a.N = w->n_out;
    a.max_group_rows = w->max_group_rows;
    const int rs = c->mma_rs[mt - 1];
    a.n_kst = (a.R + rs - 1) / rs;
    a.n_tiles = (a.N + MMA_NB - 1) / MMA_NB;
    const long long units = (long long)a.n_tiles * a.n_kst;
    const long long slots = (long long)c->mma_blocks_per_sm[mt - 1] * c->n_sm;
    const unsigned grid = (unsigned)(units < slots ? units : slots);
    const size_t smem = (size_t)mma_stages(rs) * mma_stage_bytes(mt, rs);
#define MMA_LAUNCH(MT_)                                                                           \
    (rs == 16 ? k_gptq_mma<MT_, 16><<<grid, MMA_THREADS, smem, c->stream>>>(a)                     \
              : k_gptq_mma<MT_, 8><<<grid, MMA_THREADS, smem, c->stream>>>(a))
    switch (mt) {
    case 1: MMA_LAUNCH(1); break;
    case 2: MMA_LAUNCH(2); break;
    case 3: MMA_LAUNCH(3); break;
    default: MMA_LAUNCH(4); break;
    }
#undef MMA_LAUNCH
    CUDA_LAUNCHED(c, "gptq mma");
}
